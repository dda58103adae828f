// stickyws-client.js under Node against the real servers behind the twin: send numbered messages until
// the client has moved to another server and at least COUNT were sent, then print one JSON summary.
// Usage: node through_twin.mjs <ws url> <token> <count>. Every event is printed as a JSON line
// ({"event": ...}) so the caller can act (deregister the server of the first "open").
import WebSocket from "ws";

import { StickyClient } from "../../../stickyws/static/stickyws-client.js";

const [url, token, countText] = process.argv.slice(2);
const count = Number(countText);
const BOUND_MS = 25000;

/** A ws WebSocket with a cookie jar, as a browser keeps one: the load balancer's cookie sticks. */
function withCookies(jar) {
  return class CookieWebSocket extends WebSocket {
    constructor(target, protocols) {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      super(target, protocols, cookie ? { headers: { Cookie: cookie } } : {});
      this.on("upgrade", (res) => {
        for (const line of [].concat(res.headers["set-cookie"] || [])) {
          const pair = line.split(";")[0];
          const at = pair.indexOf("=");
          jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
        }
      });
    }
  };
}

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const client = new StickyClient(url, { token, WebSocket: withCookies(new Map()), reconnectBaseMs: 50 });
const opens = [];
const echoes = [];
const acks = new Map();
const errors = [];
for (const type of ["open", "reconnecting", "error", "close"]) {
  client.addEventListener(type, (e) => say({ event: type, detail: e.detail }));
}
client.addEventListener("open", (e) => opens.push(e.detail));
client.addEventListener("message", (e) => echoes.push(e.detail.data.n));
client.addEventListener("error", (e) => errors.push(e.detail));

const started = Date.now();
let sent = 0;
const inflight = [];
while ((opens.length < 2 || sent < count) && Date.now() - started < BOUND_MS) {
  if (client.state === "open" || sent > 0) {
    const n = ++sent;
    inflight.push(
      client.send({ n }).then((ack) => {
        acks.set(ack.id, (acks.get(ack.id) || 0) + 1);
      }),
    );
  }
  await new Promise((r) => setTimeout(r, 25));
}
await Promise.race([Promise.allSettled(inflight), new Promise((r) => setTimeout(r, 10000))]);
const deadline = Date.now() + 5000;
while (echoes.length < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
say({
  summary: {
    sent,
    ackCounts: Object.fromEntries(acks),
    echoes,
    servers: opens.map((o) => o.serverId),
    sessions: opens.map((o) => o.sessionId),
    resumed: opens.map((o) => o.resumed),
    lastSeq: client.lastSeq,
    errors,
  },
});
client.close();
process.exit(0);
