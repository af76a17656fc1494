// Fakes for the SDK's logic tests: a clock the test moves by hand, and a WebSocket the
// test plays the server of.

/** setTimeout/clearTimeout/now over a virtual clock; `advance(ms)` fires what falls due, in order. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.time = start;
    this._timers = new Map();
    this._seq = 0;
    this.setTimeout = (fn, ms) => {
      const id = ++this._seq;
      this._timers.set(id, { at: this.time + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => this._timers.delete(id);
    this.now = () => this.time;
  }

  /** Move time forward by `ms`, firing every timer that falls due (including ones set meanwhile). */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this._timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      this._timers.delete(next[0]);
      this.time = next[1].at;
      next[1].fn();
    }
    this.time = end;
  }

  get pending() {
    return this._timers.size;
  }
}

/** A WebSocket whose server is the test: `open()`, `receive(frame)`, `drop(code)`. */
export class FakeSocket {
  static all = [];

  static reset() {
    FakeSocket.all = [];
  }

  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closed = { code, reason };
  }

  open() {
    this.onopen?.({});
  }

  receive(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code = 1006, reason = "") {
    this.onclose?.({ code, reason });
  }

  /** Open and say welcome with `cursor` (channels derived from it). */
  welcome(cursor = "demo:all@:0,demo:user:100@:0", extra = {}) {
    this.open();
    const channels = cursor
      .split(",")
      .filter(Boolean)
      .map((entry) => {
        const colon = entry.lastIndexOf(":");
        const at = entry.lastIndexOf("@", colon);
        return { ch: entry.slice(0, at), epoch: entry.slice(at + 1, colon), off: Number(entry.slice(colon + 1)), recovered: true };
      });
    this.receive({ type: "welcome", conn: String(FakeSocket.all.length), app: "demo", user: "100", heartbeat: 25, idle_timeout: 60, recovered: true, cursor, channels, ...extra });
  }
}

/** Flush pending promise callbacks. */
export const tick = () => new Promise((r) => setImmediate(r));
