'use strict';
// The socket.io peer's backend: @socket.io/redis-emitter on the same Redis. Reads one topic name per
// line on stdin (the load generator paces them) and emits
//   io.to(topic).emit('publication', {topic, data: {p, ts}})
// where ts is the wall-clock time of the emit in microseconds, so receivers measure publish-to-receive.
// Usage: node publish.js REDIS_URL PHASE  (exits when stdin closes, after its last publish is written).
const readline = require('readline');
const { Emitter } = require('@socket.io/redis-emitter');
const Redis = require('ioredis');

const [redisUrl] = process.argv.slice(2);
if (!redisUrl) {
  console.error('usage: node publish.js REDIS_URL');
  process.exit(2);
}
const redis = new Redis(redisUrl);
const emitter = new Emitter(redis);
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

redis.once('ready', () => {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [phase, topic] = line.split(' ');
    if (!topic) return;
    emitter.to(topic).emit('publication', { topic, data: { p: phase, ts: nowUs() } });
  });
  lines.on('close', () => {
    redis.quit().finally(() => process.exit(0));
  });
});
