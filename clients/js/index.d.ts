// Type declarations for @pushhub/client (src/pushhub.js). docs/client-js.md explains them.

export declare const VERSION: string;

/** Which transport a connection uses, in the order `transports` tries them. */
export type Transport = "websocket" | "sse" | "poll";

/** `idle` (not opened), `connecting` (never connected yet), `connected`, `reconnecting`, `closed` (for good). */
export type ClientState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/** Exponential backoff (ms): the delay before retry n is uniform in [(1 - jitter) * c, c], c = min(max, min * factor^n). */
export interface ExponentialReconnect {
  /** First ceiling, ms (default 1000). */
  min?: number;
  /** Largest ceiling, ms (default 30000). */
  max?: number;
  /** Growth per retry (default 2). */
  factor?: number;
  /** Random share of the delay, 0..1 (default 1: full jitter). */
  jitter?: number;
  /** Retries after a loss before giving up with `reconnect_failed` (default Infinity). */
  retries?: number;
}

/** Fixed delays (ms), the last one repeating; seed 003's preset is `{delays: [60000, 120000, 180000], retries: 3}`. */
export interface ListReconnect {
  delays: number[];
  retries?: number;
}

export type ReconnectOption = ExponentialReconnect | ListReconnect | "seed003" | false;

/** Seconds. Defaults: interval = the welcome's `heartbeat` (at most half its `idle_timeout`), timeout = min(10, interval), retries = 1. */
export interface HeartbeatOptions {
  /** Silence (no frame at all) after which the client pings. */
  interval?: number;
  /** How long a ping may stay unanswered. */
  timeout?: number;
  /** Pings to send again before the link is declared dead (seed 003: 1). */
  retries?: number;
}

export type HeartbeatOption = HeartbeatOptions | "seed003" | false;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  now(): number;
}

export interface ConnectOptions {
  /** The client listener, e.g. `http://127.0.0.1:8081` or `wss://push.example.com` (default: the page's origin). A path prefix is kept. */
  url?: string;
  /** The app. */
  app: string;
  /** The user id (apps with `auth = "none"`); token apps take it from the token. */
  user?: string | number;
  /** A token or webhook credential; sent in an `auth` frame on WebSocket, as `?token=` on SSE and long-poll. */
  token?: string;
  /** Called for a fresh token: before the first connection when `token` is absent, after a 4006 / 401 `token_expired`, and before the welcome's `expires`. */
  getToken?: () => string | Promise<string>;
  /** Transports to try, in order (default all three). */
  transports?: Transport[];
  /** Reconnect policy (default: exponential 1 s .. 30 s, full jitter, no retry limit). */
  reconnect?: ReconnectOption;
  /** Client heartbeat (default: from the welcome). */
  heartbeat?: HeartbeatOption;
  /** `"seed003"`: seed 003's heartbeat, reconnect and login retry, unless given separately. */
  preset?: "seed003";
  /** A `login_later` app: connect without a credential (WebSocket only unless `transports` says otherwise) and log in with `login()`. */
  loginLater?: boolean;
  /** Log in with this credential after every connect (implies `loginLater`). */
  login?: LoginCredential;
  /** ms between retries of a refused login (`"seed003"`: 30000); default: no retry, `login()` rejects. */
  loginRetry?: number | "seed003" | false;
  /** A cursor to resume from (one you persisted from `client.cursor`). */
  since?: string;
  /** Default timeout of rpc/join/leave/send, ms (default 10000). */
  timeout?: number;
  /** How long a connection may take to be welcomed, ms (default 10000). */
  connectTimeout?: number;
  /** Seconds a long-poll request waits (default 25, at most 120). */
  pollTimeout?: number;
  /**
   * After a server restart close (1012: `pushhub upgrade` hands the listeners to a new
   * process), reconnect after a random delay in [0, this] ms instead of the backoff
   * (default 1000).
   */
  restartJitter?: number;
  /** A WebSocket constructor (Node 18/20: `import WebSocket from "ws"`); default `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => any;
  /** A fetch implementation (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** For tests: timers and clock. */
  timers?: Timers;
  /** For tests: the jitter's random source. */
  random?: () => number;
}

/** A message frame (docs/protocol.md, `msg`). */
export interface Message<T = unknown> {
  type: "msg";
  /** Channel: `APP:user:USER`, `APP:all`, `APP:group:GROUP`, `APP:room:ROOM`. */
  ch: string;
  epoch: string;
  off: number;
  /** The push id, the same on every channel it reached. */
  id: string;
  event?: string;
  /** The sending user, for messages a client sent with `send`. */
  from?: string;
  data: T;
  /** Server time the push was accepted, ms since the Unix epoch. */
  ts: number;
}

export interface ChannelState {
  ch: string;
  epoch: string;
  off: number;
  recovered: boolean;
}

/** The server's welcome frame (long-poll: a stand-in with `recovered` and `channels` only). */
export interface Welcome {
  type: "welcome";
  conn?: string;
  app: string;
  user: string;
  heartbeat?: number;
  idle_timeout?: number;
  max_frame_bytes?: number;
  recovered: boolean;
  cursor?: string;
  channels: ChannelState[];
  /** Token apps: when the token expires (Unix seconds). */
  expires?: number;
}

export interface ConnectedEvent {
  transport: Transport;
  conn?: string;
  app: string;
  /** Absent on a `login_later` connection that is not logged in (`anonymous`). */
  user?: string;
  /** True when the server said `waiting`: connected, not logged in, receiving nothing. */
  anonymous: boolean;
  welcome: Welcome;
}

/** One credential under one of the names the server's `waiting` frame lists. */
export type LoginCredential = { ukey: string } | { token: string } | Record<string, string>;

export interface LoginEvent {
  user: string;
  conn: string;
  welcome: Welcome;
}

export interface DisconnectedEvent {
  /** The close code (1006 for a lost link or an ended stream; 4000 for a dead heartbeat). */
  code: number;
  reason: string;
  /** The HTTP status, when an SSE or long-poll request was refused. */
  status?: number;
  transport: Transport;
  willReconnect: boolean;
  /** ms until the next attempt, when `willReconnect`. */
  delay?: number;
}

export interface RecoveredEvent {
  /** false: the server could not replay everything since the last position (a restart, a gap beyond its history). */
  recovered: boolean;
  /** The channels that were not recovered (`"*"`: unknown which). */
  lost: string[];
  /** Set when a room joined again after a reconnect could not be resumed. */
  room?: string;
}

export interface JoinResult {
  room: string;
  ch: string;
  /** Where the client stands in the room before the replay that follows the answer. */
  epoch: string;
  off: number;
  /** false: the client knew a position in the room, and its history no longer reaches it. */
  recovered: boolean;
}

export interface SentResult {
  ch: string;
  epoch: string;
  off: number;
}

export interface CallOptions {
  /** ms; default the client's `timeout`. */
  timeout?: number;
}

export declare class PushhubError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>);
  /** The server's error code (`rpc_not_enabled`, `join_forbidden`, ...) or the client's: `timeout`, `disconnected`, `closed`, `unsupported_transport`, `reconnect_failed`, `token_expired`, `token_unavailable`, `refused`, `invalid_cursor`. */
  code: string;
  /** The close code of a refusal (WebSocket). */
  closeCode?: number;
  /** The HTTP status of a refusal (SSE, long-poll). */
  status?: number;
  /** The room, for a room that could not be joined again after a reconnect. */
  room?: string;
}

export interface EventMap {
  message: Message;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  error: PushhubError;
  recovered: RecoveredEvent;
  state: ClientState;
  login: LoginEvent;
  logout: { user?: string };
}

export declare class PushhubClient {
  constructor(options: ConnectOptions);
  readonly app: string;
  readonly user: string | null;
  readonly state: ClientState;
  /** The transport in use while connected, else null. */
  readonly transport: Transport | null;
  /** Where the client stands (`CHANNEL@EPOCH:OFFSET,...`): persist it and pass it as `since` to resume across page loads. */
  readonly cursor: string;
  /** The current connection's welcome, or null. */
  readonly session: Welcome | null;
  readonly rooms: string[];
  on<E extends keyof EventMap>(event: E, handler: (value: EventMap[E]) => void): () => void;
  off<E extends keyof EventMap>(event: E, handler: (value: EventMap[E]) => void): void;
  open(): void;
  reconnect(): void;
  close(): void;
  /** Call the app's backend; resolves with its answer. WebSocket only. */
  rpc<T = unknown>(method: string, data?: unknown, options?: CallOptions): Promise<T>;
  /** Join a room, resuming from the position the client knows in it (joined again, resuming, after every reconnect). WebSocket only. */
  join(room: string, options?: CallOptions): Promise<JoinResult>;
  leave(room: string, options?: CallOptions): Promise<{ room: string }>;
  /** Log in on a `login_later` app; kept, and used again after every reconnect. With `loginRetry`, refusals worth retrying are retried until it succeeds. */
  login(credential: LoginCredential): Promise<{ user: string; conn: string }>;
  /** End the login, keep the connection; pending login() calls reject with `logged_out`. */
  logout(options?: CallOptions): Promise<void>;
  /** Send an event to a user of the app (when the app allows it). WebSocket only. */
  send(user: string | number, event?: string | null, data?: unknown, options?: CallOptions): Promise<SentResult>;
}

/** Create a client and start connecting. */
export declare function connect(options: ConnectOptions): PushhubClient;

// The building blocks, exported for tests and for other clients.
export declare const DEFAULT_RECONNECT: Readonly<Required<ExponentialReconnect>>;
export declare const DEFAULT_RESTART_JITTER: number;
export declare const SEED003_RECONNECT: Readonly<ListReconnect>;
export declare const SEED003_HEARTBEAT: Readonly<Required<HeartbeatOptions>>;
export declare const SEED003_LOGIN_RETRY: number;
export declare function loginRetryDelay(option?: number | "seed003" | false): number | null;
export declare function reconnectPolicy(option?: ReconnectOption): Required<ExponentialReconnect> | Required<ListReconnect>;
export declare function backoffDelay(policy: ExponentialReconnect | ListReconnect, attempt: number, random?: () => number): number;
export declare function heartbeatSettings(option: HeartbeatOption | undefined, welcome?: Partial<Welcome>): Required<HeartbeatOptions> | null;
export type Position = { epoch: string; off: number };
export declare function parseCursor(text: string): Map<string, Position>;
export declare function formatCursor(positions: Map<string, Position>): string;
export declare class Stream {
  constructor(cursor?: string, options?: { rememberIds?: number });
  positions: Map<string, Position>;
  readonly cursor: string;
  apply(cursor: string): void;
  set(ch: string, epoch: string, off: number): void;
  reset(ch: string): void;
  accept(msg: Pick<Message, "ch" | "epoch" | "off" | "id">): boolean;
}
export declare class Heartbeat {
  constructor(settings: Required<HeartbeatOptions>, hooks: { ping: () => void; dead: () => void; timers?: Timers });
  settings: Required<HeartbeatOptions>;
  start(): void;
  seen(): void;
  probe(): void;
  stop(): void;
}
/** Whether a frame is the last one of an SSE stream or long-poll answer the server ended: an `error` frame with the `close` code. */
export declare function isClosing(frame: unknown): boolean;
export declare function classify(info: { code?: number; status?: number; error?: string }): "terminal" | "token" | "resume" | "restart" | "retry";
