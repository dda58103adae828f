// Protocol tests of stickyws-client.js under Node with the ws package, against a scriptable fake
// endpoint (fake_server.mjs). Run by tests/browser/test_node_client.py (node --test).
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import WebSocket from "ws";

import {
  MAX_AVOID_HOPS,
  StickyClient,
  backoffDelayMs,
  dropStickyCookies,
  parseRetryAfter,
} from "../../../stickyws/static/stickyws-client.js";
import { FakeServer, connected, next, record, until } from "./fake_server.mjs";

let server;
let clients;

beforeEach(async () => {
  server = await new FakeServer().start();
  clients = [];
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

function client(options = {}) {
  const c = new StickyClient(server.url, { token: "tok.en.jwt", WebSocket, reconnectBaseMs: 20, ...options });
  clients.push(c);
  return c;
}

test("the token travels as a stickyws.bearer subprotocol next to stickyws.v1, never in the URL", async () => {
  const c = client();
  const open = await next(c, "open");
  assert.equal(open.serverId, "fake-1");
  assert.deepEqual(server.handshakes[0].protocols, ["stickyws.v1", "stickyws.bearer.tok.en.jwt"]);
  assert.equal(server.handshakes[0].url.search, "");
});

test("send resolves with the ack and frames carry increasing ids", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    ws.onFrame = (f) => ws.sendJson({ type: "ack", id: f.id });
  };
  const c = client();
  await next(c, "open");
  const acks = await Promise.all([c.send({ n: 1 }), c.send({ n: 2 }), c.send({ n: 3 })]);
  assert.deepEqual(acks, [
    { id: 1, duplicate: false },
    { id: 2, duplicate: false },
    { id: 3, duplicate: false },
  ]);
  assert.deepEqual(server.sockets[0].frames.map((f) => [f.type, f.id, f.data.n]), [
    ["send", 1, 1],
    ["send", 2, 2],
    ["send", 3, 3],
  ]);
});

test("an error frame answering a message rejects its promise with the server's code", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    ws.onFrame = (f) => ws.sendJson({ type: "error", code: "bad_data", message: "no", id: f.id });
  };
  const c = client();
  await next(c, "open");
  await assert.rejects(c.send(1), (err) => err.code === "bad_data" && err.message === "no");
});

test("messages (replies and pushes) are delivered once: a seq at or below lastSeq is dropped", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    for (const seq of [1, 2, 2, 1, 3]) ws.sendJson({ type: "message", seq, data: `m${seq}` });
  };
  const c = client();
  const seen = record(c);
  await until(() => c.lastSeq === 3);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seen.of("message"), [
    { seq: 1, data: "m1" },
    { seq: 2, data: "m2" },
    { seq: 3, data: "m3" },
  ]);
});

test("publications follow the subscribe ack's position: duplicates and other topics are dropped, a new epoch restarts", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    ws.onFrame = (f) => {
      ws.sendJson({ type: "ack", id: f.id, topic: f.topic, offset: 5, epoch: "e1" });
      const pub = (topic, offset, epoch) => ws.sendJson({ type: "publication", topic, offset, epoch, data: offset });
      pub("news", 5, "e1");
      pub("news", 6, "e1");
      pub("other", 9, "e1");
      pub("news", 7, "e1");
      pub("news", 6, "e1");
      pub("news", 1, "e2");
      pub("news", 1, "e2");
    };
  };
  const c = client();
  const seen = record(c);
  await next(c, "open");
  const ack = await c.subscribe("news");
  assert.deepEqual(ack, { id: 1, duplicate: false, topic: "news", offset: 5, epoch: "e1" });
  await until(() => seen.of("publication").length === 3);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    seen.of("publication").map((p) => [p.topic, p.offset, p.epoch]),
    [
      ["news", 6, "e1"],
      ["news", 7, "e1"],
      ["news", 1, "e2"],
    ],
  );
  assert.deepEqual(c.topics.get("news"), { offset: 1, epoch: "e2" });
});

test("unrecoverable and gap are surfaced as events and move the client's positions", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected({ subscriptions: ["news"] }));
    ws.onFrame = (f) => {
      ws.sendJson({ type: "ack", id: f.id, topic: f.topic, offset: 2, epoch: "e1" });
      ws.sendJson({ type: "unrecoverable", topic: "news", offset: 40, epoch: "e1" });
      ws.sendJson({ type: "publication", topic: "news", offset: 40, epoch: "e1", data: "old" });
      ws.sendJson({ type: "publication", topic: "news", offset: 41, epoch: "e1", data: "new" });
      ws.sendJson({ type: "gap", fromSeq: 1, toSeq: 7 });
      ws.sendJson({ type: "message", seq: 7, data: "dropped" });
      ws.sendJson({ type: "message", seq: 8, data: "kept" });
    };
  };
  const c = client();
  const seen = record(c);
  await next(c, "open");
  await c.subscribe("news");
  await until(() => seen.of("message").length === 1);
  assert.deepEqual(seen.of("unrecoverable"), [{ topic: "news", offset: 40, epoch: "e1" }]);
  assert.deepEqual(seen.of("publication").map((p) => p.data), ["new"]);
  assert.deepEqual(seen.of("gap"), [{ fromSeq: 1, toSeq: 7 }]);
  assert.deepEqual(seen.of("message"), [{ seq: 8, data: "kept" }]);
  assert.equal(c.lastSeq, 8);
});

test("a resume sends resume, lastSeq and since, trims the outbox by lastClientId and resends the rest in order", async () => {
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    if (round === 1) {
      ws.sendJson(connected());
      ws.onFrame = (f) => {
        if (f.type === "subscribe") {
          ws.sendJson({ type: "ack", id: f.id, topic: f.topic, offset: 3, epoch: "ep" });
          ws.sendJson({ type: "message", seq: 1, data: "a" });
          ws.sendJson({ type: "message", seq: 2, data: "b" });
        }
        if (f.type === "send" && f.id === 3) ws.close(1012, "server draining"); // ids 2 and 3 not acked
      };
    } else {
      ws.sendJson(connected({ resumed: true, lastClientId: 2, lastServerSeq: 2, subscriptions: ["news"] }));
      ws.onFrame = (f) => ws.sendJson({ type: "ack", id: f.id });
    }
  };
  const c = client();
  await next(c, "open");
  await c.subscribe("news");
  await until(() => c.lastSeq === 2);
  const sends = [c.send("two"), c.send("three")];
  const reopened = await next(c, "open");
  assert.deepEqual([reopened.resumed, reopened.lastClientId, reopened.resending], [true, 2, 1]);
  assert.deepEqual(await Promise.all(sends), [
    { id: 2, duplicate: true },
    { id: 3, duplicate: false },
  ]);
  const query = Object.fromEntries(server.handshakes[1].url.searchParams);
  assert.deepEqual(query, { resume: "sess-1.mac", lastSeq: "2", since: JSON.stringify({ news: [3, "ep"] }) });
  assert.deepEqual(server.sockets[1].frames, [{ type: "send", data: "three", id: 3 }]);
});

test("a session that did not resume gets every wanted topic subscribed again, with its position", async () => {
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    ws.sendJson(connected({ sessionId: `s${round}` }));
    ws.onFrame = (f) => {
      ws.sendJson({ type: "ack", id: f.id, topic: f.topic, offset: 10, epoch: "ep" });
      if (round === 1) ws.close(1011, "internal");
    };
  };
  const c = client();
  await next(c, "open");
  await c.subscribe("news");
  const reopened = await next(c, "open");
  assert.equal(reopened.resumed, false);
  await until(() => server.sockets[1] && server.sockets[1].frames.length === 1);
  assert.deepEqual(server.sockets[1].frames, [{ type: "subscribe", topic: "news", offset: 10, epoch: "ep", id: 2 }]);
});

test("the reconnect instruction closes and waits retryAfterMs before the next attempt", async () => {
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    ws.sendJson(connected());
    if (round === 1) ws.sendJson({ type: "reconnect", reason: "server_draining", retryAfterMs: 150 });
  };
  const c = client({ reconnectBaseMs: 10 });
  const seen = record(c);
  await until(() => seen.of("open").length === 2);
  const [plan] = seen.of("reconnecting");
  assert.deepEqual([plan.reason, plan.code, plan.hintMs], ["server_draining", 1000, 150]);
  assert.ok(plan.delayMs >= 150 && plan.delayMs <= 160, `delay ${plan.delayMs}`);
  const planAt = seen.find((e) => e.type === "reconnecting").at;
  const reopenedAt = seen.filter((e) => e.type === "open")[1].at;
  assert.ok(reopenedAt - planAt >= 150, `reopened after ${reopenedAt - planAt} ms`);
});

test("a drain's avoid goes into the next handshake only, and every reconnect frame drops the sticky cookies", async () => {
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    ws.sendJson(connected());
    if (round === 1) ws.sendJson({ type: "reconnect", reason: "server_draining", retryAfterMs: 0, avoid: "web:1" });
    if (round === 2) ws.sendJson({ type: "reconnect", reason: "server_draining", retryAfterMs: 0 });
  };
  let dropped = 0;
  const c = client({ dropStickyCookies: () => (dropped += 1) });
  const seen = record(c);
  await until(() => seen.of("open").length === 3);
  const avoids = server.handshakes.map((h) => h.url.searchParams.get("avoid"));
  assert.deepEqual(avoids, [null, "web:1", null]);
  assert.equal(dropped, 2);
  assert.equal(c.avoid, null);
  const writes = [];
  const doc = {
    get cookie() {
      return "AWSALB=s1|x; theme=dark; AWSALBCORS=s1|x";
    },
    set cookie(value) {
      writes.push(value);
    },
  };
  assert.deepEqual(dropStickyCookies(doc), ["AWSALB", "AWSALBCORS"]);
  assert.deepEqual(writes, ["AWSALB=; Max-Age=0; Path=/", "AWSALBCORS=; Max-Age=0; Path=/"]);
});

test("after MAX_AVOID_HOPS sends-on in a row the next handshake avoids nothing", async () => {
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    if (round === 1) {
      ws.sendJson(connected());
      ws.sendJson({ type: "reconnect", reason: "server_draining", retryAfterMs: 0, avoid: "web:1" });
    } else if (round <= 1 + MAX_AVOID_HOPS) {
      ws.sendJson({ type: "reconnect", reason: "send_on", retryAfterMs: 0, avoid: "web:1" });
    } else {
      ws.sendJson(connected());
    }
  };
  const c = client({ dropStickyCookies: () => {} });
  const seen = record(c);
  await until(() => seen.of("open").length === 2);
  const avoids = server.handshakes.map((h) => h.url.searchParams.get("avoid"));
  assert.equal(MAX_AVOID_HOPS, 8);
  assert.deepEqual(avoids, [null, ...Array(MAX_AVOID_HOPS).fill("web:1"), null]);
});

test("a refused handshake is explained by the pre-flight: 403 stops with one error event and no retry", async () => {
  server.refuse = () => ({ status: 403, body: { error: "invalid_token", message: "token expired" } });
  server.preflight = () => ({ status: 403, body: { error: "invalid_token", message: "token expired" } });
  const c = client();
  const seen = record(c);
  const closed = await next(c, "close");
  assert.deepEqual(closed.error, true);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(seen.of("error"), [{ code: "invalid_token", message: "token expired", status: 403, fatal: true }]);
  assert.deepEqual(seen.of("reconnecting"), []);
  assert.equal(server.handshakes.length, 1);
  assert.equal(server.preflights.length, 1);
  const pre = server.preflights[0];
  assert.equal(pre.url.searchParams.get("preflight"), "1");
  assert.equal(pre.headers.authorization, "Bearer tok.en.jwt");
  assert.equal(pre.url.searchParams.get("token"), null);
  await assert.rejects(c.send(1), (err) => err.code === "closed");
});

test("a 503 pre-flight answer is retried after Retry-After", async () => {
  let refusals = 1;
  server.refuse = () => (refusals-- > 0 ? { status: 503, body: { error: "draining" } } : null);
  server.preflight = () => ({ status: 503, body: { error: "draining", message: "retry" }, headers: { "Retry-After": "1" } });
  const c = client();
  const seen = record(c);
  await next(c, "open");
  const [plan] = seen.of("reconnecting");
  assert.deepEqual([plan.status, plan.reason, plan.hintMs], [503, "draining", 1000]);
  assert.ok(plan.delayMs >= 1000);
  assert.equal(server.handshakes.length, 2);
  assert.equal(server.preflights.length, 1);
  const planAt = seen.find((e) => e.type === "reconnecting").at;
  const openAt = seen.find((e) => e.type === "open").at;
  assert.ok(openAt - planAt >= 1000, `reopened after ${openAt - planAt} ms`);
});

test("the retry budget ends in one retry_budget_exhausted error and a close", async () => {
  server.refuse = () => ({ status: 502, body: {} });
  server.preflight = () => ({ status: 200, body: { ok: true } }); // admissible: looks like a network fault
  const c = client({ maxRetries: 3, reconnectBaseMs: 5 });
  const seen = record(c);
  await next(c, "close");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(server.handshakes.length, 4);
  assert.equal(seen.of("reconnecting").length, 3);
  const errors = seen.of("error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "retry_budget_exhausted");
  assert.match(errors[0].message, /gave up after 4 failed connection attempts/);
});

test("a handshake that hangs ends at connectTimeoutMs and is retried", async () => {
  let attempts = 0;
  server.refuse = () => (attempts++ === 0 ? "hang" : null);
  const c = client({ connectTimeoutMs: 100 });
  const seen = record(c);
  await until(() => seen.of("open").length === 1, 3000, "connected on the second attempt");
  const [plan] = seen.of("reconnecting");
  assert.deepEqual([plan.reason, plan.code, plan.attempt], ["connect_timeout", 1006, 1]);
  assert.equal(server.handshakes.length, 2);
  assert.equal(server.preflights.length, 1); // asked why; 200 means "a network fault": retry
});

test("a token function is called before every attempt, and the query transport puts it in the URL", async () => {
  let n = 0;
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    if (n === 1) ws.close(1012, "restart");
  };
  const c = client({ token: async () => `jwt${++n}`, tokenTransport: "query" });
  const seen = record(c);
  await until(() => seen.of("open").length === 2, 3000, "reconnected");
  const tokens = server.handshakes.map((h) => h.url.searchParams.get("token"));
  assert.deepEqual(tokens, ["jwt1", "jwt2"]);
  assert.deepEqual(server.handshakes.map((h) => h.protocols), [["stickyws.v1"], ["stickyws.v1"]]);
});

test("close 4001 (taken over) stops without a reconnect", async () => {
  server.onConnection = (ws) => {
    ws.sendJson(connected());
    ws.close(4001, "taken over by a newer connection");
  };
  const c = client();
  const seen = record(c);
  await next(c, "close");
  assert.deepEqual(seen.of("reconnecting"), []);
  assert.equal(seen.of("error")[0].code, "closed_4001");
});

test("backoff is full jitter below min(cap, base * 2**attempt) above the hint; Retry-After parses both forms", () => {
  const opts = { baseMs: 100, capMs: 1000 };
  assert.equal(backoffDelayMs(0, { ...opts, random: () => 0.999999 }) < 100, true);
  assert.equal(Math.round(backoffDelayMs(3, { ...opts, random: () => 0.5 })), 400);
  assert.equal(Math.round(backoffDelayMs(10, { ...opts, random: () => 1 })), 1000);
  assert.equal(Math.round(backoffDelayMs(10, { ...opts, hintMs: 2000, random: () => 0 })), 2000);
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.equal(parseRetryAfter("soon"), null);
});
