// The SDK's logic without a server: backoff, cursors and the exactly-once filter, the
// heartbeat, call matching, reconnect decisions and fallback, on a fake clock.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import {
  Heartbeat,
  PushhubClient,
  SEED003_HEARTBEAT,
  SEED003_LOGIN_RETRY,
  Stream,
  backoffDelay,
  classify,
  formatCursor,
  heartbeatSettings,
  isClosing,
  loginRetryDelay,
  parseCursor,
  reconnectPolicy,
} from "../src/pushhub.js";
import { FakeClock, FakeSocket, tick } from "./helpers/fake.js";

describe("backoff", () => {
  test("exponential ceiling, capped at max", () => {
    const policy = reconnectPolicy({ min: 1000, max: 30000, factor: 2, jitter: 0 });
    const delays = [0, 1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(policy, a));
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  test("full jitter spreads the delay over [0, ceiling]", () => {
    const policy = reconnectPolicy({});
    assert.equal(backoffDelay(policy, 3, () => 0), 8000);
    assert.equal(backoffDelay(policy, 3, () => 0.5), 4000);
    assert.equal(backoffDelay(policy, 3, () => 0.999999), 0);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(policy, 20);
      assert.ok(d >= 0 && d <= 30000, String(d));
    }
  });

  test("partial jitter keeps a floor", () => {
    const policy = reconnectPolicy({ min: 100, max: 1000, jitter: 0.5 });
    assert.equal(backoffDelay(policy, 1, () => 0.999999), 100);
    assert.equal(backoffDelay(policy, 1, () => 0), 200);
  });

  test("seed 003: three retries at 60, 120 and 180 s", () => {
    const policy = reconnectPolicy("seed003");
    assert.equal(policy.retries, 3);
    assert.deepEqual([0, 1, 2].map((a) => backoffDelay(policy, a)), [60000, 120000, 180000]);
  });

  test("bad bounds are refused", () => {
    assert.throws(() => reconnectPolicy({ min: 10, max: 5 }), TypeError);
    assert.throws(() => reconnectPolicy({ jitter: 2 }), TypeError);
    assert.throws(() => reconnectPolicy({ delays: [] }), TypeError);
    assert.throws(() => reconnectPolicy("often"), TypeError);
    assert.equal(reconnectPolicy(false).retries, 0);
  });
});

describe("cursors", () => {
  test("entries parse from the right: channels may hold @ and :", () => {
    const cursor = "demo:all@zchocq9g:1,demo:user:bob@x.com@fmhejgz1:3,demo:user:a:b@:0";
    const positions = parseCursor(cursor);
    assert.deepEqual(positions.get("demo:user:bob@x.com"), { epoch: "fmhejgz1", off: 3 });
    assert.deepEqual(positions.get("demo:user:a:b"), { epoch: "", off: 0 });
    assert.deepEqual(positions.get("demo:all"), { epoch: "zchocq9g", off: 1 });
    assert.equal(formatCursor(positions), "demo:all@zchocq9g:1,demo:user:a:b@:0,demo:user:bob@x.com@fmhejgz1:3");
    assert.equal(parseCursor("").size, 0);
  });

  test("malformed entries are refused", () => {
    for (const bad of ["nonsense", "ch@e", "ch@e:x", "@e:1", "ch@e:-1", "ch@e:"]) {
      assert.throws(() => parseCursor(bad), { code: "invalid_cursor" }, bad);
    }
  });

  test("each message once: by channel position within an epoch, and by push id", () => {
    const stream = new Stream("demo:user:100@e1:2");
    const msg = (ch, epoch, off, id) => ({ type: "msg", ch, epoch, off, id });
    assert.equal(stream.accept(msg("demo:user:100", "e1", 2, "a")), false, "at the position: seen");
    assert.equal(stream.accept(msg("demo:user:100", "e1", 3, "b")), true);
    assert.equal(stream.accept(msg("demo:user:100", "e1", 3, "b")), false, "a replayed duplicate");
    assert.equal(stream.accept(msg("demo:user:100", "e1", 5, "c")), true, "gaps in off are normal");
    assert.equal(stream.accept(msg("demo:all", "e9", 1, "c")), false, "same push through another channel");
    assert.equal(stream.positions.get("demo:all").off, 1, "…still moves that channel's position");
    assert.equal(stream.accept(msg("demo:user:100", "e2", 1, "d")), true, "a new epoch starts over");
    assert.equal(stream.cursor, "demo:all@e9:1,demo:user:100@e2:1");
  });

  test("a push to one connection is taken and leaves the cursor alone", () => {
    const stream = new Stream("demo:user:100@e1:2");
    const once = { type: "msg", ch: "demo:conn:k3x9q2ab-1f", epoch: "", off: 0, id: "k3x9q2ab-9" };
    assert.equal(stream.accept(once), true);
    assert.equal(stream.cursor, "demo:user:100@e1:2");
  });

  test("the empty position lets everything through", () => {
    const stream = new Stream("demo:all@:0");
    assert.equal(stream.accept({ ch: "demo:all", epoch: "x", off: 1, id: "1" }), true);
    stream.reset("demo:all");
    assert.equal(stream.cursor, "demo:all@:0");
  });
});

describe("heartbeat", () => {
  test("seed 003: ping after 180 s of silence, once more after 30 s, dead after 30 s more", () => {
    const clock = new FakeClock();
    const pings = [];
    let dead = null;
    const hb = new Heartbeat(SEED003_HEARTBEAT, { timers: clock, ping: () => pings.push(clock.now()), dead: () => (dead = clock.now()) });
    const t0 = clock.now();
    hb.start();
    clock.advance(179_999);
    assert.equal(pings.length, 0);
    clock.advance(1);
    assert.deepEqual(pings.map((t) => t - t0), [180_000]);
    clock.advance(30_000);
    assert.deepEqual(pings.map((t) => t - t0), [180_000, 210_000]);
    assert.equal(dead, null);
    clock.advance(30_000);
    assert.equal(dead - t0, 240_000);
    assert.equal(clock.pending, 0);
  });

  test("any frame resets the clock, even while a ping is out", () => {
    const clock = new FakeClock();
    let pings = 0;
    let dead = false;
    const hb = new Heartbeat({ interval: 10, timeout: 3, retries: 1 }, { timers: clock, ping: () => pings++, dead: () => (dead = true) });
    hb.start();
    clock.advance(9_000);
    hb.seen();
    clock.advance(9_000);
    assert.equal(pings, 0, "a push 9 s in restarted the 10 s");
    clock.advance(1_000);
    assert.equal(pings, 1);
    clock.advance(2_000);
    hb.seen(); // the pong
    clock.advance(9_999);
    assert.equal(pings, 1);
    assert.equal(dead, false);
    hb.probe();
    assert.equal(pings, 2, "probe pings at once");
    hb.probe();
    assert.equal(pings, 2, "…but not twice");
    hb.stop();
    clock.advance(100_000);
    assert.equal(dead, false);
  });

  test("defaults follow the welcome", () => {
    assert.deepEqual(heartbeatSettings(undefined, { heartbeat: 25, idle_timeout: 60 }), { interval: 25, timeout: 10, retries: 1 });
    assert.deepEqual(heartbeatSettings(undefined, { heartbeat: 4 }), { interval: 4, timeout: 4, retries: 1 });
    assert.deepEqual(heartbeatSettings(undefined, { heartbeat: 25, idle_timeout: 30 }), { interval: 15, timeout: 10, retries: 1 });
    assert.deepEqual(heartbeatSettings({ timeout: 2 }, { heartbeat: 25 }), { interval: 25, timeout: 2, retries: 1 });
    assert.deepEqual(heartbeatSettings("seed003", { heartbeat: 25 }), { interval: 180, timeout: 30, retries: 1 });
    assert.equal(heartbeatSettings(false, { heartbeat: 25 }), null);
  });
});

test("the closing frame of SSE and long-poll is an error frame with a close code", () => {
  assert.equal(isClosing({ type: "error", code: "kicked_for_good", close: 4516, message: "bye" }), true);
  assert.equal(isClosing({ type: "error", id: 7, code: "rpc_failed", message: "no" }), false, "a call's error stays a call's");
  assert.equal(isClosing({ type: "msg", close: 4516 }), false);
  assert.equal(isClosing(null), false);
});

test("close codes and HTTP refusals", () => {
  assert.equal(classify({ code: 1006 }), "retry");
  assert.equal(classify({ code: 1001 }), "retry");
  assert.equal(classify({ code: 4000 }), "retry");
  assert.equal(classify({ code: 4009 }), "retry");
  assert.equal(classify({ code: 4005 }), "resume");
  assert.equal(classify({ code: 1012 }), "restart");
  assert.equal(classify({ code: 4006 }), "token");
  assert.equal(classify({ code: 4500 }), "terminal");
  assert.equal(classify({ code: 4516 }), "terminal");
  assert.equal(classify({ status: 401, error: "token_expired" }), "token");
  assert.equal(classify({ status: 401, error: "invalid_token" }), "terminal");
  assert.equal(classify({ status: 404, error: "unknown_app" }), "terminal");
  assert.equal(classify({ status: 429, error: "user_full" }), "terminal");
  assert.equal(classify({ status: 429, error: "too_many_connections" }), "retry");
  assert.equal(classify({ status: 503, error: "server_full" }), "retry");
  assert.equal(classify({ network: true }), "retry");
});

describe("client", () => {
  let clock;
  const make = (options = {}) => {
    const client = new PushhubClient({
      url: "http://127.0.0.1:8081",
      app: "demo",
      user: "100",
      WebSocket: FakeSocket,
      timers: clock,
      random: () => 0, // no jitter: delays are the ceilings
      reconnect: { min: 1000, max: 8000 },
      transports: ["websocket"],
      fetch: () => Promise.reject(new Error("no network in unit tests")),
      ...options,
    });
    const seen = { message: [], connected: [], disconnected: [], error: [], recovered: [], state: [] };
    for (const event of Object.keys(seen)) client.on(event, (v) => seen[event].push(v));
    client.open();
    return { client, seen };
  };

  beforeEach(() => {
    clock = new FakeClock();
    FakeSocket.reset();
  });

  test("connects with app and user, and is connected on welcome (not on open)", () => {
    const { client, seen } = make();
    const ws = FakeSocket.last;
    assert.equal(ws.url.href, "ws://127.0.0.1:8081/v1/ws?app=demo&user=100");
    assert.equal(client.state, "connecting");
    ws.open();
    assert.equal(client.state, "connecting");
    ws.welcome();
    assert.equal(client.state, "connected");
    assert.equal(seen.connected[0].transport, "websocket");
    assert.deepEqual(seen.state, ["connecting", "connected"]);
    assert.equal(seen.recovered.length, 0, "a first connection without since recovers nothing");
  });

  test("rpc answers are matched by id, in any order; errors and timeouts reject", async () => {
    const { client } = make();
    FakeSocket.last.welcome();
    const ws = FakeSocket.last;
    const a = client.rpc("shop.cart.add", { sku: 1 });
    const b = client.rpc("shop.cart.list");
    const c = client.rpc("shop.fail");
    const d = client.rpc("shop.slow", null, { timeout: 500 });
    const [fa, fb, fc] = ws.sent;
    assert.deepEqual(fa, { type: "rpc", method: "shop.cart.add", data: { sku: 1 }, id: fa.id });
    assert.equal(fb.data, undefined);
    ws.receive({ type: "reply", id: fb.id, data: ["list"] });
    ws.receive({ type: "reply", id: 999, data: "nobody's" });
    ws.receive({ type: "error", id: fc.id, code: "rpc_not_enabled", message: "this app does not take rpc calls" });
    ws.receive({ type: "reply", id: fa.id, data: { ok: true } });
    assert.deepEqual(await a, { ok: true });
    assert.deepEqual(await b, ["list"]);
    await assert.rejects(c, { code: "rpc_not_enabled", message: "this app does not take rpc calls" });
    clock.advance(499);
    await tick();
    clock.advance(1);
    await assert.rejects(d, { code: "timeout" });
  });

  test("calls made before the welcome wait for it; calls in flight fail with the connection", async () => {
    const { client } = make();
    const joined = client.join("lobby");
    const ws = FakeSocket.last;
    ws.open();
    assert.equal(ws.sent.length, 0);
    ws.welcome();
    const join = ws.sent.find((f) => f.type === "join");
    assert.equal(join.room, "lobby");
    assert.equal(join.off, undefined, "no position known: joins at the top");
    ws.receive({ type: "joined", id: join.id, room: "lobby", ch: "demo:room:lobby", epoch: "r1", off: 4, recovered: true });
    assert.deepEqual(await joined, { room: "lobby", ch: "demo:room:lobby", epoch: "r1", off: 4, recovered: true });
    assert.deepEqual(client.rooms, ["lobby"]);
    const sent = client.send("200", "hi", { text: "yo" });
    assert.deepEqual(ws.sent.at(-1), { type: "send", to: "200", event: "hi", data: { text: "yo" }, id: ws.sent.at(-1).id });
    ws.drop(1006);
    await assert.rejects(sent, { code: "disconnected" });
  });

  test("reconnects with backoff and resumes from the cursor; rooms are joined again; no duplicates", async () => {
    const { client, seen } = make();
    let ws = FakeSocket.last;
    ws.welcome();
    ws.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 1, id: "m1", data: 1 });
    const joined = client.join("lobby");
    ws.receive({ type: "joined", id: ws.sent.at(-1).id, room: "lobby", ch: "demo:room:lobby", epoch: "", off: 0 });
    await joined;
    ws.drop(1006);
    assert.equal(client.state, "reconnecting");
    assert.equal(seen.disconnected[0].willReconnect, true);
    assert.equal(seen.disconnected[0].delay, 1000);
    clock.advance(999);
    assert.equal(FakeSocket.all.length, 1);
    clock.advance(1);
    assert.equal(FakeSocket.all.length, 2);
    ws = FakeSocket.last;
    assert.equal(ws.url.searchParams.get("since"), "demo:all@:0,demo:room:lobby@:0,demo:user:100@e1:1");
    ws.welcome("demo:all@:0,demo:user:100@e1:1");
    assert.deepEqual(seen.recovered, [{ recovered: true, lost: [] }]);
    assert.equal(ws.sent[0].type, "join");
    assert.equal(ws.sent[0].room, "lobby");
    ws.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 1, id: "m1", data: 1 }); // overlap
    ws.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 2, id: "m2", data: 2 });
    ws.receive({ type: "msg", ch: "demo:all", epoch: "a1", off: 1, id: "m2", data: 2 }); // same push, other channel
    assert.deepEqual(seen.message.map((m) => m.id), ["m1", "m2"]);
  });

  test("rooms are joined again from their last position; the replay comes once; a lost gap is reported", async () => {
    const { client, seen } = make();
    let ws = FakeSocket.last;
    ws.welcome();
    const joined = client.join("lobby");
    ws.receive({ type: "joined", id: ws.sent.at(-1).id, room: "lobby", ch: "demo:room:lobby", epoch: "", off: 0, recovered: true });
    assert.equal((await joined).recovered, true);
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r1", off: 1, id: "a", data: 1 });
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r1", off: 2, id: "b", data: 2 });
    ws.drop(1006);
    clock.advance(1000);
    ws = FakeSocket.last;
    ws.welcome();
    const rejoin = ws.sent[0];
    assert.deepEqual([rejoin.type, rejoin.room, rejoin.epoch, rejoin.off], ["join", "lobby", "r1", 2]);
    ws.receive({ type: "joined", id: rejoin.id, room: "lobby", ch: "demo:room:lobby", epoch: "r1", off: 2, recovered: true });
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r1", off: 2, id: "b", data: 2 }); // overlap
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r1", off: 3, id: "c", data: 3 });
    assert.deepEqual(seen.message.map((m) => m.id), ["a", "b", "c"]);
    assert.deepEqual(seen.recovered, [{ recovered: true, lost: [] }]);

    ws.drop(1006);
    clock.advance(1000);
    ws = FakeSocket.last;
    ws.welcome();
    assert.deepEqual([ws.sent[0].epoch, ws.sent[0].off], ["r1", 3]);
    // The room's epoch changed (a restart): reported, then asked for from its new start.
    ws.receive({ type: "joined", id: ws.sent[0].id, room: "lobby", ch: "demo:room:lobby", epoch: "r2", off: 9, recovered: false });
    assert.deepEqual(seen.recovered.at(-1), { recovered: false, lost: ["demo:room:lobby"], room: "lobby" });
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r2", off: 10, id: "late", data: 0 }); // the old connection's: ignored
    ws = FakeSocket.last;
    ws.welcome();
    assert.deepEqual([ws.sent[0].epoch, ws.sent[0].off], ["", 0]);
    ws.receive({ type: "joined", id: ws.sent[0].id, room: "lobby", ch: "demo:room:lobby", epoch: "", off: 0, recovered: true });
    for (let off = 1; off <= 10; off++) ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r2", off, id: `n${off}`, data: off });
    assert.deepEqual(seen.message.map((m) => m.id).slice(3), ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"]);
    assert.match(client.cursor, /demo:room:lobby@r2:10/);
    await tick();

    // A gap the history no longer covers in the same epoch is reported once, not retried.
    const sockets = FakeSocket.all.length;
    ws.drop(1006);
    clock.advance(1000);
    ws = FakeSocket.last;
    ws.welcome();
    ws.receive({ type: "joined", id: ws.sent[0].id, room: "lobby", ch: "demo:room:lobby", epoch: "r2", off: 40, recovered: false });
    await tick();
    assert.equal(FakeSocket.all.length, sockets + 1);
    assert.deepEqual(seen.recovered.at(-1), { recovered: false, lost: ["demo:room:lobby"], room: "lobby" });
    ws.receive({ type: "msg", ch: "demo:room:lobby", epoch: "r2", off: 41, id: "d", data: 4 });
    assert.equal(seen.message.at(-1).id, "d");

    await Promise.all([client.leave("lobby"), ws.receive({ type: "left", id: ws.sent.at(-1).id, room: "lobby" })]);
    const again = client.join("lobby");
    assert.equal(ws.sent.at(-1).off, undefined, "after a leave, a join starts at the top");
    ws.receive({ type: "joined", id: ws.sent.at(-1).id, room: "lobby", ch: "demo:room:lobby", epoch: "r2", off: 41, recovered: true });
    await again;
  });

  test("the backoff grows while attempts fail, and resets after a welcome", () => {
    const { seen } = make();
    FakeSocket.last.drop(1006);
    const delays = [];
    for (let i = 0; i < 5; i++) {
      const before = FakeSocket.all.length;
      let waited = 0;
      while (FakeSocket.all.length === before) {
        clock.advance(100);
        waited += 100;
      }
      delays.push(waited);
      if (i < 4) FakeSocket.last.drop(1006);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 8000]);
    FakeSocket.last.welcome();
    FakeSocket.last.drop(1001, "server shutting down");
    assert.equal(seen.disconnected.at(-1).delay, 1000);
  });

  test("terminal close codes stop reconnecting and report the error", async () => {
    const { client, seen } = make();
    const pending = client.rpc("a.b");
    FakeSocket.last.open();
    FakeSocket.last.drop(4501, 'unknown app "demo"');
    assert.equal(client.state, "closed");
    assert.equal(seen.error[0].closeCode, 4501);
    assert.equal(seen.error[0].message, 'unknown app "demo"');
    await assert.rejects(pending, { closeCode: 4501 });
    clock.advance(1_000_000);
    assert.equal(FakeSocket.all.length, 1);
  });

  test("4005 (more to replay) reconnects at once", () => {
    make();
    FakeSocket.last.welcome();
    FakeSocket.last.receive({ type: "msg", ch: "demo:all", epoch: "a", off: 7, id: "x" });
    FakeSocket.last.drop(4005, "more missed messages to replay");
    assert.equal(FakeSocket.all.length, 2);
    assert.match(FakeSocket.last.url.searchParams.get("since"), /demo:all@a:7/);
  });

  test("1012 (an upgrade) reconnects after a random delay within restartJitter, not the backoff, and resumes", () => {
    let draw = 0.5;
    const { client, seen } = make({ restartJitter: 800, random: () => draw });
    FakeSocket.last.welcome();
    FakeSocket.last.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 3, id: "m3", data: 3 });
    // Earlier failures grew the backoff; a restart close does not use it.
    FakeSocket.last.drop(1006);
    clock.advance(1000);
    FakeSocket.last.welcome("demo:all@:0,demo:user:100@e1:3");
    FakeSocket.last.drop(1012, "service restart: reconnect now");
    assert.equal(client.state, "reconnecting");
    assert.deepEqual(
      [seen.disconnected.at(-1).code, seen.disconnected.at(-1).willReconnect, seen.disconnected.at(-1).delay],
      [1012, true, 400],
    );
    const sockets = FakeSocket.all.length;
    clock.advance(399);
    assert.equal(FakeSocket.all.length, sockets);
    clock.advance(1);
    assert.equal(FakeSocket.all.length, sockets + 1);
    assert.match(FakeSocket.last.url.searchParams.get("since"), /demo:user:100@e1:3/);
    FakeSocket.last.welcome("demo:all@:0,demo:user:100@e1:3");
    FakeSocket.last.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 3, id: "m3", data: 3 }); // overlap
    FakeSocket.last.receive({ type: "msg", ch: "demo:user:100", epoch: "e1", off: 4, id: "m4", data: 4 });
    assert.deepEqual(seen.message.map((m) => m.id), ["m3", "m4"]);
    // Each client draws its own delay: spread over the window, never past it.
    draw = 0.999;
    FakeSocket.last.drop(1012);
    assert.equal(seen.disconnected.at(-1).delay, 799);
    assert.throws(() => make({ restartJitter: -1 }), TypeError);
  });

  test("seed 003 preset: three retries at 60/120/180 s, then give up", () => {
    const { client, seen } = make({ reconnect: "seed003" });
    FakeSocket.last.welcome();
    FakeSocket.last.drop(1006);
    const at = [];
    const start = clock.now();
    for (let i = 0; i < 3; i++) {
      const before = FakeSocket.all.length;
      while (FakeSocket.all.length === before) clock.advance(1000);
      at.push((clock.now() - start) / 1000);
      FakeSocket.last.drop(1006);
    }
    assert.deepEqual(at, [60, 180, 360]);
    assert.equal(client.state, "closed");
    assert.equal(seen.error.at(-1).code, "reconnect_failed");
  });

  test("heartbeat: silent link → ping, ping again, then reconnect", () => {
    const { seen } = make();
    const ws = FakeSocket.last;
    ws.welcome(); // heartbeat 25 → interval 25 s, timeout 10 s
    clock.advance(25_000);
    assert.equal(ws.sent.length, 1);
    assert.equal(ws.sent[0].type, "ping");
    clock.advance(10_000);
    assert.equal(ws.sent.filter((f) => f.type === "ping").length, 2);
    clock.advance(10_000);
    assert.ok(ws.closed, "the dead link is closed");
    assert.equal(seen.disconnected[0].reason, "heartbeat: no answer from the server");
    assert.equal(seen.disconnected[0].willReconnect, true);
    clock.advance(1000);
    assert.equal(FakeSocket.all.length, 2);
  });

  test("heartbeat: a pong (or any frame) keeps the link", () => {
    const { client } = make({ heartbeat: { interval: 5, timeout: 1 } });
    const ws = FakeSocket.last;
    ws.welcome();
    for (let i = 0; i < 10; i++) {
      clock.advance(5_000);
      const ping = ws.sent.at(-1);
      assert.equal(ping.type, "ping");
      ws.receive({ type: "pong", id: ping.id });
    }
    assert.equal(client.state, "connected");
    assert.equal(FakeSocket.all.length, 1);
  });

  test("a restarted server (new epoch) is asked for the new epoch from its start", () => {
    const { seen } = make();
    let ws = FakeSocket.last;
    ws.welcome("demo:all@:0,demo:user:100@old:5");
    ws.drop(1006);
    clock.advance(1000);
    ws = FakeSocket.last;
    ws.open();
    ws.receive({
      type: "welcome", conn: "9", app: "demo", user: "100", heartbeat: 25, recovered: false,
      cursor: "demo:all@:0,demo:user:100@new:3",
      channels: [{ ch: "demo:user:100", epoch: "new", off: 3, recovered: false }, { ch: "demo:all", epoch: "", off: 0, recovered: true }],
    });
    assert.ok(ws.closed, "that connection is dropped at once");
    assert.equal(FakeSocket.all.length, 3);
    assert.equal(FakeSocket.last.url.searchParams.get("since"), "demo:all@:0,demo:user:100@:0");
    assert.equal(seen.recovered.length, 0);
    ws = FakeSocket.last;
    ws.open();
    ws.receive({
      type: "welcome", conn: "10", app: "demo", user: "100", heartbeat: 25, recovered: true,
      cursor: "demo:all@:0,demo:user:100@:0",
      channels: [{ ch: "demo:user:100", epoch: "new", off: 3, recovered: true }, { ch: "demo:all", epoch: "", off: 0, recovered: true }],
    });
    for (let off = 1; off <= 3; off++) ws.receive({ type: "msg", ch: "demo:user:100", epoch: "new", off, id: `n${off}` });
    assert.deepEqual(seen.recovered, [{ recovered: false, lost: ["demo:user:100"] }], "what the old epoch held after 5 is unknowable");
    assert.deepEqual(seen.message.map((m) => m.id), ["n1", "n2", "n3"]);
  });

  test("4006: a fresh token from getToken, sent in the auth frame", async () => {
    let n = 0;
    make({ user: undefined, getToken: async () => `t${++n}` });
    await tick();
    let ws = FakeSocket.last;
    ws.open();
    assert.deepEqual(ws.sent[0], { type: "auth", token: "t1" });
    assert.equal(ws.url.searchParams.get("token"), null, "tokens stay out of URLs on WebSocket");
    ws.drop(4006, "token expired: reconnect with a fresh token");
    await tick();
    ws = FakeSocket.last;
    assert.equal(FakeSocket.all.length, 2);
    ws.open();
    assert.deepEqual(ws.sent[0], { type: "auth", token: "t2" });
  });

  test("the token is refreshed before the welcome's expiry", async () => {
    let n = 0;
    const { client } = make({ user: undefined, getToken: async () => `t${++n}`, heartbeat: false });
    await tick();
    const ws = FakeSocket.last;
    ws.welcome(undefined, { expires: Math.floor(clock.now() / 1000) + 120 });
    clock.advance(89_000);
    await tick();
    assert.equal(ws.sent.length, 1, "only the auth frame");
    clock.advance(1_000); // 30 s before the expiry
    await tick();
    const refresh = ws.sent.at(-1);
    assert.deepEqual(refresh, { type: "refresh", token: "t2", id: refresh.id });
    ws.receive({ type: "refreshed", id: refresh.id, expires: Math.floor(clock.now() / 1000) + 120 });
    await tick();
    assert.equal(client.state, "connected");
  });

  test("WebSocket blocked: falls back to the next transport; calls reject there", async () => {
    const polls = [];
    const fetch = async (url) => {
      polls.push(new URL(url));
      if (polls.length > 1) return new Promise(() => {}); // the long wait
      return { ok: true, status: 200, json: async () => ({ messages: [{ type: "msg", ch: "demo:all", epoch: "a", off: 1, id: "p1" }], cursor: "demo:all@a:1,demo:user:100@:0", recovered: true }) };
    };
    const { client, seen } = make({ transports: ["websocket", "poll"], fetch });
    FakeSocket.last.drop(1006); // never opened
    await tick();
    await tick();
    assert.equal(polls[0].pathname, "/v1/poll");
    assert.equal(polls[0].searchParams.get("timeout"), "0");
    assert.equal(client.transport, "poll");
    assert.deepEqual(seen.message.map((m) => m.id), ["p1"]);
    assert.equal(polls[1].searchParams.get("since"), "demo:all@a:1,demo:user:100@:0");
    assert.equal(polls[1].searchParams.get("timeout"), "25");
    await assert.rejects(client.rpc("a.b"), { code: "unsupported_transport" });
    client.close();
  });

  test("a transport that worked is not abandoned for one failure (a restart)", () => {
    make({ transports: ["websocket", "sse", "poll"], fetch: () => new Promise(() => {}) });
    FakeSocket.last.welcome();
    FakeSocket.last.drop(1006);
    clock.advance(1000);
    assert.equal(FakeSocket.all.length, 2, "WebSocket again, not SSE");
  });

  test("browser: online and a visible page retry at once, or probe a live link", () => {
    const win = new EventTarget();
    const doc = new EventTarget();
    doc.visibilityState = "hidden";
    globalThis.window = win;
    globalThis.document = doc;
    try {
      const { client } = make({ reconnect: { min: 60000, max: 60000, jitter: 0 } });
      FakeSocket.last.welcome();
      FakeSocket.last.drop(1006);
      assert.equal(FakeSocket.all.length, 1, "waiting 60 s");
      win.dispatchEvent(new Event("online"));
      assert.equal(FakeSocket.all.length, 2, "the network is back: now");
      FakeSocket.last.drop(1006);
      doc.dispatchEvent(new Event("visibilitychange"));
      assert.equal(FakeSocket.all.length, 2, "still hidden");
      doc.visibilityState = "visible";
      doc.dispatchEvent(new Event("visibilitychange"));
      assert.equal(FakeSocket.all.length, 3, "visible again: now");
      FakeSocket.last.welcome();
      win.dispatchEvent(new Event("online"));
      assert.equal(FakeSocket.last.sent.at(-1).type, "ping", "connected: check the link at once");
      client.close();
      win.dispatchEvent(new Event("online"));
      assert.equal(FakeSocket.all.length, 3, "closed clients stop listening");
    } finally {
      delete globalThis.window;
      delete globalThis.document;
    }
  });

  test("close() is final and rejects what waits", async () => {
    const { client, seen } = make();
    FakeSocket.last.welcome();
    const call = client.rpc("a.b");
    client.close();
    await assert.rejects(call, { code: "closed" });
    assert.equal(FakeSocket.last.closed.code, 1000);
    assert.equal(seen.disconnected[0].willReconnect, false);
    await assert.rejects(client.rpc("a.b"), { code: "closed" });
    clock.advance(1_000_000);
    assert.equal(FakeSocket.all.length, 1);
  });

  describe("login later (seed 003)", () => {
    const WAITING = { type: "waiting", app: "demo", heartbeat: 25, idle_timeout: 180, max_frame_bytes: 65536, login: ["ukey", "token"] };
    const welcomeFor = (id, user = "100") => ({
      type: "welcome",
      id,
      conn: "n-1",
      app: "demo",
      user,
      heartbeat: 25,
      idle_timeout: 180,
      recovered: true,
      cursor: `demo:all@e:3,demo:user:${user}@e:1`,
      channels: [],
    });
    const anonymous = (options = {}) => make({ user: undefined, loginLater: true, transports: undefined, ...options });
    const watch = (client, seen) => {
      seen.login = [];
      seen.logout = [];
      client.on("login", (v) => seen.login.push(v));
      client.on("logout", (v) => seen.logout.push(v));
    };

    test("the preset and its parts", () => {
      assert.equal(SEED003_LOGIN_RETRY, 30000);
      assert.equal(loginRetryDelay("seed003"), 30000);
      assert.equal(loginRetryDelay(undefined), null);
      assert.equal(loginRetryDelay(5000), 5000);
      assert.throws(() => loginRetryDelay(-1), TypeError);
      assert.throws(() => make({ user: undefined }), /loginLater/);
      const { client } = anonymous({ preset: "seed003", reconnect: undefined });
      assert.deepEqual(client._policy, { delays: [60000, 120000, 180000], retries: 3 });
      assert.equal(client._heartbeatOption, "seed003");
      assert.equal(client._loginRetry, 30000);
      assert.deepEqual(client._transports, ["websocket"], "a login needs a socket to send it on");
    });

    test("waiting is connected without a user; login() sends the credential and the cursor, welcome answers", async () => {
      const { client, seen } = anonymous();
      watch(client, seen);
      const ws = FakeSocket.last;
      assert.equal(ws.url.href, "ws://127.0.0.1:8081/v1/ws?app=demo");
      ws.open();
      ws.receive(WAITING);
      assert.equal(client.state, "connected");
      assert.equal(client.session, null);
      assert.equal(seen.connected[0].anonymous, true);
      const loggedIn = client.login({ ukey: "web-100" });
      const rpc = client.rpc("a.b");
      const login = ws.sent.at(-1);
      assert.deepEqual(login, { type: "login", ukey: "web-100", id: login.id });
      assert.equal(ws.sent.filter((f) => f.type === "rpc").length, 0, "calls wait for the login");
      ws.receive(welcomeFor(login.id));
      assert.deepEqual(await loggedIn, { user: "100", conn: "n-1" });
      assert.equal(client.session.user, "100");
      assert.equal(seen.login[0].user, "100");
      assert.equal(ws.sent.at(-1).type, "rpc");
      ws.receive({ type: "reply", id: ws.sent.at(-1).id, data: 1 });
      assert.equal(await rpc, 1);

      const out = client.logout();
      const logout = ws.sent.at(-1);
      assert.deepEqual(logout, { type: "logout", id: logout.id });
      ws.receive({ ...WAITING, id: logout.id });
      await out;
      assert.equal(client.session, null);
      assert.deepEqual(seen.logout, [{ user: "100" }]);
      assert.equal(client.state, "connected", "the socket stays");
      assert.equal(ws.closed, null);
    });

    test("seed 003: a refused login is retried every 30 s until it succeeds, and again after a reconnect", async () => {
      const { client, seen } = anonymous({ preset: "seed003", reconnect: undefined, login: { ukey: "web-100" } });
      watch(client, seen);
      let ws = FakeSocket.last;
      ws.open();
      ws.receive(WAITING);
      let login = ws.sent.at(-1);
      assert.equal(login.type, "login", "the login option logs in at once");
      ws.receive({ type: "error", id: login.id, code: "credential_rejected", message: "credential rejected: not yet" });
      await tick();
      assert.equal(seen.error.at(-1).code, "credential_rejected");
      assert.equal(seen.error.at(-1).delay, 30000);
      clock.advance(29999);
      assert.equal(ws.sent.length, 1);
      clock.advance(1);
      login = ws.sent.at(-1);
      assert.equal(ws.sent.length, 2);
      ws.receive({ type: "error", id: login.id, code: "login_rate_limited", message: "slow down", retry_after: 45 });
      await tick();
      clock.advance(44999);
      assert.equal(ws.sent.length, 2, "retry_after beyond the retry delay counts");
      clock.advance(1);
      login = ws.sent.at(-1);
      ws.receive(welcomeFor(login.id));
      assert.equal(client.session.user, "100");

      ws.drop(1006);
      clock.advance(60000);
      assert.equal(FakeSocket.all.length, 2, "seed 003 reconnects 60 s after the loss");
      ws = FakeSocket.last;
      ws.open();
      ws.receive(WAITING);
      login = ws.sent.at(-1);
      assert.equal(login.type, "login");
      assert.equal(login.since, "demo:all@e:3,demo:user:100@e:1", "logs in again, resuming");
    });

    test("without loginRetry a refusal rejects; a bad credential is refused at once", async () => {
      const { client } = anonymous();
      const ws = FakeSocket.last;
      ws.open();
      ws.receive(WAITING);
      const refused = client.login({ ukey: "typo" });
      ws.receive({ type: "error", id: ws.sent.at(-1).id, code: "credential_rejected", message: "no" });
      await assert.rejects(refused, { code: "credential_rejected" });
      assert.throws(() => client.login({}), TypeError);
      assert.throws(() => client.login({ ukey: "a", token: "b" }), TypeError);
      const pending = client.login({ ukey: "later" });
      client.close();
      await assert.rejects(pending, { code: "closed" });
    });
  });
});
