// @pushhub/client: the pushhub client for browsers and Node >= 18. One dependency-free ES
// module; docs/client-js.md explains it, docs/protocol.md is the wire protocol it speaks.
//
// Layout of this file:
//   options and policies    reconnectPolicy, backoffDelay, heartbeatSettings
//   positions               parseCursor, formatCursor, Stream (cursor + exactly-once filter)
//   liveness                Heartbeat (ping after silence, one retry, then dead)
//   the client              connect(), PushhubClient, PushhubError
//   transports              WebSocket, SSE over fetch, long-poll over fetch

/** Version of this package. */
export const VERSION = "0.1.0";

// ---------------------------------------------------------------------------------------
// Options and policies

/** Exponential backoff with full jitter: the default reconnect policy. */
export const DEFAULT_RECONNECT = Object.freeze({
  min: 1000,
  max: 30000,
  factor: 2,
  jitter: 1,
  retries: Infinity,
});

/**
 * After a server restart close (1012: an upgrade hands the listeners to a new process),
 * reconnect after a random delay in [0, this] ms: soon, but not every client in the same
 * millisecond. The `restartJitter` option overrides it.
 */
export const DEFAULT_RESTART_JITTER = 1000;

/** Seed 003's policy (swoole-push): at most 3 retries, 60, 120 and 180 s after the loss. */
export const SEED003_RECONNECT = Object.freeze({ delays: Object.freeze([60000, 120000, 180000]), retries: 3 });

/** Seed 003's heartbeat: ping after 180 s of silence, wait 30 s, retry once, then dead. */
export const SEED003_HEARTBEAT = Object.freeze({ interval: 180, timeout: 30, retries: 1 });

/** Seed 003's login retry: a login that did not succeed is tried again every 30 s. */
export const SEED003_LOGIN_RETRY = 30000;

/**
 * Login refusals worth trying again later (the credential may become valid, the backend
 * may come back, the rate window passes); the others are mistakes a retry repeats.
 */
const RETRYABLE_LOGIN = new Set([
  "credential_rejected",
  "auth_unavailable",
  "login_rate_limited",
  "user_full",
  "engine_unavailable",
  "invalid_token",
  "token_expired",
  "timeout",
]);

/**
 * The delay (ms) between login attempts an option asks for: `undefined`/`false` (no
 * retry: a refused `login()` rejects), `"seed003"` (30 s) or a number of ms.
 */
export function loginRetryDelay(option) {
  if (option === undefined || option === false || option === null) return null;
  if (option === "seed003") return SEED003_LOGIN_RETRY;
  if (typeof option !== "number" || !(option >= 0)) throw new TypeError('loginRetry must be milliseconds, "seed003" or false');
  return option;
}

/**
 * The reconnect policy an option asks for: `undefined` (the default), `"seed003"`, `false`
 * (never reconnect) or `{min, max, factor, jitter, retries}` / `{delays, retries}` (ms).
 */
export function reconnectPolicy(option) {
  if (option === undefined || option === true) return { ...DEFAULT_RECONNECT };
  if (option === false) return { ...DEFAULT_RECONNECT, retries: 0 };
  if (option === "seed003") return { delays: [...SEED003_RECONNECT.delays], retries: SEED003_RECONNECT.retries };
  if (typeof option !== "object" || option === null) {
    throw new TypeError('reconnect must be an object, "seed003" or false');
  }
  if (option.delays !== undefined) {
    if (!Array.isArray(option.delays) || option.delays.length === 0 || option.delays.some((d) => !(d >= 0))) {
      throw new TypeError("reconnect.delays must be a non-empty array of milliseconds");
    }
    return { delays: [...option.delays], retries: option.retries ?? option.delays.length };
  }
  const policy = { ...DEFAULT_RECONNECT, ...option };
  if (!(policy.min >= 0) || !(policy.max >= policy.min) || !(policy.factor >= 1)) {
    throw new TypeError("reconnect needs 0 <= min <= max and factor >= 1");
  }
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) throw new TypeError("reconnect.jitter must be between 0 and 1");
  if (!(policy.retries >= 0)) throw new TypeError("reconnect.retries must be >= 0");
  return policy;
}

/**
 * How long to wait before retry number `attempt` (0 for the first retry after a loss).
 * Exponential: `ceiling = min(max, min * factor^attempt)`, then `jitter` of it is random:
 * with `jitter: 1` (full jitter) the delay is uniform in [0, ceiling], with 0 it is the ceiling.
 * A `delays` policy uses its list (the last entry for later attempts).
 */
export function backoffDelay(policy, attempt, random = Math.random) {
  if (policy.delays) return policy.delays[Math.min(attempt, policy.delays.length - 1)];
  const ceiling = Math.min(policy.max, policy.min * policy.factor ** attempt);
  return Math.round(ceiling * (1 - policy.jitter * random()));
}

/**
 * The heartbeat in force: the option (`false`, `"seed003"`, or any of `{interval, timeout,
 * retries}` in seconds) over the server's `welcome`: the interval is its `heartbeat`, and at
 * most half its `idle_timeout` (so the server never takes a live client for idle); the
 * timeout min(10, interval). `null` means off.
 */
export function heartbeatSettings(option, welcome = {}) {
  if (option === false) return null;
  if (option === "seed003") return { ...SEED003_HEARTBEAT };
  const idle = welcome.idle_timeout > 0 ? welcome.idle_timeout / 2 : Infinity;
  const base = Math.min(welcome.heartbeat > 0 ? welcome.heartbeat : 25, idle);
  const given = typeof option === "object" && option !== null ? option : {};
  const interval = given.interval ?? base;
  return {
    interval,
    timeout: given.timeout ?? Math.min(10, interval),
    retries: given.retries ?? 1,
  };
}

// ---------------------------------------------------------------------------------------
// Positions: cursors and the exactly-once filter

const EMPTY = Object.freeze({ epoch: "", off: 0 });

/**
 * A cursor (`CHANNEL@EPOCH:OFFSET,...`) as a Map channel -> {epoch, off}. Entries are parsed
 * from the right, since channel names may contain `@` and `:`. Throws on a malformed entry.
 */
export function parseCursor(text) {
  const positions = new Map();
  for (const entry of String(text ?? "").split(",")) {
    if (entry === "") continue;
    const colon = entry.lastIndexOf(":");
    const at = colon < 0 ? -1 : entry.lastIndexOf("@", colon);
    const off = Number(entry.slice(colon + 1));
    if (at <= 0 || !Number.isInteger(off) || off < 0 || entry.slice(colon + 1) === "") {
      throw new PushhubError("invalid_cursor", `cursor entry "${entry}" is not CHANNEL@EPOCH:OFFSET`);
    }
    positions.set(entry.slice(0, at), { epoch: entry.slice(at + 1, colon), off });
  }
  return positions;
}

/** The cursor text of a Map channel -> {epoch, off}, sorted by channel as the server writes it. */
export function formatCursor(positions) {
  return [...positions]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([ch, p]) => `${ch}@${p.epoch}:${p.off}`)
    .join(",");
}

/**
 * Where the client stands in each channel, and the filter that lets each message through
 * once: a message at or before the known position of its channel (same epoch) was seen, and
 * so was one whose push `id` came recently through another channel (a push to `"100,*"`
 * reaches a connection once live, but both channels may replay it after a reconnect).
 */
export class Stream {
  constructor(cursor = "", { rememberIds = 1000 } = {}) {
    this.positions = parseCursor(cursor);
    this._ids = new Set();
    this._rememberIds = rememberIds;
  }

  /** The cursor to resume from. */
  get cursor() {
    return formatCursor(this.positions);
  }

  /** Take every position of `cursor` (a welcome's, a poll answer's). */
  apply(cursor) {
    for (const [ch, p] of parseCursor(cursor)) this.positions.set(ch, p);
  }

  /** Set one channel's position (a `joined` frame's). */
  set(ch, epoch, off) {
    this.positions.set(ch, { epoch: epoch ?? "", off: off ?? 0 });
  }

  /** Forget what was seen of `ch`: resume it from its first kept message. */
  reset(ch) {
    this.positions.set(ch, { ...EMPTY });
  }

  /** Record `msg`; true when the application has not seen it yet. */
  accept(msg) {
    // A push to this one connection (`off` 0, no epoch) is live-only: no position to keep.
    if (msg.off === 0 && !msg.epoch) return true;
    const known = this.positions.get(msg.ch);
    if (known && known.epoch !== "" && known.epoch === msg.epoch && msg.off <= known.off) return false;
    this.positions.set(msg.ch, { epoch: msg.epoch ?? "", off: msg.off ?? 0 });
    if (msg.id === undefined || msg.id === null) return true;
    if (this._ids.has(msg.id)) return false;
    this._ids.add(msg.id);
    if (this._ids.size > this._rememberIds) this._ids.delete(this._ids.values().next().value);
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// Liveness

/**
 * Seed 003's heartbeat: after `interval` seconds without any frame, call `ping`; any frame
 * (`seen()`) answers it. Unanswered within `timeout` seconds, ping again, `retries` times;
 * then `dead()`. Detects a half-open link in interval + (retries + 1) * timeout seconds.
 */
export class Heartbeat {
  constructor(settings, { ping, dead, timers = defaultTimers() }) {
    this.settings = settings;
    this._ping = ping;
    this._dead = dead;
    this._timers = timers;
    this._timer = null;
    this._sent = 0;
    this._stopped = false;
  }

  /** Start counting silence (from now). */
  start() {
    this.seen();
  }

  /** A frame arrived: the link is alive. */
  seen() {
    if (this._stopped) return;
    this._sent = 0;
    this._arm(this.settings.interval);
  }

  /** Check now (the page became visible, the network came back): ping unless one is out. */
  probe() {
    if (this._stopped || this._sent > 0) return;
    this._fire();
  }

  stop() {
    this._stopped = true;
    if (this._timer !== null) this._timers.clearTimeout(this._timer);
    this._timer = null;
  }

  _arm(seconds) {
    if (this._timer !== null) this._timers.clearTimeout(this._timer);
    this._timer = this._timers.setTimeout(() => this._fire(), seconds * 1000);
  }

  _fire() {
    this._timer = null;
    if (this._stopped) return;
    if (this._sent > this.settings.retries) {
      this.stop();
      this._dead();
      return;
    }
    this._sent += 1;
    this._arm(this.settings.timeout);
    this._ping();
  }
}

function defaultTimers() {
  return {
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (id) => globalThis.clearTimeout(id),
    now: () => Date.now(),
  };
}

// ---------------------------------------------------------------------------------------
// The client

/** An error the client reports: `code` is machine-readable, `message` for people. */
export class PushhubError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "PushhubError";
    this.code = code;
    Object.assign(this, details);
  }
}

const TRANSPORTS = ["websocket", "sse", "poll"];
const EVENTS = ["message", "connected", "disconnected", "error", "recovered", "state", "login", "logout"];

/** Open a client (see PushhubClient for the options); it connects at once. */
export function connect(options) {
  const client = new PushhubClient(options);
  client.open();
  return client;
}

/**
 * One logical connection to pushhub that survives reconnects, transport fallbacks and
 * token expiry, and hands the application every message once.
 */
export class PushhubClient {
  constructor(options = {}) {
    const base = options.url ?? globalThis.location?.origin;
    if (!base) throw new TypeError("connect needs url, e.g. http://127.0.0.1:8081");
    if (!options.app) throw new TypeError("connect needs app");
    if (options.preset !== undefined && options.preset !== "seed003") throw new TypeError('preset must be "seed003"');
    const preset = options.preset === "seed003" ? { reconnect: "seed003", heartbeat: "seed003", loginRetry: "seed003" } : {};
    const loginLater = Boolean(options.loginLater || options.login);
    if (!options.user && options.token == null && !options.getToken && !loginLater) {
      throw new TypeError("connect needs user, token / getToken for a token app, or loginLater / login for a login_later app");
    }
    const url = new URL(base);
    const secure = url.protocol === "https:" || url.protocol === "wss:";
    const path = url.pathname.replace(/\/+$/, "");
    this._http = `${secure ? "https" : "http"}://${url.host}${path}`;
    this._ws = `${secure ? "wss" : "ws"}://${url.host}${path}`;
    this.app = String(options.app);
    this.user = options.user == null ? null : String(options.user);
    this._token = options.token ?? null;
    this._getToken = options.getToken ?? null;
    // A login_later connection without a credential exists only on WebSocket (SSE and
    // long-poll cannot send a login frame).
    this._transports = options.transports ?? (loginLater ? ["websocket"] : TRANSPORTS);
    if (!Array.isArray(this._transports) || this._transports.length === 0 || this._transports.some((t) => !TRANSPORTS.includes(t))) {
      throw new TypeError(`transports must be a non-empty list of ${TRANSPORTS.join(", ")}`);
    }
    this._policy = reconnectPolicy(options.reconnect ?? preset.reconnect);
    this._heartbeatOption = options.heartbeat ?? preset.heartbeat;
    this._loginRetry = loginRetryDelay(options.loginRetry ?? preset.loginRetry);
    this._credential = options.login ? loginCredential(options.login) : null;
    this._loginTimer = null;
    this._loggingIn = false;
    this._loginWaiters = [];
    this._timers = options.timers ?? defaultTimers();
    this._random = options.random ?? Math.random;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this._connectTimeout = options.connectTimeout ?? 10000;
    this._requestTimeout = options.timeout ?? 10000;
    this._pollTimeout = options.pollTimeout ?? 25;
    this._restartJitter = options.restartJitter ?? DEFAULT_RESTART_JITTER;
    if (!(this._restartJitter >= 0)) throw new TypeError("restartJitter must be milliseconds >= 0");
    this._stream = new Stream(options.since ?? "");
    this._handlers = new Map(EVENTS.map((e) => [e, new Set()]));
    this._pending = new Map();
    this._queue = [];
    this._rooms = new Set();
    this._roomResets = new Set();
    this._worked = new Set();
    this._seq = 0;
    this._gen = 0;
    this._attempt = 0;
    this._index = 0;
    this._state = "idle";
    this._link = null;
    this._session = null;
    this._timer = null;
    this._connectTimer = null;
    this._refreshTimer = null;
    this._heartbeat = null;
    this._expires = null;
    this._freshToken = false;
    this._tokenRetried = false;
    this._epochRetried = false;
    this._resuming = false;
    this._lost = new Set();
    this._listening = false;
    this._onOnline = () => this._wake();
    this._onVisible = () => {
      if (globalThis.document?.visibilityState === "visible") this._wake();
    };
  }

  // -- public API ------------------------------------------------------------------------

  /** `idle`, `connecting`, `connected`, `reconnecting` or `closed`. */
  get state() {
    return this._state;
  }

  /** The transport of the current connection (`websocket`, `sse`, `poll`), or null. */
  get transport() {
    return this._state === "connected" ? this._link?.transport ?? null : null;
  }

  /** The cursor to resume from; persist it to resume across page loads (option `since`). */
  get cursor() {
    return this._stream.cursor;
  }

  /** The current connection's `welcome` frame (null while not connected, or connected but not logged in). */
  get session() {
    return this._session;
  }

  /** The rooms this client is in (joined again after every reconnect). */
  get rooms() {
    return [...this._rooms];
  }

  /** Listen to `message`, `connected`, `disconnected`, `error`, `recovered` or `state`; returns an unsubscribe function. */
  on(event, handler) {
    const set = this._handlers.get(event);
    if (!set) throw new TypeError(`unknown event "${event}": one of ${EVENTS.join(", ")}`);
    set.add(handler);
    return () => set.delete(handler);
  }

  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  /** Start connecting (connect() does this). */
  open() {
    if (this._state !== "idle") return;
    this._listen(true);
    this._setState("connecting");
    this._start();
  }

  /** Drop the current connection (if any) and connect again now, resuming. */
  reconnect() {
    if (this._state === "idle") return this.open();
    this._listen(true);
    this._end();
    this._attempt = 0;
    this._setState(this._worked.size ? "reconnecting" : "connecting");
    this._start();
  }

  /** Close for good: no reconnect; pending calls are rejected. */
  close() {
    if (this._state === "closed") return;
    const wasConnected = this._state === "connected";
    this._failAll(new PushhubError("closed", "the client was closed"));
    this._settleLogin(false, new PushhubError("closed", "the client was closed"));
    this._end(1000, "closed by client");
    this._listen(false);
    this._setState("closed");
    if (wasConnected) this._emit("disconnected", { code: 1000, reason: "closed by client", willReconnect: false });
  }

  /** Call the app's backend (`method` like `module.controller.action`); resolves with its answer. WebSocket only. */
  rpc(method, data, { timeout } = {}) {
    const frame = { type: "rpc", method };
    if (data !== undefined) frame.data = data;
    return this._request("rpc", frame, timeout, (reply) => reply.data);
  }

  /**
   * Join a room; resolves with `{room, ch, epoch, off, recovered}`. When the client knows a
   * position in the room (its cursor, e.g. the `since` option, names the room's channel),
   * the server first replays what the room carried since then; `recovered` is false when
   * it no longer could. The room is joined again, resuming, after reconnects. WebSocket only.
   */
  join(room, { timeout } = {}) {
    return this._request("join", this._joinFrame(room), timeout, (joined) => {
      this._rooms.add(room);
      this._joined(joined);
      return { room: joined.room, ch: joined.ch, epoch: joined.epoch, off: joined.off, recovered: joined.recovered !== false };
    });
  }

  /** Leave a room; resolves with `{room}`. A later join starts from the room's newest message. WebSocket only. */
  leave(room, { timeout } = {}) {
    this._rooms.delete(room);
    this._stream.positions.delete(roomChannel(this.app, room));
    return this._request("leave", { type: "leave", room }, timeout, (left) => ({ room: left.room }));
  }

  /**
   * Log in on a `login_later` app with `{ukey}` or `{token}` (any one credential name the
   * server's `waiting` frame lists); resolves with `{user, conn}` once logged in. The
   * credential is kept: the client logs in again after every reconnect. A refusal rejects,
   * unless `loginRetry` is set: then each refusal worth retrying is reported as an
   * `error` event and the client tries again every `loginRetry` ms until it succeeds or
   * `logout()` / `close()` is called. WebSocket only.
   */
  login(credential) {
    if (this._state === "closed") return Promise.reject(new PushhubError("closed", "the client is closed"));
    this._credential = loginCredential(credential);
    this._clearLoginTimer();
    const done = new Promise((resolve, reject) => this._loginWaiters.push({ resolve, reject }));
    if (this._state === "connected" && this._session) {
      // Logged in already: log out first, then in with the new credential.
      this._request("logout", { type: "logout" }).then(() => this._sendLogin(), (error) => this._loginFailed(this._credential, error));
    } else {
      this._sendLogin();
    }
    return done;
  }

  /** End the login and keep the connection (the server answers `waiting`); pending `login()` calls reject with `logged_out`. */
  logout({ timeout } = {}) {
    this._credential = null;
    this._clearLoginTimer();
    this._settleLogin(false, new PushhubError("logged_out", "logout() was called"));
    if (this._state !== "connected" || !this._session) return Promise.resolve();
    return this._request("logout", { type: "logout" }, timeout, () => undefined);
  }

  /** Send `event` with `data` to another user (the app must allow it); resolves with the `sent` ack `{ch, epoch, off}`. WebSocket only. */
  send(user, event, data, { timeout } = {}) {
    const frame = { type: "send", to: String(user) };
    if (event !== undefined && event !== null) frame.event = event;
    if (data !== undefined) frame.data = data;
    return this._request("send", frame, timeout, (sent) => ({ ch: sent.ch, epoch: sent.epoch, off: sent.off }));
  }

  // -- events and state ------------------------------------------------------------------

  _emit(event, value) {
    for (const handler of [...this._handlers.get(event)]) {
      try {
        handler(value);
      } catch (error) {
        (globalThis.reportError ?? console.error)(error);
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", state);
  }

  _listen(on) {
    const w = globalThis.window;
    const d = globalThis.document;
    if (!w?.addEventListener || on === this._listening) return;
    this._listening = on;
    const method = on ? "addEventListener" : "removeEventListener";
    w[method]("online", this._onOnline);
    d?.[method]?.("visibilitychange", this._onVisible);
  }

  /** The network came back or the page became visible: retry now, or check the link. */
  _wake() {
    if (this._timer !== null && (this._state === "reconnecting" || this._state === "connecting")) {
      this._timers.clearTimeout(this._timer);
      this._timer = null;
      this._start();
    } else if (this._state === "connected") {
      this._heartbeat?.probe();
    }
  }

  // -- calls -----------------------------------------------------------------------------

  _request(kind, frame, timeout = this._requestTimeout, done = (f) => f) {
    if (this._state === "closed") return Promise.reject(new PushhubError("closed", "the client is closed"));
    if (!this._transports.includes("websocket")) {
      return Promise.reject(unsupported(kind, this._transports[0]));
    }
    if (this._state === "connected" && this._link.transport !== "websocket") {
      return Promise.reject(unsupported(kind, this._link.transport));
    }
    const id = ++this._seq;
    frame.id = id;
    return new Promise((resolve, reject) => {
      const entry = { id, kind, frame, done, resolve, reject, sent: false, timer: null };
      entry.timer = this._timers.setTimeout(() => {
        this._pending.delete(id);
        this._queue = this._queue.filter((e) => e !== entry);
        reject(new PushhubError("timeout", `${kind} got no answer within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, entry);
      // Before a pending login succeeds only login and logout go out; the rest waits for it.
      const loggingIn = !this._session && this._credential && kind !== "login" && kind !== "logout";
      if (this._state === "connected" && !loggingIn) this._transmit(entry);
      else this._queue.push(entry);
    });
  }

  _transmit(entry) {
    entry.sent = true;
    try {
      this._link.send(entry.frame);
    } catch {
      // The socket is closing: its close event rejects the call as `disconnected`.
    }
  }

  _settle(id, ok, value) {
    const entry = this._pending.get(id);
    if (!entry) return false;
    this._pending.delete(id);
    this._timers.clearTimeout(entry.timer);
    if (ok) {
      try {
        entry.resolve(entry.done(value));
      } catch (error) {
        entry.reject(error);
      }
    } else entry.reject(value);
    return true;
  }

  _failAll(error) {
    for (const id of [...this._pending.keys()]) this._settle(id, false, error);
    this._queue = [];
  }

  // -- connecting ------------------------------------------------------------------------

  /** One connection attempt on the current transport. */
  async _start() {
    this._timer = null;
    const gen = ++this._gen;
    const transport = this._transports[this._index];
    if (this._getToken && (this._token == null || this._freshToken || this._expiresSoon())) {
      try {
        this._token = await this._getToken();
        this._freshToken = false;
      } catch (error) {
        if (gen !== this._gen) return;
        this._emit("error", new PushhubError("token_unavailable", `getToken failed: ${error?.message ?? error}`));
        this._retryLater();
        return;
      }
      if (gen !== this._gen) return;
    }
    this._sent = new Map(this._stream.positions);
    const since = this._stream.cursor;
    this._resuming = since !== "";
    this._connectTimer = this._timers.setTimeout(
      () => this._ended(gen, { network: true, reason: `no welcome within ${this._connectTimeout} ms` }),
      this._connectTimeout,
    );
    const open = { websocket: this._openWebSocket, sse: this._openSse, poll: this._openPoll }[transport];
    this._link = open.call(this, gen, since);
  }

  _expiresSoon() {
    return this._expires !== null && this._timers.now() >= this._expires * 1000 - 10000;
  }

  _query(since, extra = {}) {
    const params = new URLSearchParams({ app: this.app });
    if (this.user !== null) params.set("user", this.user);
    if (since) params.set("since", since);
    for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) params.set(k, String(v));
    return params.toString();
  }

  /** A connection said `welcome` (a poll its first answer): connected, unless a restart calls for one more try. */
  _welcome(gen, welcome) {
    if (gen !== this._gen) return false;
    this._timers.clearTimeout(this._connectTimer);
    // A channel whose epoch changed (the server restarted, or forgot a silent channel)
    // cannot be resumed from our position, but every message of its new epoch is new to
    // us: ask for them from the channel's start (`CH@:0`), once, on a fresh connection.
    const reset = [];
    for (const c of welcome.channels ?? []) {
      if (c.recovered !== false) continue;
      this._lost.add(c.ch);
      const sent = this._sent.get(c.ch);
      if (!this._epochRetried && sent && sent.epoch !== "" && c.epoch !== "" && c.epoch !== sent.epoch) reset.push(c.ch);
    }
    const anonymous = welcome.type === "waiting";
    if (welcome.recovered === false && !(welcome.channels ?? []).length && !anonymous) this._lost.add("*");
    if (reset.length) {
      this._epochRetried = true;
      if (welcome.cursor) this._stream.apply(welcome.cursor);
      for (const ch of reset) this._stream.reset(ch);
      this._end(1000, "resuming from the new epoch");
      this._start();
      return false;
    }
    this._epochRetried = false;
    this._tokenRetried = false;
    if (welcome.cursor) this._stream.apply(welcome.cursor);
    const transport = this._link.transport;
    this._worked.add(transport);
    this._attempt = 0;
    this._session = anonymous ? null : welcome;
    this._expires = typeof welcome.expires === "number" ? welcome.expires : null;
    this._setState("connected");
    if (transport !== "poll") {
      const settings = heartbeatSettings(this._heartbeatOption, welcome);
      if (settings) {
        const link = this._link;
        this._heartbeat = new Heartbeat(settings, {
          timers: this._timers,
          ping: () => link.ping(),
          dead: () => this._ended(gen, { network: true, code: 4000, reason: "heartbeat: no answer from the server" }),
        });
        this._heartbeat.start();
      }
    }
    this._scheduleRefresh(gen);
    this._emit("connected", { transport, conn: welcome.conn, app: welcome.app, user: welcome.user, anonymous, welcome });
    if (anonymous) {
      // Nothing is delivered before the login: what was asked meanwhile waits for it.
      this._lost.clear();
      if (this._credential) this._sendLogin();
      else this._flushQueue(transport);
      return true;
    }
    if (this._resuming) {
      this._emit("recovered", { recovered: this._lost.size === 0, lost: [...this._lost] });
    }
    this._lost.clear();
    // Welcomed with a user at connect (a cookie the app reads): that is the login waited for.
    this._settleLogin(true, { user: welcome.user, conn: welcome.conn });
    if (transport === "websocket") for (const room of this._rooms) this._rejoin(room);
    this._flushQueue(transport);
    return true;
  }

  /** Send the calls made while not connected (or not logged in), or fail them where the transport cannot carry them. */
  _flushQueue(transport) {
    if (transport === "websocket") {
      const queued = this._queue;
      this._queue = [];
      for (const entry of queued) this._transmit(entry);
    } else {
      for (const entry of this._queue) this._settle(entry.id, false, unsupported(entry.kind, transport));
      this._queue = [];
      if (this._rooms.size) {
        const rooms = [...this._rooms].join(", ");
        this._emit("error", new PushhubError("unsupported_transport", `rooms (${rooms}) are joined again only over WebSocket; this client is on ${transport}`));
      }
    }
  }

  // -- logging in (login_later apps) -------------------------------------------------------

  /** Send a `login` with the kept credential and the cursor (to resume), unless one is on its way. */
  _sendLogin() {
    this._loginTimer = null;
    if (!this._credential || this._loggingIn || this._state !== "connected" || this._session) return;
    const credential = this._credential;
    const frame = { type: "login", ...credential };
    const since = this._stream.cursor;
    if (since) frame.since = since;
    this._loggingIn = true;
    this._request("login", frame).then(
      () => {
        this._loggingIn = false;
      },
      (error) => {
        this._loggingIn = false;
        this._loginFailed(credential, error);
      },
    );
  }

  /** A login with `credential` failed: try again later when that is worth it and allowed, else give up. */
  _loginFailed(credential, error) {
    // Replaced meanwhile (log in with the new one), logged out, or the connection ended
    // (the next one logs in again).
    if (credential !== this._credential) return this._sendLogin();
    if (error.code === "disconnected" || error.code === "closed") return;
    if (this._loginRetry !== null && RETRYABLE_LOGIN.has(error.code)) {
      const delay = Math.max(this._loginRetry, (error.retryAfter ?? 0) * 1000);
      this._emit("error", new PushhubError(error.code, `login failed, retrying in ${delay} ms: ${error.message}`, { willRetry: true, delay }));
      this._loginTimer = this._timers.setTimeout(() => this._sendLogin(), delay);
      return;
    }
    this._credential = null;
    this._settleLogin(false, error);
    if (this._loginRetry !== null) this._emit("error", error);
  }

  /** Resolve (with `{user, conn}`) or reject every pending `login()`. */
  _settleLogin(ok, value) {
    const waiters = this._loginWaiters;
    this._loginWaiters = [];
    for (const waiter of waiters) (ok ? waiter.resolve : waiter.reject)(value);
  }

  _clearLoginTimer() {
    if (this._loginTimer !== null) this._timers.clearTimeout(this._loginTimer);
    this._loginTimer = null;
  }

  /** The `welcome` that answers a login: the connection now has a user, its channels and a cursor. */
  _loggedIn(welcome) {
    if (welcome.cursor) this._stream.apply(welcome.cursor);
    this._session = welcome;
    this._expires = typeof welcome.expires === "number" ? welcome.expires : null;
    const lost = (welcome.channels ?? []).filter((c) => c.recovered === false).map((c) => c.ch);
    this._emit("login", { user: welcome.user, conn: welcome.conn, welcome });
    if (lost.length) this._emit("recovered", { recovered: false, lost });
    this._settleLogin(true, { user: welcome.user, conn: welcome.conn });
    for (const room of this._rooms) this._rejoin(room);
    this._flushQueue(this._link.transport);
  }

  /** The `waiting` that answers a logout: the connection stays, without a user. */
  _loggedOut() {
    const user = this._session?.user;
    this._session = null;
    this._expires = null;
    this._emit("logout", { user });
  }

  /** A `join` frame for `room`, carrying the position known in it (to resume from). */
  _joinFrame(room) {
    const frame = { type: "join", room };
    const known = this._stream.positions.get(roomChannel(this.app, room));
    if (known) {
      frame.epoch = known.epoch;
      frame.off = known.off;
    }
    return frame;
  }

  /** A `joined` answer: where the client stands in the room before the replay that follows. */
  _joined(joined) {
    if (joined.ch) this._stream.set(joined.ch, joined.epoch, joined.off);
  }

  _rejoin(room) {
    const frame = this._joinFrame(room);
    this._request("join", frame, undefined, (joined) => {
      if (joined.recovered === false) {
        this._emit("recovered", { recovered: false, lost: [joined.ch], room });
        // The room's epoch changed (a server restart, a room silent past its history_ttl):
        // every message of its new epoch is new to us. As for the connection's own
        // channels, ask for them from the start (the empty position), once, on a fresh
        // connection; nothing of the room was taken from this one.
        if (!this._roomResets.has(room) && frame.epoch && joined.epoch && joined.epoch !== frame.epoch) {
          this._roomResets.add(room);
          this._stream.reset(joined.ch);
          this._end(1000, "resuming a room from its new epoch");
          this._start();
          return joined;
        }
      }
      this._roomResets.delete(room);
      this._joined(joined);
      return joined;
    }).catch((error) => {
      if (error.code === "disconnected" || error.code === "closed") return;
      this._rooms.delete(room);
      this._emit("error", new PushhubError(error.code, `could not join room "${room}" again: ${error.message}`, { room }));
    });
  }

  /** Refresh the token before the welcome's `expires` (WebSocket: a `refresh` frame; SSE: a new stream). */
  _scheduleRefresh(gen) {
    if (this._expires === null || !this._getToken) return;
    const left = this._expires * 1000 - this._timers.now();
    const wait = Math.max(0, left - Math.min(30000, left / 2));
    this._refreshTimer = this._timers.setTimeout(() => this._refresh(gen), wait);
  }

  async _refresh(gen) {
    if (gen !== this._gen) return;
    if (this._link.transport !== "websocket") {
      this._freshToken = true;
      this._end();
      this._start();
      return;
    }
    try {
      this._token = await this._getToken();
      if (gen !== this._gen) return;
      const refreshed = await this._request("refresh", { type: "refresh", token: this._token });
      if (gen !== this._gen) return;
      this._expires = refreshed.expires;
      this._scheduleRefresh(gen);
    } catch (error) {
      if (gen !== this._gen || error.code === "disconnected" || error.code === "closed") return;
      // The server closes with 4006 at the expiry; the reconnect then fetches a fresh token.
      this._freshToken = true;
      this._emit("error", new PushhubError(error.code ?? "refresh_failed", `token refresh failed: ${error.message}`));
    }
  }

  /** One frame of the current connection. */
  _frame(gen, frame) {
    if (gen !== this._gen) return;
    switch (frame.type) {
      case "msg":
        if (this._stream.accept(frame)) this._emit("message", frame);
        break;
      case "reply":
      case "joined":
      case "left":
      case "sent":
      case "refreshed":
        this._settle(frame.id, true, frame);
        break;
      case "welcome":
        this._loggedIn(frame);
        this._settle(frame.id, true, frame);
        break;
      case "waiting":
        if (this._session) this._loggedOut();
        this._settle(frame.id, true, frame);
        break;
      case "error": {
        const details = frame.retry_after !== undefined ? { retryAfter: frame.retry_after } : {};
        const error = new PushhubError(frame.code, frame.message, details);
        if (frame.id === undefined || !this._settle(frame.id, false, error)) this._emit("error", error);
        break;
      }
      default:
        break; // pong (any frame answers the heartbeat), and types from newer servers
    }
  }

  /** Tear the current connection down (its late events are ignored). */
  _end(code = 1000, reason = "") {
    this._gen++;
    for (const t of ["_timer", "_connectTimer", "_refreshTimer"]) {
      if (this[t] !== null) this._timers.clearTimeout(this[t]);
      this[t] = null;
    }
    this._heartbeat?.stop();
    this._heartbeat = null;
    this._clearLoginTimer();
    this._loggingIn = false;
    const link = this._link;
    this._link = null;
    this._session = null;
    link?.close(code, reason);
    // A call already sent may or may not have run: it cannot be answered on another connection.
    for (const entry of [...this._pending.values()]) {
      if (entry.sent) {
        this._settle(entry.id, false, new PushhubError("disconnected", `the connection closed before the answer to ${entry.kind}`));
      }
    }
  }

  /**
   * The connection `gen` ended: `{code, reason}` (a close frame), `{status, error}` (an HTTP
   * refusal), `{network}` (no connection, a dead link, a stream cut), `{welcomed}`.
   */
  _ended(gen, info) {
    if (gen !== this._gen) return;
    const transport = this._link?.transport ?? this._transports[this._index];
    const welcomed = this._state === "connected";
    this._end(4000, "reconnecting");
    const kind = classify(info);
    const tell = (willReconnect, delay) => {
      if (welcomed) this._emit("disconnected", { code: info.code ?? 1006, reason: info.reason ?? "", status: info.status, transport, willReconnect, delay });
    };
    if (kind === "terminal") {
      tell(false);
      this._stop(new PushhubError(info.error ?? "refused", info.reason || `refused (${info.code ?? info.status})`, { closeCode: info.code, status: info.status }));
      return;
    }
    if (kind === "token") {
      if (!this._getToken) {
        tell(false);
        this._stop(new PushhubError("token_expired", info.reason || "token expired (no getToken to fetch a fresh one)", { closeCode: info.code, status: info.status }));
        return;
      }
      this._freshToken = true;
      if (this._tokenRetried && !welcomed) {
        // A fresh token was refused as expired too (clocks apart?): back off.
        this._retryLater(tell);
        return;
      }
      this._tokenRetried = true;
      tell(true, 0);
      this._setState("reconnecting");
      this._start();
      return;
    }
    if (kind === "resume") {
      tell(true, 0);
      this._setState("reconnecting");
      this._start();
      return;
    }
    if (kind === "restart") {
      // The server is being replaced and the new one already holds the address: come back
      // soon, spread over the jitter window, from the first transport, without backoff.
      const delay = Math.round(this._restartJitter * this._random());
      this._index = 0;
      tell(true, delay);
      this._setState("reconnecting");
      this._timer = this._timers.setTimeout(() => this._start(), delay);
      return;
    }
    // A transport that cannot even be reached (a proxy that blocks WebSocket): try the next
    // one at once. One that worked before is given up on only after 3 failed rounds (a
    // restarting server should not send every client to long-poll); after a backoff every
    // round starts again from the first transport.
    const suspect = !this._worked.has(transport) || this._attempt >= 3;
    if (!welcomed && info.network && suspect && this._index + 1 < this._transports.length) {
      this._index += 1;
      this._start();
      return;
    }
    this._retryLater(tell);
  }

  _retryLater(tell = () => {}) {
    this._index = 0;
    if (this._attempt >= this._policy.retries) {
      tell(false);
      this._stop(new PushhubError("reconnect_failed", `gave up after ${this._attempt} retries`));
      return;
    }
    const delay = backoffDelay(this._policy, this._attempt, this._random);
    this._attempt += 1;
    tell(true, delay);
    this._setState(this._worked.size ? "reconnecting" : "connecting");
    this._timer = this._timers.setTimeout(() => this._start(), delay);
  }

  _stop(error) {
    this._listen(false);
    this._setState("closed");
    this._failAll(error);
    this._emit("error", error);
  }

  // -- transports ------------------------------------------------------------------------

  _openWebSocket(gen, since) {
    const link = { transport: "websocket", send() {}, ping() {}, close() {} };
    if (typeof this._WebSocket !== "function") {
      this._timers.setTimeout(() => this._ended(gen, { network: true, reason: "no WebSocket in this runtime (pass the WebSocket option)" }), 0);
      return link;
    }
    let ws;
    try {
      ws = new this._WebSocket(`${this._ws}/v1/ws?${this._query(since)}`);
    } catch (error) {
      this._timers.setTimeout(() => this._ended(gen, { network: true, reason: String(error?.message ?? error) }), 0);
      return link;
    }
    let opened = false;
    let welcomed = false;
    link.send = (frame) => ws.send(JSON.stringify(frame));
    link.ping = () => {
      try {
        ws.send(JSON.stringify({ type: "ping", id: `hb${++this._seq}` }));
      } catch {
        // the close event follows
      }
    };
    link.close = (code, reason) => {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason);
      } catch {
        try {
          ws.close();
        } catch {
          // already closed
        }
      }
    };
    ws.onopen = () => {
      opened = true;
      if (this._token != null) link.send({ type: "auth", token: this._token });
    };
    ws.onmessage = (event) => {
      if (gen !== this._gen) return;
      this._heartbeat?.seen();
      let frame;
      try {
        frame = JSON.parse(typeof event.data === "string" ? event.data : String(event.data));
      } catch {
        return;
      }
      if (!welcomed) {
        if (frame.type === "welcome" || frame.type === "waiting") welcomed = this._welcome(gen, frame);
        return;
      }
      this._frame(gen, frame);
    };
    ws.onclose = (event) => {
      this._ended(gen, { code: event.code, reason: event.reason, network: !opened || event.code === 1006 || event.code === 1015 });
    };
    ws.onerror = () => {}; // a close event follows
    return link;
  }

  _openSse(gen, since) {
    const abort = new AbortController();
    const link = {
      transport: "sse",
      send() {},
      ping() {},
      close: () => abort.abort(),
    };
    const extra = this._token != null ? { token: this._token } : {};
    const url = `${this._http}/v1/sse?${this._query(since, extra)}`;
    (async () => {
      let response;
      try {
        response = await this._fetch(url, { signal: abort.signal, cache: "no-store", headers: { accept: "text/event-stream" } });
      } catch (error) {
        this._ended(gen, { network: true, reason: String(error?.message ?? error) });
        return;
      }
      if (gen !== this._gen) return abort.abort();
      if (!response.ok) {
        this._ended(gen, await httpRefusal(response));
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let data = [];
      let welcomed = false;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (gen !== this._gen) return;
          if (done) break;
          this._heartbeat?.seen(); // `: ping` comments count too
          buffer += decoder.decode(value, { stream: true });
          let nl;
          while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + (buffer[nl] === "\r" && buffer[nl + 1] === "\n" ? 2 : 1));
            if (line === "") {
              if (data.length === 0) continue;
              let frame;
              try {
                frame = JSON.parse(data.join("\n"));
              } catch {
                frame = null;
              }
              data = [];
              if (!frame) continue;
              if (isClosing(frame)) {
                // The server ended the stream and says why: act on it as on a close frame.
                abort.abort();
                this._ended(gen, { code: frame.close, reason: frame.message ?? "", error: frame.code });
                return;
              }
              if (!welcomed) {
                if (frame.type === "welcome") welcomed = this._welcome(gen, frame);
                if (!welcomed) return;
              } else this._frame(gen, frame);
              if (gen !== this._gen) return;
            } else if (line.startsWith("data:")) {
              data.push(line.slice(line[5] === " " ? 6 : 5));
            }
            // `id:` (the cursor, which we track ourselves), `retry:` and comments: nothing to do
          }
        }
        this._ended(gen, { network: true, code: 1006, reason: "the event stream ended" });
      } catch (error) {
        this._ended(gen, { network: true, code: 1006, reason: String(error?.message ?? error) });
      }
    })();
    return link;
  }

  _openPoll(gen, since) {
    const abort = new AbortController();
    const link = { transport: "poll", send() {}, ping() {}, close: () => abort.abort() };
    (async () => {
      let cursor = since;
      let welcomed = false;
      while (gen === this._gen) {
        // The first request answers at once, so the client knows it is connected.
        const wait = welcomed ? this._pollTimeout : 0;
        const extra = { timeout: wait, ...(this._token != null ? { token: this._token } : {}) };
        const url = `${this._http}/v1/poll?${this._query(cursor, extra)}`;
        const deadline = this._timers.setTimeout(() => abort.abort(), (wait + 15) * 1000);
        let response;
        let body;
        try {
          response = await this._fetch(url, { signal: abort.signal, cache: "no-store" });
          if (response.ok) body = await response.json();
        } catch (error) {
          this._timers.clearTimeout(deadline);
          this._ended(gen, { network: true, reason: String(error?.message ?? error) });
          return;
        } finally {
          this._timers.clearTimeout(deadline);
        }
        if (gen !== this._gen) return;
        if (!response.ok) {
          this._ended(gen, await httpRefusal(response));
          return;
        }
        if (!welcomed) {
          // No welcome on long-poll: the first answer stands for it. A channel whose
          // epoch differs from the one we sent was not recovered (its messages are not here).
          const answered = parseCursor(body.cursor);
          const channels = [];
          if (!body.recovered) {
            for (const [ch, p] of answered) {
              const sent = this._sent.get(ch);
              if (sent && sent.epoch !== "" && p.epoch !== sent.epoch) channels.push({ ch, epoch: p.epoch, off: p.off, recovered: false });
            }
          }
          welcomed = this._welcome(gen, { type: "welcome", app: this.app, user: this.user, recovered: body.recovered, channels });
          if (!welcomed) return;
        } else if (!body.recovered) {
          this._emit("recovered", { recovered: false, lost: ["*"] });
        }
        let closing = null;
        for (const frame of body.messages) {
          if (isClosing(frame)) {
            closing = frame;
            break;
          }
          this._frame(gen, frame);
          if (gen !== this._gen) return;
        }
        this._stream.apply(body.cursor);
        cursor = this._stream.cursor;
        if (closing) {
          // The server ended this poll and says why: act on it as on a close frame.
          this._ended(gen, { code: closing.close, reason: closing.message ?? "", error: closing.code });
          return;
        }
      }
    })();
    return link;
  }
}

/** The channel of `room` in `app`, as the server names it (`APP:room:ROOM`). */
/** A login credential as `login()` takes it: an object with one non-empty string, e.g. `{ukey: "..."}`. */
function loginCredential(credential) {
  const entries = Object.entries(credential ?? {});
  if (entries.length !== 1 || typeof entries[0][1] !== "string" || entries[0][1] === "") {
    throw new TypeError('login takes one credential, e.g. {ukey: "..."} or {token: "..."}');
  }
  return Object.fromEntries(entries);
}

function roomChannel(app, room) {
  return `${app}:room:${room}`;
}

/**
 * Whether `frame` is the last frame of an SSE stream or long-poll answer the server ended:
 * an `error` frame carrying the close code (`{"type":"error","code":"kicked","close":4009,...}`).
 */
export function isClosing(frame) {
  return frame?.type === "error" && Number.isInteger(frame.close);
}

/**
 * How a connection's end is handled: `terminal`, `token` (fresh token, at once), `resume`
 * (at once), `restart` (after a short random delay) or `retry` (backoff).
 */
export function classify(info) {
  const { code, status, error } = info;
  if (code === 4006 || (status === 401 && error === "token_expired")) return "token";
  if (code === 4005) return "resume";
  if (code === 1012) return "restart";
  if (code >= 4500 && code <= 4999) return "terminal";
  if (status !== undefined) {
    if (status === 429) return error === "user_full" ? "terminal" : "retry";
    if (status >= 400 && status < 500 && status !== 408) return "terminal";
  }
  return "retry";
}

async function httpRefusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page
  }
  return {
    status: response.status,
    error: body?.error?.code,
    reason: body?.error?.message ?? `HTTP ${response.status}`,
    network: response.status >= 500 && !body?.error,
  };
}

function unsupported(kind, transport) {
  return new PushhubError(
    "unsupported_transport",
    `${kind} needs a WebSocket connection; this client is on ${transport}, which only receives`,
  );
}
