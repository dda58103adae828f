// Type declarations for stickyws-client.js (the stickyws.v1 client).

export declare const PROTOCOL: "stickyws.v1";
export declare const BEARER_PREFIX: "stickyws.bearer.";
export declare const PREFLIGHT_QUERY: "preflight";
export declare const RECONNECT_CLOSE_CODES: readonly number[];
export declare const RETRY_STATUSES: readonly number[];
export declare const AVOID_QUERY: "avoid";
export declare const MAX_AVOID_HOPS: 8;
export declare const STICKY_COOKIE_PREFIX: "AWSALB";
/** Expire every AWSALB* cookie the document shows (default: globalThis.document); returns the names dropped. */
export declare function dropStickyCookies(doc?: { cookie: string }): string[];

export interface StickyClientOptions {
  /** The connection JWT, or a function returning one (called before every connection attempt). */
  token?: string | (() => string | Promise<string>);
  /** "subprotocol" (default): offered as `stickyws.bearer.<jwt>` next to `stickyws.v1`, never in a URL.
   *  "query": `?token=` (shows up in access logs; only for servers that cannot read subprotocols). */
  tokenTransport?: "subprotocol" | "query";
  /** A WebSocket constructor (default: globalThis.WebSocket; in Node pass the `ws` package's). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  /** fetch for the pre-flight (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** First backoff ceiling, ms (the reconnect_base_ms setting; default 1000). */
  reconnectBaseMs?: number;
  /** Largest backoff ceiling, s (the reconnect_cap_s setting; default 30). */
  reconnectCapS?: number;
  /** Consecutive failed attempts before giving up with "retry_budget_exhausted" (default 10). */
  maxRetries?: number;
  /** How long a handshake may take before it counts as failed, ms (default 10000). */
  connectTimeoutMs?: number;
  /** Ask the server why a handshake failed (GET <path>?preflight=1; default true). */
  preflight?: boolean;
  /** Wait for the page to be visible before reconnecting (default false). */
  pauseWhenHidden?: boolean;
  /** Connect from the constructor (default true); otherwise call connect(). */
  autoConnect?: boolean;
  /** Random source for the jitter (tests). */
  random?: () => number;
  /** Called on every reconnect frame to drop the load balancer's stickiness cookies (default: dropStickyCookies()). */
  dropStickyCookies?: () => unknown;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface Ack {
  id: number;
  duplicate: boolean;
  topic?: string;
  offset?: number;
  epoch?: string;
}

export interface OpenDetail {
  serverId: string;
  sessionId: string;
  resumed: boolean;
  lastClientId: number;
  resending: number;
  connects: number;
}
export interface MessageDetail {
  seq: number;
  data: unknown;
}
export interface PublicationDetail {
  topic: string;
  offset: number;
  epoch: string;
  data: unknown;
}
export interface UnrecoverableDetail {
  topic: string;
  offset: number;
  epoch: string;
}
export interface GapDetail {
  fromSeq: number;
  toSeq: number;
}
export interface ReconnectingDetail {
  attempt: number;
  delayMs: number;
  reason: string;
  code: number;
  status: number | null;
  hintMs: number;
}
export interface ErrorDetail {
  /** A handshake refusal (`invalid_token`, `origin_not_allowed`, ...), `retry_budget_exhausted`,
   *  `closed_<code>`, or the code of an error frame. */
  code: string;
  message: string;
  status?: number | null;
  id?: number;
  /** true: the client has stopped and a "close" event follows. */
  fatal: boolean;
}
export interface CloseDetail {
  code: number;
  reason: string;
  /** true when the client stopped because of an error (see the "error" event before it). */
  error: boolean;
}

export interface StickyClientEventMap {
  open: CustomEvent<OpenDetail>;
  message: CustomEvent<MessageDetail>;
  publication: CustomEvent<PublicationDetail>;
  unrecoverable: CustomEvent<UnrecoverableDetail>;
  gap: CustomEvent<GapDetail>;
  reconnecting: CustomEvent<ReconnectingDetail>;
  error: CustomEvent<ErrorDetail>;
  close: CustomEvent<CloseDetail>;
}

export declare class StickyError extends Error {
  code: string;
  status: number | null;
  retryAfterMs: number | null;
  fatal: boolean;
}

export declare class StickyClient extends EventTarget {
  constructor(url: string, options?: StickyClientOptions);
  readonly url: string;
  /** checking: asking the server (pre-flight) why a handshake failed; waiting: a reconnect is planned. */
  readonly state: "idle" | "connecting" | "open" | "checking" | "waiting" | "closed";
  readonly serverId: string | null;
  readonly sessionId: string | null;
  readonly resumeToken: string | null;
  /** Highest message seq received in this session. */
  readonly lastSeq: number;
  readonly connects: number;
  /** The revision the next handshake avoids (a drain's reconnect frame named it), or null. */
  readonly avoid: string | null;
  /** Subscribed topics and their last seen position (null until known). */
  readonly topics: ReadonlyMap<string, Position | null>;
  connect(): void;
  send(data: unknown): Promise<Ack>;
  subscribe(topic: string): Promise<Ack>;
  unsubscribe(topic: string): Promise<Ack>;
  close(code?: number, reason?: string): void;
  addEventListener<K extends keyof StickyClientEventMap>(
    type: K,
    listener: (event: StickyClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export declare function parseRetryAfter(value: string | null | undefined, nowMs?: number): number | null;
export declare function backoffDelayMs(
  attempt: number,
  options: { baseMs: number; capMs: number; hintMs?: number; random?: () => number },
): number;

export default StickyClient;
