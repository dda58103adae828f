'use strict';
// A Socket.IO echo server that moves its clients before the ALB cuts them (the drain notice, ../node-drain).
//
//   node server.js --port 8080 --server-id ID --redis-url redis://127.0.0.1:6379
//
// Flags win over the environment: PORT, HOST (127.0.0.1), STICKYWS_SERVER_ID (else the ECS task id), REDIS_URL.
// Timing comes from the stickyws settings variables the stack and the twin give every server:
// STICKYWS_DRAIN_WINDOW_S, STICKYWS_DEREGISTRATION_DELAY_S, STICKYWS_PING_INTERVAL_S and
// STICKYWS_PING_TIMEOUT_S (Socket.IO's heartbeat; a long poll is held at most one ping interval, so
// it must stay below the ALB's idle timeout). DRAIN_NOTICES=off ignores drain notices: clients stay
// until the ALB cuts them (for comparison).
//
// Socket.IO starts every session on HTTP long-polling and then upgrades it to a WebSocket: each polling
// request must reach the server that holds the session, which the ALB's cookie stickiness (AWSALB)
// does. Events: `hello` {serverId} on connect; `echo` (data, ack) answers {data, server, transport}.
// On a drain notice each socket gets `drain` {serverId, retryAfterMs} and its Engine.IO connection is
// closed at its own moment of the drain window: the client sees "transport close" and reconnects on
// its own; the ALB sends the new session to another target (this one is deregistered). A socket that
// connects while draining is moved at once. SIGTERM closes what is left. GET /health answers 200.
const http = require('http');
const { Server } = require('socket.io');
const Redis = require('ioredis');
const { watchDrain, spread, ecsTaskId } = require('../node-drain/stickyws-drain');

const flag = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 1 ? process.argv[i + 1] : undefined;
};
const seconds = (name, fallback) => Number(process.env[name] || fallback) * 1000;

async function main() {
  const port = Number(flag('port') || process.env.PORT || 8080);
  const host = flag('host') || process.env.HOST || '127.0.0.1'; // 0.0.0.0 in a container
  const serverId = flag('server-id') || process.env.STICKYWS_SERVER_ID || (await ecsTaskId());
  if (!serverId) throw new Error('no server id: pass --server-id or STICKYWS_SERVER_ID (on ECS: the task id)');
  const redis = new Redis(flag('redis-url') || process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  redis.on('error', (error) => console.error(`node-socketio ${serverId}: redis: ${error.message}`));
  let draining = false;

  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/health' ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ serverId, draining, clients: io.of('/').sockets.size }));
  });
  const io = new Server(server, {
    pingInterval: seconds('STICKYWS_PING_INTERVAL_S', 25),
    pingTimeout: seconds('STICKYWS_PING_TIMEOUT_S', 20),
  });
  const moveOn = (socket) => {
    if (!socket.connected) return;
    socket.emit('drain', { serverId, retryAfterMs: Math.floor(Math.random() * 500) });
    socket.conn.close(); // after the `drain` packet is flushed; not socket.disconnect(): no auto-reconnect
  };
  io.on('connection', (socket) => {
    socket.on('echo', (data, ack) => {
      if (typeof ack === 'function') ack({ data, server: serverId, transport: socket.conn.transport.name });
    });
    socket.emit('hello', { serverId });
    if (draining) moveOn(socket);
  });

  if (process.env.DRAIN_NOTICES !== 'off') {
    watchDrain({
      redis,
      serverId,
      windowMs: seconds('STICKYWS_DRAIN_WINDOW_S', 30),
      delayMs: seconds('STICKYWS_DEREGISTRATION_DELAY_S', 300),
      onDrain: ({ notice, windowMs }) => {
        console.error(`node-socketio ${serverId}: drain notice (${notice.source}): moving`
          + ` ${io.of('/').sockets.size} sockets over ${windowMs} ms`);
        draining = true;
        spread(io.of('/').sockets.values(), windowMs, moveOn);
      },
    });
  }
  process.on('SIGTERM', () => {
    io.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
  server.listen(port, host, () => console.error(`node-socketio ${serverId}: listening on ${host}:${port}`));
}

main().catch((error) => {
  console.error(`node-socketio: ${error.message}`);
  process.exit(1);
});
