// The client's page awareness (online/offline, visibility) under Node, with the page's globals
// (navigator.onLine, document.visibilityState and their events) played by plain EventTargets.
// A file of its own: node --test runs each file in its own process, so these globals stay here.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import WebSocket from "ws";

import { FakeServer, connected, record, until } from "./fake_server.mjs";

const page = new EventTarget();
const doc = new EventTarget();
doc.visibilityState = "visible";
const nav = { onLine: true };
globalThis.addEventListener = page.addEventListener.bind(page);
globalThis.removeEventListener = page.removeEventListener.bind(page);
globalThis.document = doc;
Object.defineProperty(globalThis, "navigator", { value: nav, configurable: true, writable: true });

const { StickyClient } = await import("../../../stickyws/static/stickyws-client.js");

let server;
let clients;

beforeEach(async () => {
  server = await new FakeServer().start();
  clients = [];
  nav.onLine = true;
  doc.visibilityState = "visible";
  let round = 0;
  server.onConnection = (ws) => {
    round += 1;
    ws.sendJson(connected());
    if (round === 1) setTimeout(() => ws.close(1012, "restart"), 20);
  };
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

function client(options = {}) {
  const c = new StickyClient(server.url, { token: "t", WebSocket, reconnectBaseMs: 10, ...options });
  clients.push(c);
  return c;
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

test("offline, a due reconnect waits for the online event and then connects at once", async () => {
  const c = client();
  const seen = record(c);
  await until(() => seen.of("open").length === 1);
  nav.onLine = false;
  page.dispatchEvent(new Event("offline"));
  await until(() => seen.of("reconnecting").length === 1);
  await pause(150); // far beyond the 10 ms backoff
  assert.equal(server.handshakes.length, 1);
  nav.onLine = true;
  page.dispatchEvent(new Event("online"));
  await until(() => seen.of("open").length === 2, 2000, "reconnected after online");
  assert.equal(server.handshakes.length, 2);
});

test("online cuts a long backoff short", async () => {
  const c = client({ reconnectBaseMs: 60000, random: () => 1 });
  const seen = record(c);
  await until(() => seen.of("open").length === 1);
  await until(() => seen.of("reconnecting").length === 1);
  assert.equal(seen.of("reconnecting")[0].delayMs, 30000); // the cap (reconnectCapS 30)
  page.dispatchEvent(new Event("online"));
  await until(() => seen.of("open").length === 2, 2000, "reconnected after online");
});

test("with pauseWhenHidden a hidden page does not reconnect until it is visible again", async () => {
  const c = client({ pauseWhenHidden: true });
  const seen = record(c);
  await until(() => seen.of("open").length === 1);
  doc.visibilityState = "hidden";
  await until(() => seen.of("reconnecting").length === 1);
  await pause(150);
  assert.equal(server.handshakes.length, 1);
  doc.visibilityState = "visible";
  doc.dispatchEvent(new Event("visibilitychange"));
  await until(() => seen.of("open").length === 2, 2000, "reconnected when visible");
});

test("close() removes the page listeners", async () => {
  const c = client();
  await until(() => c.state === "open");
  c.close();
  page.dispatchEvent(new Event("online"));
  await pause(50);
  assert.equal(c.state, "closed");
  assert.equal(server.handshakes.length, 1);
});
