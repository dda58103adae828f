'use strict';
// A `ws` echo server that moves its clients before the ALB cuts them (the drain notice, ../node-drain).
//
//   node server.js --port 8080 --server-id ID --redis-url redis://127.0.0.1:6379
//
// Flags win over the environment: PORT, HOST (127.0.0.1), STICKYWS_SERVER_ID (else the ECS task id), REDIS_URL.
// Timing comes from the stickyws settings variables the stack and the twin give every server:
// STICKYWS_DRAIN_WINDOW_S, STICKYWS_DEREGISTRATION_DELAY_S, STICKYWS_PING_INTERVAL_S.
// DRAIN_NOTICES=off ignores drain notices: clients stay until the ALB cuts them (for comparison).
//
// Frames: on connect {"type":"hello","serverId"}; any text frame comes back as it is. On a drain
// notice every client gets {"type":"reconnect","serverId","retryAfterMs"} and a close 1012 (service
// restart) at its own moment of the drain window; a client that connects while draining gets both at
// once. SIGTERM closes what is left with 1001 (going away). GET /health answers 200.
const http = require('http');
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');
const { watchDrain, spread, ecsTaskId } = require('../node-drain/stickyws-drain');

const flag = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 1 ? process.argv[i + 1] : undefined;
};
const seconds = (name, fallback) => Number(process.env[name] || fallback) * 1000;
const CLOSE_SERVICE_RESTART = 1012;
const CLOSE_GOING_AWAY = 1001;

async function main() {
  const port = Number(flag('port') || process.env.PORT || 8080);
  const host = flag('host') || process.env.HOST || '127.0.0.1'; // 0.0.0.0 in a container
  const serverId = flag('server-id') || process.env.STICKYWS_SERVER_ID || (await ecsTaskId());
  if (!serverId) throw new Error('no server id: pass --server-id or STICKYWS_SERVER_ID (on ECS: the task id)');
  const redis = new Redis(flag('redis-url') || process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  redis.on('error', (error) => console.error(`node-ws ${serverId}: redis: ${error.message}`));
  let draining = false;

  const moveOn = (ws) => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(JSON.stringify({ type: 'reconnect', serverId, retryAfterMs: Math.floor(Math.random() * 500) }));
    ws.close(CLOSE_SERVICE_RESTART, 'server draining');
  };
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/health' ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ serverId, draining, clients: wss.clients.size }));
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.send(JSON.stringify({ type: 'hello', serverId }));
    if (draining) moveOn(ws);
  });
  // The ALB's idle timeout counts traffic in either direction: a ping keeps a quiet client's tunnel open.
  setInterval(() => wss.clients.forEach((ws) => ws.ping()), seconds('STICKYWS_PING_INTERVAL_S', 30)).unref();

  if (process.env.DRAIN_NOTICES !== 'off') {
    watchDrain({
      redis,
      serverId,
      windowMs: seconds('STICKYWS_DRAIN_WINDOW_S', 30),
      delayMs: seconds('STICKYWS_DEREGISTRATION_DELAY_S', 300),
      onDrain: ({ notice, windowMs }) => {
        console.error(`node-ws ${serverId}: drain notice (${notice.source}): moving ${wss.clients.size} clients`
          + ` over ${windowMs} ms`);
        draining = true;
        spread(wss.clients, windowMs, moveOn);
      },
    });
  }
  process.on('SIGTERM', () => {
    wss.clients.forEach((ws) => ws.close(CLOSE_GOING_AWAY, 'server shutting down'));
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
  server.listen(port, host, () => console.error(`node-ws ${serverId}: listening on ${host}:${port}`));
}

main().catch((error) => {
  console.error(`node-ws: ${error.message}`);
  process.exit(1);
});
