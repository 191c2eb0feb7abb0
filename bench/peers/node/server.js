// The idiomatic Socket.IO chat app, one process of several behind nginx (make bench, experiment P).
//
// A client connects with ?room=<name> (repeatable) and is in those rooms; `send` with a payload
// naming one of its rooms is emitted to that room as `message` (the sender gets its own echo, as
// in the project). The Redis adapter carries every broadcast to the other processes.
//
//   node server.js PORT REDIS_URL [NAME]      (or PEER_PORT, PEER_REDIS_URL, PEER_NAME)
"use strict";

const { createServer } = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2] || process.env.PEER_PORT);
const redisUrl = process.argv[3] || process.env.PEER_REDIS_URL;
const name = process.argv[4] || process.env.PEER_NAME || `peer-${port}`;

async function main() {
  // Listening only once both Redis connections are up: /healthz answering means ready.
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (err) => console.error("redis pub:", err.message));
  sub.on("error", (err) => console.error("redis sub:", err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const http = createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "text/plain" });
    res.end(req.url === "/healthz" ? "ok\n" : "not found\n");
  });
  // WebSocket only: no long-polling, so no sticky sessions are needed behind round robin.
  const io = new Server(http, { transports: ["websocket"], serveClient: false });
  io.adapter(createAdapter(pub, sub));

  io.on("connection", (socket) => {
    // Every ?room= of the URL (handshake.query keeps only the last of a repeated parameter).
    const rooms = new URL(socket.request.url, "http://peer").searchParams.getAll("room");
    for (const room of rooms) socket.join(room);
    // Which process the client landed on: the load generator counts users per process.
    socket.emit("hello", { gateway: name });
    socket.on("send", (payload) => {
      if (payload && typeof payload.room === "string" && socket.rooms.has(payload.room)) {
        io.to(payload.room).emit("message", payload);
      }
    });
  });

  http.listen(port, "127.0.0.1");

  // SIGTERM (the stack's stop): close the sockets and Redis, then exit.
  process.on("SIGTERM", () => {
    io.close(() => {
      Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
    });
    setTimeout(() => process.exit(0), 3000).unref();
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
