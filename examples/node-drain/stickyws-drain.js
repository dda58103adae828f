'use strict';
// stickyws-drain: move a Node server's WebSocket clients BEFORE the ALB cuts them at deregistration.
//
// The contract it relies on (the stickyws drain-notifier Lambda and the local twin both keep it):
//   * when ECS starts stopping the task, the notice goes to Redis in this order:
//       SET ws:drain:<serverId> <notice> EX 7200   (kept: a server that subscribes late still finds it)
//       PUBLISH ws:drain:<serverId> <notice>       (live servers act at once)
//     <notice> = {"type":"drain","serverId":"<id>","source":"...","reason":"...","issuedAtMs":<epoch ms>};
//   * <serverId> is the ECS task id, the last part of the task ARN (ecsTaskId() reads it);
//   * the ALB keeps the open connections for deregistration_delay_s after the notice, then cuts them.
// watchDrain() subscribes first and then GETs the key, at start and after every Redis reconnect, so a
// notice stored before the subscription is found and one published after it is received. It calls
// onDrain({notice, windowMs, deadlineMs}) once: tell every client to reconnect by deadlineMs (epoch ms),
// the earlier of now + windowMs and the ALB's cut less marginMs when delayMs is given.
// spread(items, windowMs, fn) calls fn(item) at a random moment of each item's own slot of the window
// (uniform over the window, never a burst). The file requires nothing: pass your ioredis client; a
// duplicate() of it subscribes.

function watchDrain({ redis, serverId, windowMs, delayMs = Infinity, marginMs = 1000, onDrain }) {
  const key = `ws:drain:${serverId}`;
  const sub = redis.duplicate();
  let fired = false;
  const handle = (text) => {
    let notice;
    try { notice = JSON.parse(text); } catch { return; }
    if (fired || !notice || notice.type !== 'drain' || notice.serverId !== serverId) return;
    fired = true;
    const now = Date.now();
    const deadlineMs = Math.min(now + windowMs, (notice.issuedAtMs || now) + delayMs - marginMs);
    onDrain({ notice, windowMs: Math.max(0, deadlineMs - now), deadlineMs });
  };
  sub.on('message', (channel, text) => channel === key && handle(text));
  sub.on('error', () => {}); // ioredis reconnects on its own; `redis` reports the same outage
  sub.on('ready', () => { // at start and after every reconnect
    sub.subscribe(key).then(() => redis.get(key)).then((text) => text && handle(text), () => {});
  });
  return { close: () => sub.disconnect() };
}

function spread(items, windowMs, fn) {
  const list = [...items];
  for (let i = list.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  const slotMs = list.length ? windowMs / list.length : 0;
  return list.map((item, i) => setTimeout(fn, (i + Math.random()) * slotMs, item));
}

async function ecsTaskId(env = process.env) {
  const base = env.ECS_CONTAINER_METADATA_URI_V4; // set by the ECS agent in every container
  if (!base) return null;
  const task = await (await fetch(`${base}/task`)).json();
  return String(task.TaskARN).split('/').pop();
}

module.exports = { watchDrain, spread, ecsTaskId };
