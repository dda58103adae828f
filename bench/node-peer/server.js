'use strict';
// The seed article's WebSocket server (WebSocketLoadBalancedServer), written out as the peer of the
// stickyws benchmark. What it does, as the article's code does it:
//   * verifyClient: token from ?token=, HS256 JWT verify (same secret and audience as the Python
//     server), Redis GET of the user's routing key (409 when another server holds it), SETEX of the
//     routing key with the routing TTL;
//   * on connection: an in-memory metadata entry, a per-connection ping every PING_INTERVAL_S, and the
//     acknowledgment {"type":"connected","serverId",...,"timestamp"};
//   * a heartbeat key (SETEX, JSON with the connection count) every HEARTBEAT_INTERVAL_S;
//   * on close: forget the connection and DEL the routing key.
// Differences from the article's text, all in the peer's favour or needed to compare like with like:
//   * validateToken is a placeholder in the article; here it is a real HS256 verify, done ONCE per
//     handshake (the article calls it again in handleConnection; the user id is passed on instead);
//   * handleMessage is empty in the article; here it answers the stickyws.v1 frames the load generator
//     speaks: {"type":"send","id":N,"data":D} -> {"type":"message","seq":S,"data":D} then
//     {"type":"ack","id":N}. No dedup, no session state, no Redis per message (the article has none);
//   * GET /health answers 200 (the benchmark waits for it before it starts).
// With PEER_COMMIT=1 (the peer of the reference's exactly-once mode) each send is committed before its ack,
// as the reference does it: one Lua script call per message (dedup by id, next seq, the reply kept in a
// bounded outbox in the user's session hash, route TTL refreshed), ioredis auto-pipelining on. A
// duplicate id is acknowledged with "duplicate":true and not answered again.
// Key names, TTLs and intervals come from the environment, set by bench/ from stickyws.keys and the
// settings model, so both servers use the same registry layout.
const http = require('http');
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    console.error(`node-peer: ${name} is not set (bench/run.py sets it)`);
    process.exit(2);
  }
  return v;
};

const port = Number(env('PEER_PORT'));
const serverId = env('PEER_SERVER_ID');
const secret = env('PEER_JWT_SECRET');
const audience = env('PEER_JWT_AUDIENCE');
const userKeyTemplate = env('PEER_USER_KEY_TEMPLATE'); // e.g. ws:user:{id}
const heartbeatKey = env('PEER_HEARTBEAT_KEY');
const routingTtlS = Number(env('PEER_ROUTING_TTL_S'));
const heartbeatIntervalMs = Number(env('PEER_HEARTBEAT_INTERVAL_S')) * 1000;
const heartbeatTtlS = Number(env('PEER_HEARTBEAT_TTL_S'));
const pingIntervalMs = Number(env('PEER_PING_INTERVAL_S')) * 1000;
const userKey = (userId) => userKeyTemplate.replace('{id}', userId);
const commitMode = process.env.PEER_COMMIT === '1';

const redis = new Redis(env('PEER_REDIS_URL'), { enableAutoPipelining: commitMode });
// KEYS: session hash, route key. ARGV: id, payload, session TTL, max messages, max bytes, server id, route TTL.
const COMMIT_LUA = `
local f = redis.call('HMGET', KEYS[1], 'lastClientId', 'lastServerSeq', 'outFirst', 'outBytes')
local last, seq = tonumber(f[1]) or 0, tonumber(f[2]) or 0
local id = tonumber(ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if id <= last then return {1, seq} end
seq = seq + 1
redis.call('HSET', KEYS[1], 'm:' .. seq, ARGV[2])
local first, bytes = tonumber(f[3]) or seq, (tonumber(f[4]) or 0) + #ARGV[2]
local limit, maxb = tonumber(ARGV[4]), tonumber(ARGV[5])
while (seq - first + 1) > limit or (bytes > maxb and first < seq) do
  bytes = bytes - redis.call('HSTRLEN', KEYS[1], 'm:' .. first)
  redis.call('HDEL', KEYS[1], 'm:' .. first)
  first = first + 1
end
redis.call('HSET', KEYS[1], 'lastClientId', id, 'lastServerSeq', seq, 'outFirst', first, 'outBytes', bytes)
if redis.call('GET', KEYS[2]) == ARGV[6] then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
return {0, seq}
`;
let sessionKey = null;
let commitArgs = null;
if (commitMode) {
  redis.defineCommand('stickyCommit', { numberOfKeys: 2, lua: COMMIT_LUA });
  const sessionTemplate = env('PEER_SESSION_KEY_TEMPLATE');
  sessionKey = (userId) => sessionTemplate.replace('{id}', userId);
  commitArgs = [env('PEER_SESSION_TTL_S'), env('PEER_OUTBOX_MAX_MESSAGES'), env('PEER_OUTBOX_MAX_BYTES'), serverId,
    String(routingTtlS)];
}
const connections = new Map();

function validateToken(token) {
  const claims = jwt.verify(token, secret, { algorithms: ['HS256'], audience });
  if (typeof claims.sub !== 'string' || !claims.sub) throw new Error('no sub');
  return claims.sub;
}

async function verifyClient(info, callback) {
  const token = new URL(info.req.url, `http://${info.req.headers.host}`).searchParams.get('token');
  if (!token) {
    callback(false, 401, 'Missing authentication token');
    return;
  }
  try {
    const userId = validateToken(token);
    const existingServer = await redis.get(userKey(userId));
    if (existingServer && existingServer !== serverId) {
      callback(false, 409, 'Connection exists on different server');
      return;
    }
    await redis.setex(userKey(userId), routingTtlS, serverId);
    info.req.userId = userId;
    callback(true);
  } catch (error) {
    callback(false, 403, 'Invalid token');
  }
}

function handleConnection(ws, request) {
  const userId = request.userId;
  const metadata = { userId, serverId, connectedAt: Date.now(), lastActivity: Date.now() };
  connections.set(userId, metadata);
  let seq = 0;
  ws.on('message', (data, isBinary) => {
    metadata.lastActivity = Date.now();
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch (e) {
      ws.send(JSON.stringify({ type: 'error', code: 'bad_json', message: 'frame is not valid JSON' }));
      return;
    }
    if (commitMode && msg && msg.type === 'send' && Number.isInteger(msg.id) && msg.id > 0) {
      const payload = JSON.stringify(msg.data === undefined ? null : msg.data);
      redis.stickyCommit(sessionKey(userId), userKey(userId), msg.id, payload, ...commitArgs).then((reply) => {
        if (ws.readyState !== ws.OPEN) return;
        if (reply[0] === 1) {
          ws.send(JSON.stringify({ type: 'ack', id: msg.id, duplicate: true }));
          return;
        }
        ws.send(`{"type":"message","seq":${reply[1]},"data":${payload}}`);
        ws.send(JSON.stringify({ type: 'ack', id: msg.id }));
      }, () => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', code: 'internal_error', id: msg.id }));
      });
    } else if (msg && msg.type === 'send' && Number.isInteger(msg.id)) {
      seq += 1;
      ws.send(JSON.stringify({ type: 'message', seq, data: msg.data }));
      ws.send(JSON.stringify({ type: 'ack', id: msg.id }));
    } else {
      ws.send(JSON.stringify({ type: 'error', code: 'unknown_type', message: 'unknown frame' }));
    }
  });
  ws.on('close', () => {
    connections.delete(userId);
    redis.del(userKey(userId)).catch(() => {});
  });
  ws.on('pong', () => {
    metadata.lastActivity = Date.now();
  });
  if (pingIntervalMs > 0) {
    const pingInterval = setInterval(() => {
      if (ws.readyState === ws.OPEN) {
        ws.ping();
      } else {
        clearInterval(pingInterval);
      }
    }, pingIntervalMs);
  }
  ws.send(JSON.stringify({ type: 'connected', serverId, timestamp: Date.now() }));
}

function publishHeartbeat() {
  const body = JSON.stringify({ serverId, connectionCount: connections.size, timestamp: Date.now() });
  redis.setex(heartbeatKey, heartbeatTtlS, body).catch(() => {});
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: 'serving', serverId, connections: connections.size }));
    return;
  }
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, verifyClient, perMessageDeflate: false });
wss.on('connection', handleConnection);
setInterval(publishHeartbeat, heartbeatIntervalMs);
server.listen(port, '127.0.0.1', () => console.error(`node-peer: ${serverId} listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
