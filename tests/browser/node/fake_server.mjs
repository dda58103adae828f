// A scriptable stickyws.v1 endpoint for the client's protocol tests: one HTTP server on 127.0.0.1
// that upgrades (or refuses) WebSocket handshakes and answers the pre-flight GET.
import http from "node:http";
import { WebSocketServer } from "ws";

export class FakeServer {
  constructor() {
    this.handshakes = []; // {url, protocols, headers}
    this.preflights = []; // {url, headers}
    this.sockets = [];
    this.hung = [];
    /** (req) => null to accept, {status, body, headers} to refuse the upgrade, or "hang" */
    this.refuse = () => null;
    /** (req) => {status, body, headers} for GET ?preflight=1 */
    this.preflight = () => ({ status: 200, body: { ok: true } });
    /** (socket, info) => void, called for every accepted connection */
    this.onConnection = (socket) => socket.sendJson(connected());
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (protocols) => (protocols.has("stickyws.v1") ? "stickyws.v1" : false),
    });
    this.http = http.createServer((req, res) => {
      this.preflights.push({ url: new URL(req.url, "http://x"), headers: req.headers });
      const answer = this.preflight(req);
      res.writeHead(answer.status, { "Content-Type": "application/json", ...(answer.headers || {}) });
      res.end(JSON.stringify(answer.body));
    });
    this.http.on("upgrade", (req, socket, head) => {
      const info = {
        url: new URL(req.url, "http://x"),
        protocols: (req.headers["sec-websocket-protocol"] || "").split(",").map((p) => p.trim()),
        headers: req.headers,
      };
      this.handshakes.push(info);
      const refusal = this.refuse(req, info);
      if (refusal === "hang") {
        // never answer: the client's connect timeout must end it
        socket.on("error", () => {});
        this.hung.push(socket);
        return;
      }
      if (refusal) {
        const body = JSON.stringify(refusal.body || {});
        const extra = Object.entries(refusal.headers || {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
        socket.end(
          `HTTP/1.1 ${refusal.status} Refused\r\nContent-Type: application/json\r\n${extra}` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.frames = [];
        ws.sendJson = (frame) => ws.send(JSON.stringify(frame));
        ws.on("message", (data) => {
          const frame = JSON.parse(String(data));
          ws.frames.push(frame);
          if (ws.onFrame) ws.onFrame(frame);
        });
        this.sockets.push(ws);
        this.onConnection(ws, info);
      });
    });
  }

  async start() {
    await new Promise((resolve) => this.http.listen(0, "127.0.0.1", resolve));
    this.url = `ws://127.0.0.1:${this.http.address().port}/ws`;
    return this;
  }

  async stop() {
    for (const ws of this.sockets) ws.terminate();
    for (const socket of this.hung) socket.destroy();
    this.wss.close();
    await new Promise((resolve) => this.http.close(resolve));
  }
}

export function connected(overrides = {}) {
  return {
    type: "connected",
    serverId: "fake-1",
    sessionId: "sess-1",
    resumeToken: "sess-1.mac",
    protocol: "stickyws.v1",
    heartbeatMs: 2000,
    timestamp: Date.now(),
    resumed: false,
    lastClientId: 0,
    lastServerSeq: 0,
    subscriptions: [],
    ...overrides,
  };
}

/** Resolve with the first event of `type` on `target` (rejects after `timeoutMs`). */
export function next(target, type, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} event within ${timeoutMs} ms`)), timeoutMs);
    target.addEventListener(
      type,
      (event) => {
        clearTimeout(timer);
        resolve(event.detail);
      },
      { once: true },
    );
  });
}

/** Wait until `check()` is truthy (polls every 5 ms; rejects after `timeoutMs`). */
export async function until(check, timeoutMs = 5000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Record every event of the client by type. */
export function record(client) {
  const seen = [];
  for (const type of ["open", "message", "publication", "unrecoverable", "gap", "reconnecting", "error", "close"]) {
    client.addEventListener(type, (event) => seen.push({ type, detail: event.detail, at: Date.now() }));
  }
  seen.of = (type) => seen.filter((e) => e.type === type).map((e) => e.detail);
  return seen;
}
