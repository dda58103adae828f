// stickyws-client.js: a dependency-free ES module client for the stickyws.v1 WebSocket protocol.
//
// Served by the reference server at /stickyws-client.js (types at /stickyws-client.d.ts) and shipped
// in the Python package (stickyws/static/). Works in browsers and in Node >= 20 with an injected
// WebSocket implementation (the `ws` package): new StickyClient(url, { token, WebSocket }).
//
// What it keeps across reconnects: the session's resume token, lastSeq (highest message seq seen),
// the position (offset, epoch) of every subscribed topic, and an outbox of unacknowledged frames
// that is resent in id order after a reconnect (trimmed by the server's lastClientId). Duplicates
// are dropped: a message whose seq is at or below lastSeq, a publication at or below the topic's
// offset in the same epoch.
//
// Reconnects: full-jitter exponential backoff (reconnectBaseMs doubling up to reconnectCapS),
// floored by the server's hint (the reconnect frame's retryAfterMs or a 503's Retry-After). A
// handshake that fails before the socket opens is explained by a pre-flight GET on the same path
// (?preflight=1): 401/403 stop for good with one "error" event naming the reason, 503 waits for
// Retry-After, 409 retries. After maxRetries consecutive failures the client gives up with an
// "error" event (code "retry_budget_exhausted") and a "close" event.
//
// Deployments: a reconnect frame drops the load balancer's stickiness cookies the page can see
// (AWSALB*, through document.cookie), and when it names a revision to avoid ("avoid"), the next
// handshake carries avoid=<revision>, so a server of that revision sends the client on (reason
// "send_on") while another revision is live. After MAX_AVOID_HOPS sends-on in a row the client stops
// avoiding; a "connected" frame ends it.

export const PROTOCOL = "stickyws.v1";
export const BEARER_PREFIX = "stickyws.bearer.";
export const PREFLIGHT_QUERY = "preflight";
/** Handshake query naming the revision to avoid (stickyws.protocol.AVOID_QUERY). */
export const AVOID_QUERY = "avoid";
/** Sends-on in a row after which the client stops avoiding (stickyws.protocol.MAX_AVOID_HOPS). */
export const MAX_AVOID_HOPS = 8;
/** Every stickiness cookie of the ALB starts with this (AWSALB, AWSALBCORS, AWSALBAPP-0, AWSALBTG...). */
export const STICKY_COOKIE_PREFIX = "AWSALB";

/** Close codes after which the client reconnects (stickyws.protocol.RECONNECT_CLOSE_CODES). */
export const RECONNECT_CLOSE_CODES = Object.freeze([1001, 1006, 1011, 1012, 1013]);
/** Handshake statuses after which the client retries; any other refusal is final. */
export const RETRY_STATUSES = Object.freeze([409, 429, 502, 503, 504]);

const DEFAULTS = Object.freeze({
  tokenTransport: "subprotocol",
  reconnectBaseMs: 1000,
  reconnectCapS: 30,
  maxRetries: 10,
  connectTimeoutMs: 10000,
  preflight: true,
});

/** An error the client reports in "error" events and rejected promises. */
export class StickyError extends Error {
  constructor(code, message, { status = null, retryAfterMs = null, fatal = false } = {}) {
    super(message);
    this.name = "StickyError";
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.fatal = fatal;
  }
}

function ignore() {}

/** Stop listening to a socket we are done with (an error handler stays: Node's ws throws without one). */
function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = ignore;
}

function makeEvent(type, detail) {
  if (typeof CustomEvent === "function") return new CustomEvent(type, { detail });
  const event = new Event(type);
  event.detail = detail;
  return event;
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date) as milliseconds, or null. */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null || value === "") return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/** Expire every AWSALB* cookie `doc` (a page's document) shows; returns the names dropped. */
export function dropStickyCookies(doc = globalThis.document) {
  if (!doc || typeof doc.cookie !== "string") return [];
  const names = doc.cookie
    .split(";")
    .map((pair) => pair.split("=")[0].trim())
    .filter((name) => name.startsWith(STICKY_COOKIE_PREFIX));
  for (const name of names) doc.cookie = `${name}=; Max-Age=0; Path=/`;
  return names;
}

/** Full-jitter backoff: hint + uniform(0, min(cap, base * 2**attempt)), in milliseconds. */
export function backoffDelayMs(attempt, { baseMs, capMs, hintMs = 0, random = Math.random }) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 52));
  return Math.max(0, hintMs || 0) + random() * ceiling;
}

export class StickyClient extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// URL of the stickyws endpoint (for example wss://host/ws)
   * @param {object} options  see stickyws-client.d.ts (token, WebSocket, fetch, reconnectBaseMs, ...)
   */
  constructor(url, options = {}) {
    super();
    this.url = String(url);
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._fetch = options.fetch || (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this._random = options.random || Math.random;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (in Node: the ws package)");
    }
    this.state = "idle"; // idle | connecting | open | checking | waiting | closed
    this.serverId = null;
    this.sessionId = null;
    this.resumeToken = null;
    this.lastSeq = 0;
    this.connects = 0;
    /** The revision the next handshake avoids (set by a drain's reconnect frame), or null. */
    this.avoid = null;
    this._sendsOn = 0; // sends-on in a row
    this._dropCookies = options.dropStickyCookies || (() => dropStickyCookies());
    /** topic -> {offset, epoch} or null (subscribed, position not known yet) */
    this.topics = new Map();
    this._nextId = 1;
    this._outbox = new Map(); // id -> {frame, resolve, reject, internal}
    this._ws = null;
    this._opened = false; // the current socket fired "open"
    this._connected = false; // the current socket delivered "connected"
    this._failures = 0;
    this._hintMs = 0;
    this._timer = null;
    this._connectTimer = null;
    this._paused = null; // "offline" | "hidden" while a reconnect waits for the page
    this._cleanup = this._watchEnvironment();
    if (this.options.autoConnect !== false) this.connect();
  }

  /** Start connecting (called by the constructor unless autoConnect is false). */
  connect() {
    if (this.state !== "idle") return;
    this._clearTimer();
    this._open();
  }

  /** Send an application message; resolves with the ack ({id, duplicate}) once the server handled it. */
  send(data) {
    return this._enqueue({ type: "send", data });
  }

  /** Add a topic to the session; resolves with the ack ({id, topic, offset, epoch}). */
  subscribe(topic) {
    if (!this.topics.has(topic)) this.topics.set(topic, null);
    const pos = this.topics.get(topic);
    const frame = { type: "subscribe", topic };
    if (pos) Object.assign(frame, { offset: pos.offset, epoch: pos.epoch });
    return this._enqueue(frame);
  }

  /** Remove a topic from the session; resolves with the ack. */
  unsubscribe(topic) {
    this.topics.delete(topic);
    return this._enqueue({ type: "unsubscribe", topic });
  }

  /** Close for good: no reconnect; pending promises reject with code "closed". */
  close(code = 1000, reason = "closed by the application") {
    if (this.state === "closed") return;
    this._finish(new StickyError("closed", reason), { code, reason, error: false });
  }

  // ------------------------------------------------------------------ internals

  _enqueue(body, internal = false) {
    if (this.state === "closed") {
      return Promise.reject(new StickyError("closed", "the client is closed"));
    }
    const id = this._nextId++;
    const frame = { ...body, id };
    return new Promise((resolve, reject) => {
      this._outbox.set(id, { frame, resolve, reject, internal });
      if (this._connected) this._write(frame);
    });
  }

  _write(frame) {
    try {
      this._ws.send(JSON.stringify(frame));
    } catch {
      // the socket is going away: the frame stays in the outbox and is resent after the reconnect
    }
  }

  async _token() {
    const token = this.options.token;
    return typeof token === "function" ? await token() : token;
  }

  async _open() {
    this.state = "connecting";
    this._opened = false;
    this._connected = false;
    let token;
    try {
      token = await this._token();
    } catch (err) {
      this._fail("token_unavailable", `options.token failed: ${err && err.message}`, { fatal: true });
      return;
    }
    if (this.state !== "connecting") return;
    const target = this._handshakeUrl(token);
    const protocols = [PROTOCOL];
    if (token && this.options.tokenTransport === "subprotocol") protocols.push(BEARER_PREFIX + token);
    let ws;
    try {
      ws = new this._WebSocket(target, protocols);
    } catch (err) {
      this._fail("bad_url", `cannot open ${this.url}: ${err && err.message}`, { fatal: true });
      return;
    }
    this._ws = ws;
    this._tokenUsed = token;
    this._connectTimer = setTimeout(() => {
      if (this._ws === ws && !this._connected) this._abort(ws, "connect_timeout");
    }, this.options.connectTimeoutMs);
    ws.onopen = () => {
      if (this._ws === ws) this._opened = true;
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this._onFrame(ws, event.data);
    };
    ws.onerror = ignore; // a close event follows with the code
    ws.onclose = (event) => {
      if (this._ws === ws) this._onClose(event.code, event.reason || "");
    };
  }

  _handshakeUrl(token, extra = {}) {
    const u = new URL(this.url);
    if (token && this.options.tokenTransport === "query") u.searchParams.set("token", token);
    if (this.resumeToken) {
      u.searchParams.set("resume", this.resumeToken);
      u.searchParams.set("lastSeq", String(this.lastSeq));
      const since = {};
      for (const [topic, pos] of this.topics) if (pos) since[topic] = [pos.offset, pos.epoch];
      if (Object.keys(since).length) u.searchParams.set("since", JSON.stringify(since));
    }
    if (this.avoid) u.searchParams.set(AVOID_QUERY, this.avoid);
    for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
    return u.toString();
  }

  /** Close `ws` ourselves and handle it as closed with `code` (1006: as if the network had failed). */
  _abort(ws, reason, code = 1006) {
    try {
      ws.close(code === 1006 ? 4000 : code, reason);
    } catch {
      // already closing
    }
    this._onClose(code, reason);
  }

  _onFrame(ws, raw) {
    let frame;
    try {
      frame = JSON.parse(typeof raw === "string" ? raw : String(raw));
    } catch {
      this._emit("error", { code: "bad_frame", message: "the server sent a frame that is not JSON", fatal: false });
      return;
    }
    switch (frame.type) {
      case "connected":
        this._onConnected(frame);
        break;
      case "ack":
        this._onAck(frame);
        break;
      case "message":
        if (typeof frame.seq === "number" && frame.seq <= this.lastSeq) return;
        if (typeof frame.seq === "number") this.lastSeq = frame.seq;
        this._emit("message", { seq: frame.seq, data: frame.data });
        break;
      case "publication":
        this._onPublication(frame);
        break;
      case "unrecoverable":
        if (this.topics.has(frame.topic)) this.topics.set(frame.topic, { offset: frame.offset, epoch: frame.epoch });
        this._emit("unrecoverable", { topic: frame.topic, offset: frame.offset, epoch: frame.epoch });
        break;
      case "gap":
        this.lastSeq = Math.max(this.lastSeq, Number(frame.toSeq) || 0);
        this._emit("gap", { fromSeq: frame.fromSeq, toSeq: frame.toSeq });
        break;
      case "reconnect":
        this._noteAvoid(frame);
        this._dropCookies();
        this._hintMs = Math.max(0, Number(frame.retryAfterMs) || 0);
        this._failures = 0;
        this._planned = frame.reason || "server asked to reconnect";
        this._abort(ws, "reconnect instruction", 1000);
        break;
      case "error":
        this._onErrorFrame(frame);
        break;
      default:
        break; // unknown frame types are ignored: the protocol may add more
    }
  }

  _noteAvoid(frame) {
    if (typeof frame.avoid !== "string" || !frame.avoid || frame.avoid.length > 256) {
      this.avoid = null;
      this._sendsOn = 0;
      return;
    }
    this._sendsOn = frame.reason === "send_on" ? this._sendsOn + 1 : 0;
    this.avoid = this._sendsOn < MAX_AVOID_HOPS ? frame.avoid : null;
  }

  _onConnected(frame) {
    clearTimeout(this._connectTimer);
    this.avoid = null;
    this._sendsOn = 0;
    const resumed = Boolean(frame.resumed);
    this._connected = true;
    this.state = "open";
    this.connects += 1;
    this._failures = 0;
    this.serverId = frame.serverId ?? null;
    this.sessionId = frame.sessionId ?? null;
    this.resumeToken = frame.resumeToken || null;
    const lastClientId = Number(frame.lastClientId) || 0;
    if (!resumed) {
      this.lastSeq = 0; // a new session numbers its messages from 1 again
    }
    // Trim: the server handled these before the old socket died; their ack was lost with it.
    if (resumed) {
      for (const [id, entry] of this._outbox) {
        if (id <= lastClientId) {
          this._outbox.delete(id);
          this._settleAck(entry, { type: "ack", id, duplicate: true });
        }
      }
    }
    const pending = [...this._outbox.values()].map((e) => e.frame).sort((a, b) => a.id - b.id);
    this._emit("open", {
      serverId: this.serverId,
      sessionId: this.sessionId,
      resumed,
      lastClientId,
      resending: pending.length,
      connects: this.connects,
    });
    for (const f of pending) this._write(f);
    // Topics the session does not hold (a new session, or a subscribe the old server never committed).
    const held = new Set(Array.isArray(frame.subscriptions) ? frame.subscriptions : []);
    const queued = new Set(pending.filter((f) => f.type === "subscribe").map((f) => f.topic));
    for (const [topic, pos] of this.topics) {
      if (held.has(topic) || queued.has(topic)) continue;
      const body = { type: "subscribe", topic };
      if (pos) Object.assign(body, { offset: pos.offset, epoch: pos.epoch });
      this._enqueue(body, true).catch(() => {});
    }
  }

  _onAck(frame) {
    const entry = this._outbox.get(frame.id);
    if (!entry) return;
    this._outbox.delete(frame.id);
    this._settleAck(entry, frame);
  }

  _settleAck(entry, frame) {
    const f = entry.frame;
    if (f.type === "subscribe" && this.topics.has(f.topic) && frame.epoch !== undefined) {
      const pos = this.topics.get(f.topic);
      if (!pos || pos.epoch !== frame.epoch || frame.offset > pos.offset) {
        this.topics.set(f.topic, { offset: frame.offset, epoch: frame.epoch });
      }
    }
    const result = { id: frame.id, duplicate: Boolean(frame.duplicate) };
    if (f.type !== "send") {
      result.topic = f.topic;
      if (frame.epoch !== undefined) Object.assign(result, { offset: frame.offset, epoch: frame.epoch });
    }
    entry.resolve(result);
  }

  _onPublication(frame) {
    const { topic, offset, epoch } = frame;
    if (!this.topics.has(topic)) return; // unsubscribed meanwhile
    const pos = this.topics.get(topic);
    if (pos && pos.epoch === epoch && offset <= pos.offset) return; // seen already
    this.topics.set(topic, { offset, epoch });
    this._emit("publication", { topic, offset, epoch, data: frame.data });
  }

  _onErrorFrame(frame) {
    const err = new StickyError(frame.code, frame.message || frame.code);
    const entry = frame.id !== undefined ? this._outbox.get(frame.id) : undefined;
    if (entry) {
      // handled: false. The server did not handle this message; it is not resent automatically.
      this._outbox.delete(frame.id);
      entry.reject(err);
    }
    this._emit("error", { code: frame.code, message: err.message, id: frame.id, fatal: false });
  }

  async _onClose(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    clearTimeout(this._connectTimer);
    detach(ws);
    this._ws = null;
    const wasConnected = this._connected;
    const opened = this._opened;
    this._connected = false;
    if (this.state === "closed") return;
    if (this._planned) {
      const why = this._planned;
      this._planned = null;
      this._schedule({ reason: why, code, hintMs: this._hintMs });
      return;
    }
    if (!wasConnected && !opened && code === 1006 && this.options.preflight && this._fetch) {
      this.state = "checking"; // nothing reconnects while the server is asked why
      const verdict = await this._preflight();
      if (this.state === "closed") return;
      if (verdict) {
        const { status, body, retryAfterMs } = verdict;
        const codeName = (body && body.error) || `http_${status}`;
        const message = (body && body.message) || `handshake refused with HTTP ${status}`;
        if (!RETRY_STATUSES.includes(status)) {
          this._fail(codeName, message, { status, fatal: true });
          return;
        }
        this._failures += 1;
        this._schedule({ reason: codeName, code, hintMs: retryAfterMs ?? 0, status, message });
        return;
      }
    }
    if (RECONNECT_CLOSE_CODES.includes(code)) {
      if (!wasConnected) this._failures += 1;
      this._schedule({ reason: reason || `closed with ${code}`, code });
      return;
    }
    const names = { 1000: "closed by the server", 1008: "policy violation", 4001: "taken over by a newer connection" };
    this._fail(`closed_${code}`, `${names[code] || "closed"} (code ${code}${reason ? `: ${reason}` : ""})`, {
      fatal: true,
      closeCode: code,
    });
  }

  async _preflight() {
    let token;
    try {
      token = this._tokenUsed;
      const headers = { Accept: "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      if (this.resumeToken) headers["X-Stickyws-Resume"] = this.resumeToken;
      const u = new URL(this._handshakeUrl(null, { [PREFLIGHT_QUERY]: "1" }));
      u.protocol = u.protocol === "wss:" ? "https:" : "http:";
      u.searchParams.delete("since");
      const res = await this._fetch(u.toString(), { headers, credentials: "include", cache: "no-store" });
      if (res.status === 200) return null; // admissible now: an ordinary network failure
      let body = null;
      try {
        body = await res.json();
      } catch {
        body = null;
      }
      return { status: res.status, body, retryAfterMs: parseRetryAfter(res.headers.get("Retry-After")) };
    } catch {
      return null; // the server cannot be reached: retry with backoff
    }
  }

  _schedule({ reason, code, hintMs = 0, status = null, message = null }) {
    this._hintMs = 0;
    if (this._failures > this.options.maxRetries) {
      const last = message ? `; last: ${message}` : "";
      this._fail(
        "retry_budget_exhausted",
        `gave up after ${this._failures} failed connection attempts (${reason}${last})`,
        { status, fatal: true },
      );
      return;
    }
    const attempt = Math.max(0, this._failures - 1);
    const delayMs = backoffDelayMs(attempt, {
      baseMs: this.options.reconnectBaseMs,
      capMs: this.options.reconnectCapS * 1000,
      hintMs,
      random: this._random,
    });
    this.state = "waiting";
    this._emit("reconnecting", { attempt: this._failures, delayMs, reason, code, status, hintMs });
    this._clearTimer();
    this._timer = setTimeout(() => {
      this._timer = null;
      this._resumeWhenReady();
    }, delayMs);
  }

  _resumeWhenReady() {
    if (this.state === "closed" || this._ws) return;
    const env = globalThis;
    if (env.navigator && env.navigator.onLine === false) {
      this._paused = "offline";
      return; // the "online" event reconnects
    }
    if (this.options.pauseWhenHidden && env.document && env.document.visibilityState === "hidden") {
      this._paused = "hidden";
      return; // the "visibilitychange" event reconnects
    }
    this._paused = null;
    this._open();
  }

  _watchEnvironment() {
    const env = globalThis;
    if (typeof env.addEventListener !== "function" || !env.document) return () => {};
    const onOnline = () => {
      if (this.state === "closed") return;
      if (this._paused || this.state === "waiting") {
        // The network is back: do not sit out the rest of a long backoff.
        this._failures = 0;
        this._clearTimer();
        this._paused = null;
        if (!this._ws) this._open();
      }
    };
    const onOffline = () => {
      // A socket may take a long time to notice; the next close reconnects once "online" fires.
    };
    const onVisible = () => {
      if (env.document.visibilityState !== "visible" || this.state === "closed" || this._ws) return;
      if (this._paused === "hidden" || this.state === "waiting") {
        // The user is looking again: reconnect now rather than at the end of a long backoff.
        this._clearTimer();
        this._paused = null;
        this._open();
      }
    };
    env.addEventListener("online", onOnline);
    env.addEventListener("offline", onOffline);
    env.document.addEventListener("visibilitychange", onVisible);
    return () => {
      env.removeEventListener("online", onOnline);
      env.removeEventListener("offline", onOffline);
      env.document.removeEventListener("visibilitychange", onVisible);
    };
  }

  _clearTimer() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  _fail(code, message, { status = null, fatal = true, closeCode = null } = {}) {
    const err = new StickyError(code, message, { status, fatal });
    this._emit("error", { code, message, status, fatal });
    this._finish(err, { code: closeCode ?? 1006, reason: message, error: true });
  }

  _finish(err, { code, reason, error }) {
    this.state = "closed";
    this._clearTimer();
    clearTimeout(this._connectTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(code === 1006 ? 1000 : code, String(reason).slice(0, 120));
      } catch {
        // already closed
      }
    }
    for (const entry of this._outbox.values()) entry.reject(err);
    this._outbox.clear();
    this._cleanup();
    this._emit("close", { code, reason, error });
  }

  _emit(type, detail) {
    this.dispatchEvent(makeEvent(type, detail));
  }
}

export default StickyClient;
