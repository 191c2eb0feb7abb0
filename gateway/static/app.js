// Browser client for the chat gateway; the wire contract is docs/protocol.md (PROTOCOL.md).
// Security rule for this file: user-supplied strings only ever reach the DOM as text nodes
// (el(), textContent, setAttribute) — never through innerHTML or similar.
'use strict';

(() => {
  const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
  const NAME_RE = /^[^\p{Cc}]{1,32}$/u; // 1–32 code points, no control characters
  const PING_MS = 25_000;
  const DEAD_MS = 60_000; // we ping every 25 s, so a minute of silence means a dead socket
  const ROOMS_POLL_MS = 10_000;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 15_000;
  const NO_RETRY_CLOSE = { 1008: 'name or origin refused', 4001: 'unauthorized', 4003: 'forbidden' };
  const RETRY_SEND = new Set(['rate_limited', 'unavailable', 'internal']);
  const FATAL_JOIN = new Set(['invalid_room', 'forbidden', 'too_many_rooms', 'bad_request']);
  const HISTORY_LIMIT = 50;
  const KEEP_MAX = 1500; // messages held per room before the oldest are dropped...
  const KEEP_MIN = 1000; // ...down to this many ("load older" brings them back)

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $('app'), sidebar: $('sidebar'), backdrop: $('backdrop'), toggle: $('sidebar-toggle'),
    status: $('status'), statusLabel: $('status-label'), reconnect: $('reconnect-btn'),
    rooms: $('rooms'), directory: $('directory'), members: $('members'), memberCount: $('member-count'),
    me: $('me'), logout: $('logout-btn'), joinForm: $('join-form'), roomInput: $('room-input'),
    title: $('room-title'), meta: $('room-meta'), notice: $('notice'), noticeText: $('notice-text'),
    noticeClose: $('notice-close'), scroller: $('scroller'), older: $('older-btn'),
    messages: $('messages'), empty: $('empty'), jump: $('jump-btn'), composer: $('composer'),
    input: $('message-input'), sendBtn: $('send-btn'), counter: $('counter'), login: $('login'), nameForm: $('name-form'),
    nameInput: $('name-input'), loginError: $('login-error'),
  };

  // ---- state -------------------------------------------------------------------------------
  const rooms = new Map(); // name -> room state; insertion order is the sidebar order
  const outbox = new Map(); // cid -> {room, text, ts, sentOn, tries, failed?, node?}: unacked sends
  const leaving = new Set(); // rooms we left ourselves, so a late `left` does not hit a rejoin
  const conn = { ws: null, state: 'offline', id: 0, attempts: 0, timer: 0, ping: 0, lastRx: 0, upAt: 0 };
  let me = ''; // name confirmed by `hello`
  let wanted = ''; // name we connect with
  let token = '';
  let active = null; // room shown in the main pane
  let maxText = 4000;
  let directory = []; // last GET /api/rooms answer
  let initialRooms = ['lobby'];
  let hiddenUnread = 0;
  let liveArrived = false; // a live message was appended to the active room in this frame

  function newRoom(name) {
    return {
      name, lastSeq: 0, msgs: new Map(), buffer: new Map(), members: new Set(), unread: 0,
      joined: false, everJoined: false, joining: false, joinSince: undefined,
      more: false, loadingOlder: false, historyQueue: [],
    };
  }

  // ---- small helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids) if (kid != null) node.append(kid); // strings become text nodes
    return node;
  }

  // Storage can throw (private mode, sandboxed frames); the app must work without it.
  function store(area, key, value) {
    try {
      const s = area === 'local' ? window.localStorage : window.sessionStorage;
      if (value === undefined) return s.getItem(key);
      if (value === null) s.removeItem(key);
      else s.setItem(key, value);
    } catch { /* ignore */ }
    return null;
  }

  function newCid() {
    if (window.crypto?.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    if (window.crypto?.getRandomValues) crypto.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function hue(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }
  const initial = (name) => ([...name.trim()][0] || '?').toUpperCase();
  function avatar(name) {
    const a = el('span', { class: 'avatar', 'aria-hidden': 'true' }, initial(name));
    a.style.setProperty('--hue', hue(name));
    return a;
  }

  const fmtTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
  const fmtDay = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  function timeEl(ts, label) {
    const d = new Date(Number.isFinite(ts) ? ts : Date.now());
    const today = d.toDateString() === new Date().toDateString();
    const text = label || (today ? fmtTime.format(d) : `${fmtDay.format(d)}, ${fmtTime.format(d)}`);
    return el('time', { class: 'msg-time', datetime: d.toISOString(), title: fmtFull.format(d) }, text);
  }

  // ---- connection ----------------------------------------------------------------------------
  function setState(state, label) {
    conn.state = state;
    ui.status.dataset.state = state;
    ui.statusLabel.textContent = label;
    ui.reconnect.hidden = state !== 'offline';
    invalidate();
  }

  function send(frame) {
    if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return false;
    conn.ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    clearTimeout(conn.timer);
    if (conn.ws) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const query = token ? `token=${encodeURIComponent(token)}` : `user=${encodeURIComponent(wanted)}`;
    setState('connecting', 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    } catch (err) {
      onClose(1006, String(err));
      return;
    }
    conn.ws = ws;
    conn.id++; // a new generation: every unacked send is due again on this connection
    conn.lastRx = Date.now();
    startPing(); // from now, not from `open`: a handshake that hangs also counts as dead
    ws.onmessage = (e) => { if (ws === conn.ws) onFrame(e.data); };
    ws.onclose = (e) => { if (ws === conn.ws) onClose(e.code, e.reason); };
  }

  // Detach first so the socket's own close event is ignored; callers decide what happens next.
  function dropSocket() {
    const ws = conn.ws;
    conn.ws = null;
    clearInterval(conn.ping);
    if (ws) try { ws.close(1000); } catch { /* already closed */ }
    for (const r of rooms.values()) {
      Object.assign(r, { joined: false, joining: false, loadingOlder: false, historyQueue: [] });
      r.buffer.clear(); // anything buffered is replayed by the `since` rejoin
    }
  }

  function onClose(code, reason) {
    dropSocket();
    if (code in NO_RETRY_CLOSE) {
      const why = reason || NO_RETRY_CLOSE[code];
      setState('offline', `Disconnected: ${why}`);
      showNotice(`Disconnected (${code}): ${why}`);
      if (!token) showLogin(`The server refused the connection: ${why}`);
      return;
    }
    if (conn.upAt && Date.now() - conn.upAt > 10_000) conn.attempts = 0; // was a healthy session
    conn.upAt = 0;
    let delay;
    if (code === 1001) {
      delay = 200 + Math.random() * 600; // gateway restarting: the load balancer has another one
    } else {
      const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** conn.attempts);
      conn.attempts++;
      delay = base + Math.random() * base * 0.3; // jitter spreads a reconnect stampede
    }
    conn.timer = setTimeout(connect, delay);
    setState('offline', `Offline — reconnecting in ${Math.max(1, Math.round(delay / 1000))} s`);
  }

  function startPing() {
    clearInterval(conn.ping);
    conn.ping = setInterval(() => {
      if (Date.now() - conn.lastRx > DEAD_MS) onClose(1006, 'no response'); // send() no-ops until open
      else send({ type: 'ping' });
    }, PING_MS);
  }

  function reconnectNow() {
    if (conn.ws) return;
    conn.attempts = 0;
    connect();
  }

  // ---- inbound events --------------------------------------------------------------------------
  function onFrame(data) {
    conn.lastRx = Date.now();
    let parsed;
    try { parsed = JSON.parse(data); } catch { return; }
    const events = Array.isArray(parsed) ? parsed : [parsed]; // the server may coalesce events
    const stick = atBottom();
    liveArrived = false;
    for (const ev of events) {
      if (!ev || typeof ev !== 'object') continue;
      try { handle(ev); } catch (err) { console.error('chat: bad event', ev, err); }
    }
    const cur = rooms.get(active);
    if (stick) {
      if (cur) trim(cur); // only trim while the reader is at the bottom
      scrollToBottom();
    } else if (liveArrived) {
      ui.jump.hidden = false;
    }
  }

  function handle(ev) {
    switch (ev.type) {
      case 'hello': return onHello(ev);
      case 'joined': return onJoined(ev);
      case 'left': return onLeft(ev);
      case 'message': return onMessage(ev);
      case 'presence': return onPresence(ev);
      case 'history': return onHistory(ev);
      case 'error': return onError(ev);
      default: return undefined; // pong and anything newer: liveness is already recorded
    }
  }

  function onHello(ev) {
    const prev = me;
    me = String(ev.user || wanted);
    maxText = ev.limits?.max_text_chars || maxText;
    conn.upAt = Date.now();
    ui.me.textContent = me;
    setState('online', 'Online');
    for (const r of rooms.values()) sendJoin(r);
    if (prev !== me) renderMessages(); // "own" styling depends on the name
    fetchRooms();
  }

  function sendJoin(r) {
    const frame = { type: 'join', room: r.name };
    if (r.everJoined) frame.since = r.lastSeq; // recovery: replay only what we have not seen
    r.joinSince = frame.since;
    r.joining = true;
    send(frame);
  }

  function onJoined(ev) {
    const r = rooms.get(ev.room);
    if (!r) return; // we left it meanwhile (the server's `left` follows)
    const fresh = !r.everJoined;
    const since = r.joinSince;
    Object.assign(r, { joined: true, everJoined: true, joining: false, joinSince: undefined });
    r.members = new Set((ev.members || []).map(String));
    const msgs = (ev.messages || []).filter((m) => Number.isInteger(m?.seq)).sort((a, b) => a.seq - b.seq);
    for (const m of msgs) {
      ackEcho(m);
      addMessage(r, m, !fresh);
    }
    const top = msgs.length ? msgs[msgs.length - 1].seq : 0;
    r.lastSeq = Math.max(r.lastSeq, Number(ev.seq) || 0, top);
    drain(r);
    if (fresh) r.more = msgs.length ? msgs[0].seq > 1 : r.lastSeq > 0;
    else if (ev.recovered === false && since !== undefined) fillGap(r, since, msgs.length ? msgs[0].seq : r.lastSeq + 1);
    if (r.buffer.size) setTimeout(() => retryJoin(r), 1000); // a hole remains: ask again, gently
    flushOutbox(r);
    if (!active) switchTo(r.name);
    invalidate();
  }

  function retryJoin(r) {
    if (rooms.get(r.name) === r && conn.state === 'online' && !r.joining && (!r.joined || r.buffer.size)) sendJoin(r);
  }

  // Part of the gap is gone from the broker: patch it from history, or if it is too large to
  // patch, keep the view contiguous and let "load older" page back from there.
  function fillGap(r, since, firstSeq) {
    const missing = firstSeq - since - 1;
    if (missing <= 0) return;
    if (missing > 100) {
      for (const s of [...r.msgs.keys()]) if (s < firstSeq) r.msgs.delete(s);
      r.more = true;
      if (r.name === active) renderMessages();
      return;
    }
    r.historyQueue.push('fill');
    send({ type: 'history', room: r.name, before: firstSeq, limit: missing });
  }

  function onMessage(m) {
    ackEcho(m);
    const r = rooms.get(m.room);
    if (!r || !Number.isInteger(m.seq) || m.seq <= r.lastSeq) return; // not ours, or a duplicate
    if (r.everJoined && m.seq === r.lastSeq + 1) {
      addMessage(r, m, true);
      r.lastSeq = m.seq;
      drain(r);
    } else {
      r.buffer.set(m.seq, m); // a gap (or a join still in flight): hold until it is filled
      if (r.everJoined && !r.joining) sendJoin(r);
    }
    invalidate();
  }

  // Apply buffered messages that are now contiguous with lastSeq.
  function drain(r) {
    if (!r.buffer.size) return;
    for (const s of [...r.buffer.keys()].sort((a, b) => a - b)) {
      if (s > r.lastSeq + 1) break;
      addMessage(r, r.buffer.get(s), true); // no-op if the join already delivered it
      r.buffer.delete(s);
      r.lastSeq = Math.max(r.lastSeq, s);
    }
  }

  function onLeft(ev) {
    if (leaving.delete(ev.room)) return; // already removed locally
    if (rooms.has(ev.room)) removeRoom(ev.room);
  }

  function onPresence(ev) {
    const r = rooms.get(ev.room);
    if (!r) return;
    for (const n of ev.joined || []) r.members.add(String(n));
    for (const n of ev.left || []) r.members.delete(String(n));
    invalidate();
  }

  function onHistory(ev) {
    const r = rooms.get(ev.room);
    if (!r) return;
    const kind = r.historyQueue.shift() || 'older';
    const s = ui.scroller;
    const height = s.scrollHeight;
    const top = s.scrollTop;
    for (const m of ev.messages || []) if (Number.isInteger(m?.seq)) addMessage(r, m, false);
    if (kind === 'older') {
      r.more = Boolean(ev.more);
      r.loadingOlder = false;
    }
    if (r.name === active) s.scrollTop = top + (s.scrollHeight - height); // keep the reader's place
    invalidate();
  }

  function onError(ev) {
    const code = String(ev.code || 'error');
    const detail = String(ev.detail || '');
    const item = ev.cid ? outbox.get(ev.cid) : null;
    if (item) return sendFailed(ev.cid, item, code, detail);
    showNotice(`${code}: ${detail}${ev.room ? ` (room ${ev.room})` : ''}`);
    const r = ev.room ? rooms.get(ev.room) : null;
    if (!r) return undefined;
    if (r.joining) {
      r.joining = false;
      if (!r.everJoined && FATAL_JOIN.has(code)) removeRoom(r.name);
      else setTimeout(() => retryJoin(r), 2000);
    } else if (r.historyQueue.length) {
      r.historyQueue.shift();
      r.loadingOlder = false;
    }
    invalidate();
    return undefined;
  }

  // ---- sending -------------------------------------------------------------------------------
  function submitMessage() {
    const text = ui.input.value;
    if (!text.trim() || !active) return;
    if ([...text].length > maxText) {
      showNotice(`too_large: messages are limited to ${maxText} characters`);
      return;
    }
    const cid = newCid();
    const item = { room: active, text, ts: Date.now(), sentOn: 0, tries: 0 };
    outbox.set(cid, item);
    saveOutbox();
    item.node = msgNode({ user: me || wanted, text, ts: item.ts }, cid, item);
    ui.messages.append(item.node);
    transmit(cid, item); // if offline or not joined yet, flushOutbox sends it after the join
    ui.input.value = '';
    autosize();
    scrollToBottom();
    invalidate();
  }

  function transmit(cid, item) {
    const r = rooms.get(item.room);
    if (!r || !r.joined || item.failed) return;
    if (send({ type: 'send', room: item.room, text: item.text, cid })) item.sentOn = conn.id;
  }

  // After every (re)join: re-send what this connection has not sent yet, with the SAME cid so the
  // server deduplicates anything that did get through before a disconnect.
  function flushOutbox(r) {
    for (const [cid, item] of outbox) {
      if (item.room === r.name && !item.failed && item.sentOn !== conn.id) transmit(cid, item);
    }
  }

  function ackEcho(m) {
    if (!m.cid || (me && m.user !== me)) return;
    const item = outbox.get(m.cid);
    if (!item) return;
    outbox.delete(m.cid);
    item.node?.remove();
    saveOutbox();
  }

  // One delayed re-flush for all refused sends (rather than a timer each) keeps their order.
  let retryTimer = 0;
  function sendFailed(cid, item, code, detail) {
    item.sentOn = 0;
    if (RETRY_SEND.has(code) && ++item.tries <= 5) {
      showNotice(`${code}: ${detail} — retrying`);
      if (!retryTimer) {
        retryTimer = setTimeout(() => {
          retryTimer = 0;
          for (const r of rooms.values()) flushOutbox(r);
        }, 500 + 500 * item.tries);
      }
    } else if (code === 'not_joined' && ++item.tries <= 5) {
      const r = rooms.get(item.room); // our membership was lost: rejoin, then flushOutbox re-sends
      if (r && !r.joining) { r.joined = false; sendJoin(r); }
    } else {
      showNotice(`${code}: ${detail}`);
      item.failed = code;
      saveOutbox();
      if (item.node) {
        const node = msgNode({ user: me || wanted, text: item.text, ts: item.ts }, cid, item);
        item.node.replaceWith(node);
        item.node = node;
      }
    }
  }

  const outboxKey = () => `chat.outbox:${token ? 'token' : wanted}`;
  function saveOutbox() {
    const list = [];
    for (const [cid, i] of outbox) if (!i.failed) list.push([cid, i.room, i.text, i.ts]);
    store('session', outboxKey(), list.length ? JSON.stringify(list) : null);
  }

  // Unacked sends survive a reload of the tab; they are re-sent with their original cid.
  function loadOutbox() {
    outbox.clear();
    let list = [];
    try { list = JSON.parse(store('session', outboxKey()) || '[]'); } catch { /* corrupt: ignore */ }
    for (const [cid, room, text, ts] of Array.isArray(list) ? list : []) {
      if (typeof cid !== 'string' || typeof text !== 'string' || !ROOM_RE.test(room)) continue;
      outbox.set(cid, { room, text, ts, sentOn: 0, tries: 0 });
      if (!rooms.has(room)) addRoom(room);
    }
  }

  // ---- rooms -------------------------------------------------------------------------------------
  function addRoom(name) {
    const r = newRoom(name);
    rooms.set(name, r);
    invalidate();
    return r;
  }

  function joinRoom(raw) {
    const name = raw.trim();
    if (!ROOM_RE.test(name)) {
      showNotice('invalid_room: use 1–64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit');
      return;
    }
    if (!rooms.has(name)) {
      const r = addRoom(name);
      if (conn.state === 'online') sendJoin(r);
    }
    switchTo(name);
  }

  function leaveRoom(name) {
    if (send({ type: 'leave', room: name })) leaving.add(name);
    removeRoom(name);
  }

  function removeRoom(name) {
    rooms.delete(name);
    for (const [cid, item] of outbox) if (item.room === name) outbox.delete(cid);
    saveOutbox();
    if (active === name) switchTo(rooms.keys().next().value ?? null);
    invalidate();
  }

  function switchTo(name) {
    active = name;
    const r = rooms.get(name);
    if (r) r.unread = 0;
    ui.input.placeholder = name ? `Message #${name}` : 'Join a room to chat';
    renderMessages();
    scrollToBottom();
    setSidebar(false);
    invalidate();
  }

  function requestOlder() {
    const r = rooms.get(active);
    if (!r || !r.joined || !r.more || r.loadingOlder || conn.state !== 'online') return;
    const lowest = r.msgs.size ? Math.min(...r.msgs.keys()) : r.lastSeq + 1;
    if (lowest <= 1) { r.more = false; invalidate(); return; }
    r.loadingOlder = true;
    r.historyQueue.push('older');
    send({ type: 'history', room: r.name, before: lowest, limit: HISTORY_LIMIT });
    invalidate();
  }

  let polling = false;
  async function fetchRooms() {
    if (polling || (!wanted && !token)) return;
    polling = true;
    try {
      // Token mode: the API wants the same token as the socket (a header keeps it out of logs).
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      const res = await fetch('/api/rooms', { cache: 'no-store', headers });
      const data = res.ok ? await res.json() : null;
      if (Array.isArray(data)) {
        directory = data.filter((d) => d && typeof d.room === 'string' && ROOM_RE.test(d.room));
        invalidate();
      }
    } catch { /* offline: keep the last list */ }
    polling = false;
  }

  // ---- rendering ---------------------------------------------------------------------------------
  function msgNode(m, cid, item) {
    const user = String(m.user ?? '');
    const own = user === (me || wanted);
    const node = el('div', { class: `msg${own ? ' own' : ''}`, 'data-user': user });
    let status = null;
    if (!cid) {
      node.dataset.seq = String(m.seq);
    } else if (item?.failed) {
      node.dataset.failed = '1';
      node.classList.add('failed');
      const dismiss = el('button', { class: 'link-btn', type: 'button' }, 'dismiss');
      dismiss.addEventListener('click', () => { outbox.delete(cid); node.remove(); invalidate(); });
      status = el('span', { class: 'msg-status' }, `not sent (${item.failed}) · `, dismiss);
    } else {
      node.dataset.pending = '1';
      node.classList.add('pending');
    }
    const meta = el('div', { class: 'msg-meta' }, el('span', { class: 'msg-user' }, user),
      timeEl(m.ts, cid && !item?.failed ? 'sending…' : ''));
    node.append(avatar(user), el('div', { class: 'msg-body' }, meta,
      el('div', { class: 'msg-text' }, String(m.text ?? '')), status));
    return node;
  }

  function addMessage(r, m, live) {
    if (r.msgs.has(m.seq)) return;
    r.msgs.set(m.seq, m);
    if (r.name === active) {
      insertSorted(msgNode(m), m.seq);
      liveArrived ||= live;
      if (live && document.hidden && m.user !== me) hiddenUnread++;
    } else {
      if (live && m.user !== me) r.unread++;
      trim(r);
    }
  }

  // Confirmed messages sit in seq order; pending/failed own messages stay at the end.
  function insertSorted(node, seq) {
    const kids = ui.messages.children;
    let i = kids.length - 1;
    while (i >= 0 && !kids[i].dataset.seq) i--;
    while (i >= 0 && Number(kids[i].dataset.seq) > seq) i--;
    ui.messages.insertBefore(node, kids[i + 1] || null);
  }

  function trim(r) {
    if (r.msgs.size <= KEEP_MAX) return;
    const drop = [...r.msgs.keys()].sort((a, b) => a - b).slice(0, r.msgs.size - KEEP_MIN);
    for (const s of drop) r.msgs.delete(s);
    r.more = true;
    if (r.name === active) for (let i = 0; i < drop.length; i++) ui.messages.firstElementChild?.remove();
  }

  function renderMessages() {
    ui.messages.textContent = '';
    ui.jump.hidden = true;
    const r = rooms.get(active);
    if (!r) return;
    const frag = document.createDocumentFragment();
    for (const s of [...r.msgs.keys()].sort((a, b) => a - b)) frag.append(msgNode(r.msgs.get(s)));
    for (const [cid, item] of outbox) {
      if (item.room !== r.name) continue;
      item.node = msgNode({ user: me || wanted, text: item.text, ts: item.ts }, cid, item);
      frag.append(item.node);
    }
    ui.messages.append(frag);
  }

  // Sidebar, header and friends are cheap to rebuild; batch them once per burst of events.
  let scheduled = false;
  function invalidate() {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => { scheduled = false; renderChrome(); });
  }

  function renderChrome() {
    const r = rooms.get(active);
    renderRoomList();
    renderDirectory();
    renderMembers(r);
    ui.title.textContent = active || 'No room';
    ui.meta.textContent = !r ? '' : r.joined ? `${memberNames(r).length} online` : 'joining…';
    ui.older.hidden = !r || !r.more || !r.joined;
    ui.older.disabled = Boolean(r?.loadingOlder);
    ui.older.textContent = r?.loadingOlder ? 'Loading…' : 'Load older messages';
    const nothing = !ui.messages.childElementCount;
    ui.empty.hidden = !nothing || Boolean(r && !r.joined);
    ui.empty.textContent = r ? 'No messages yet. Say hello!' : 'Join a room to start chatting.';
    ui.input.disabled = !r;
    ui.sendBtn.disabled = !r;
    const unread = [...rooms.values()].reduce((n, x) => n + x.unread, 0) + hiddenUnread;
    document.title = `${unread ? `(${unread}) ` : ''}${active ? `#${active} · ` : ''}Chat`;
  }

  function renderRoomList() {
    ui.rooms.textContent = '';
    for (const r of rooms.values()) {
      const li = el('li', { class: `room${r.name === active ? ' active' : ''}${r.joined ? '' : ' joining'}`, 'data-room': r.name });
      const open = el('button', { class: 'room-open', type: 'button', title: r.name },
        el('span', { class: 'hash', 'aria-hidden': 'true' }, '#'), el('span', { class: 'room-name' }, r.name),
        r.unread ? el('span', { class: 'badge', 'aria-label': `${r.unread} unread` }, r.unread > 99 ? '99+' : String(r.unread)) : null);
      open.addEventListener('click', () => switchTo(r.name));
      const leave = el('button', { class: 'room-leave', type: 'button', title: `Leave #${r.name}`, 'aria-label': `Leave ${r.name}` }, '×');
      leave.addEventListener('click', () => leaveRoom(r.name));
      li.append(open, leave);
      ui.rooms.append(li);
    }
  }

  function renderDirectory() {
    ui.directory.textContent = '';
    const list = directory.filter((d) => !rooms.has(d.room))
      .sort((a, b) => (b.online || 0) - (a.online || 0) || a.room.localeCompare(b.room)).slice(0, 30);
    for (const d of list) {
      const b = el('button', { class: 'room-open', type: 'button', title: `Join #${d.room}` },
        el('span', { class: 'hash', 'aria-hidden': 'true' }, '#'), el('span', { class: 'room-name' }, d.room),
        el('span', { class: 'online' }, `${Number(d.online) || 0} online`));
      b.addEventListener('click', () => joinRoom(d.room));
      ui.directory.append(el('li', { class: 'room', 'data-available': d.room }, b));
    }
    if (!list.length) ui.directory.append(el('li', { class: 'hint' }, 'No other active rooms'));
  }

  function memberNames(r) {
    const names = new Set(r.members);
    if (r.joined && me) names.add(me); // another tab of ours leaving must not hide us here
    return [...names].sort((a, b) => a.localeCompare(b));
  }

  function renderMembers(r) {
    ui.members.textContent = '';
    const names = r ? memberNames(r) : [];
    for (const n of names) {
      ui.members.append(el('li', { class: n === me ? 'member me' : 'member', 'data-user': n },
        avatar(n), el('span', { class: 'member-name' }, n)));
    }
    ui.memberCount.textContent = names.length ? String(names.length) : '';
  }

  function atBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }
  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jump.hidden = true;
  }

  function showNotice(text) {
    ui.noticeText.textContent = text;
    ui.notice.hidden = false;
  }

  function showLogin(error) {
    ui.login.hidden = false;
    ui.loginError.hidden = !error;
    ui.loginError.textContent = error || '';
    if (!ui.nameInput.value) ui.nameInput.value = wanted;
    ui.nameInput.focus();
  }

  function setSidebar(open) {
    ui.app.classList.toggle('sidebar-open', open);
    ui.toggle.setAttribute('aria-expanded', String(open));
    ui.backdrop.hidden = !open;
  }

  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
    const n = [...ui.input.value].length;
    ui.counter.hidden = n < maxText * 0.9;
    ui.counter.textContent = `${n}/${maxText}`;
    ui.counter.classList.toggle('over', n > maxText);
  }

  // ---- wiring ----------------------------------------------------------------------------------
  function begin(name) {
    wanted = name;
    ui.login.hidden = true;
    ui.me.textContent = name;
    loadOutbox();
    if (!rooms.size) for (const r of initialRooms) addRoom(r);
    if (!active || !rooms.has(active)) switchTo(rooms.keys().next().value ?? null);
    else renderMessages();
    connect();
  }

  function bind() {
    ui.nameForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const name = ui.nameInput.value.trim();
      if (!NAME_RE.test(name)) {
        showLogin('Use 1–32 characters, without control characters.');
        return;
      }
      store('local', 'chat.name', name);
      begin(name);
    });
    ui.logout.addEventListener('click', () => {
      dropSocket();
      clearTimeout(conn.timer);
      outbox.clear(); // unsent messages belong to the old name
      saveOutbox();
      token = '';
      setState('offline', 'Signed out');
      renderMessages();
      ui.nameInput.value = wanted;
      showLogin();
    });
    ui.joinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!ui.roomInput.value.trim()) return;
      joinRoom(ui.roomInput.value);
      ui.roomInput.value = '';
    });
    ui.composer.addEventListener('submit', (e) => { e.preventDefault(); submitMessage(); ui.input.focus(); });
    ui.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submitMessage();
      }
    });
    ui.input.addEventListener('input', autosize);
    ui.scroller.addEventListener('scroll', () => {
      if (ui.scroller.scrollTop < 60) requestOlder();
      if (atBottom()) ui.jump.hidden = true;
    }, { passive: true });
    ui.older.addEventListener('click', requestOlder);
    ui.jump.addEventListener('click', scrollToBottom);
    ui.noticeClose.addEventListener('click', () => { ui.notice.hidden = true; });
    ui.reconnect.addEventListener('click', () => { ui.login.hidden = true; reconnectNow(); });
    ui.toggle.addEventListener('click', () => setSidebar(!ui.app.classList.contains('sidebar-open')));
    ui.backdrop.addEventListener('click', () => setSidebar(false));
    window.addEventListener('online', () => { if (conn.state === 'offline' && (wanted || token) && ui.login.hidden) reconnectNow(); });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) { hiddenUnread = 0; invalidate(); }
    });
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') setSidebar(false); });
  }

  function start() {
    bind();
    const params = new URLSearchParams(location.search);
    const urlRooms = params.getAll('room').map((r) => r.trim()).filter((r) => ROOM_RE.test(r));
    if (urlRooms.length) initialRooms = [...new Set(urlRooms)];
    token = params.get('token') || '';
    const urlUser = params.get('user');
    if (urlUser || token) {
      begin(urlUser || '');
    } else {
      ui.nameInput.value = store('local', 'chat.name') || '';
      setState('offline', 'Not connected');
      showLogin();
    }
    setInterval(fetchRooms, ROOMS_POLL_MS);
    invalidate();
  }

  // Debug/test hook: live views, cheap to serialize.
  window.chat = Object.freeze({
    get state() { return conn.state; },
    get user() { return me; },
    get active() { return active; },
    get unacked() { return [...outbox.keys()]; },
    get rooms() {
      const out = {};
      for (const r of rooms.values()) {
        out[r.name] = { lastSeq: r.lastSeq, joined: r.joined, unread: r.unread, members: memberNames(r) };
      }
      return out;
    },
  });

  start();
})();
