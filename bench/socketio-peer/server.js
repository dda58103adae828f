'use strict';
// The fan-out peer of the stickyws benchmark: the most used Node stack for pushing to rooms across
// servers, socket.io 4 with @socket.io/redis-adapter on the same Redis as the reference server.
//   * websocket transport only (no long-polling upgrade dance), perMessageDeflate off (socket.io's
//     default), socket.io's own ping/pong (pingInterval 25 s);
//   * auth in a middleware: the JWT from the CONNECT packet (`40{"token":"..."}`), verified HS256 with
//     the same secret and audience as the reference server, once per connection;
//   * `subscribe` event with an acknowledgement: the socket joins the room named like the topic, the ack
//     answers {"topic": T};
//   * a backend publishes with @socket.io/redis-emitter (bench/socketio-peer/publish.js): the adapter
//     receives it on Redis and broadcasts to the room's sockets on this server;
//   * GET /health answers 200 (the benchmark waits for it before it starts).
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    console.error(`socketio-peer: ${name} is not set (bench/run.py sets it)`);
    process.exit(2);
  }
  return v;
};

const port = Number(env('PEER_PORT'));
const serverId = env('PEER_SERVER_ID');
const secret = env('PEER_JWT_SECRET');
const audience = env('PEER_JWT_AUDIENCE');
const pubClient = new Redis(env('PEER_REDIS_URL'));
const subClient = pubClient.duplicate();

const httpServer = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: 'serving', serverId, connections: io.engine.clientsCount }));
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  adapter: createAdapter(pubClient, subClient),
});

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token !== 'string' || !token) {
    next(new Error('missing token'));
    return;
  }
  try {
    const claims = jwt.verify(token, secret, { algorithms: ['HS256'], audience });
    socket.data.userId = claims.sub;
    next();
  } catch (error) {
    next(new Error('invalid token'));
  }
});

io.on('connection', (socket) => {
  socket.on('subscribe', (topic, ack) => {
    if (typeof topic !== 'string' || !topic || topic.length > 200) {
      if (typeof ack === 'function') ack({ error: 'bad_topic' });
      return;
    }
    socket.join(topic);
    if (typeof ack === 'function') ack({ topic });
  });
});

httpServer.listen(port, '127.0.0.1', () =>
  console.error(`socketio-peer: ${serverId} listening on 127.0.0.1:${port}`),
);
process.on('SIGTERM', () => process.exit(0));
