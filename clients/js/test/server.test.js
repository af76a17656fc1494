// The SDK against the real pushhub binary (PUSHHUB_BIN, or a cargo build), in Node with
// the `ws` package as its WebSocket: every transport, resume, restart, tokens, heartbeat.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { connect } from "../src/pushhub.js";
import { binaryPath, missing, startServer, token, until } from "./helpers/server.js";

const SECRET = "pushhub-js-tests-secret-0123456789abcdef";
const CONFIG = `
[apps.demo]
auth = "none"
client_send = "open"

[apps.tok]
auth = "token"
token_secrets = ["${SECRET}"]

[apps.later]
auth = "token"
token_secrets = ["${SECRET}"]
login_later = true
`;

let WebSocket = null;
try {
  ({ default: WebSocket } = await import("ws"));
} catch {
  // reported below
}
const skip = missing(
  !binaryPath()
    ? "no pushhub binary (set PUSHHUB_BIN or run cargo build)"
    : !WebSocket
      ? "the ws package is not installed (npm ci in clients/js)"
      : null,
);

/** A client that records everything it reports (closed when its test ends, pass or fail). */
function open(server, options = {}) {
  const client = connect({
    url: server.url,
    app: "demo",
    user: "100",
    WebSocket,
    reconnect: { min: 50, max: 400 },
    ...options,
  });
  const seen = { message: [], connected: [], disconnected: [], error: [], recovered: [] };
  for (const event of Object.keys(seen)) client.on(event, (value) => seen[event].push(value));
  (server.clients ??= []).push(client);
  return { client, seen, data: () => seen.message.map((m) => m.data) };
}

/** A test with a server of its own (tests run concurrently, and some push to everyone). */
function serverTest(name, body) {
  test(name, async () => {
    const server = await startServer({ config: CONFIG });
    try {
      await body(server);
    } finally {
      for (const client of server.clients ?? []) client.close();
      await server.stop();
    }
  });
}

describe("against a real server", { skip: skip ?? false, concurrency: true, timeout: 60000 }, () => {

  serverTest("login later (seed 003): anonymous until login, a refused login may be retried, logout keeps the socket", async (server) => {
    const { client, seen } = open(server, { app: "later", user: undefined, loginLater: true });
    await until(() => client.state === "connected", "connected");
    assert.equal(client.session, null);
    assert.equal(seen.connected[0].anonymous, true);
    assert.equal((await server.push({ app: "later", to: "*", data: "nobody" })).delivered, 0);
    await assert.rejects(client.login({ token: "not-a-jwt" }), { code: "invalid_token" });
    const who = await client.login({ token: token(SECRET, "later", "7", 60) });
    assert.equal(who.user, "7");
    assert.equal(client.session.user, "7");
    assert.equal((await server.push({ app: "later", to: "*", data: "for 7" })).delivered, 1);
    await until(() => seen.message.length === 1, "the message");
    await client.logout();
    assert.equal(client.session, null);
    assert.equal((await server.push({ app: "later", to: "7", data: "gone" })).delivered, 0);
    assert.equal(client.state, "connected");
    assert.equal(seen.disconnected.length, 0, "the socket stayed");
  });

  serverTest("WebSocket: receive, rpc error, rooms, send", async (server) => {
    const { client, seen, data } = open(server, { user: "ws-1" });
    await until(() => client.state === "connected", "connected");
    assert.equal(client.transport, "websocket");
    await server.push({ to: "ws-1", event: "order", data: { id: 1 } });
    await server.push({ to: "*", data: "everyone" });
    await until(() => seen.message.length === 2, "two messages");
    assert.deepEqual(data(), [{ id: 1 }, "everyone"]);
    assert.equal(seen.message[0].event, "order");
    assert.equal(seen.message[0].ch, "demo:user:ws-1");

    await assert.rejects(client.rpc("shop.cart.add", { sku: 1 }), { code: "rpc_not_enabled" });

    const joined = await client.join("lobby");
    assert.equal(joined.ch, "demo:room:lobby");
    await server.push({ room: "lobby", data: "room message" });
    await until(() => seen.message.length === 3, "the room message");
    assert.equal(seen.message[2].ch, "demo:room:lobby");
    assert.deepEqual(await client.leave("lobby"), { room: "lobby" });
    assert.deepEqual(client.rooms, []);

    const sent = await client.send("ws-1", "note", { text: "to myself" });
    assert.equal(sent.ch, "demo:user:ws-1");
    await until(() => seen.message.length === 4, "the sent message");
    assert.equal(seen.message[3].from, "ws-1");
    assert.deepEqual(seen.message[3].data, { text: "to myself" });
    client.close();
  });

  serverTest("WebSocket: a room is joined again after a reconnect and resumes, each message once", async (server) => {
    const { client, seen, data } = open(server, { user: "room-1", reconnect: { min: 300, max: 300, jitter: 0 } });
    await until(() => client.state === "connected", "connected");
    const joined = await client.join("resume");
    assert.equal(joined.recovered, true);
    await server.push({ room: "resume", data: 1 });
    await until(() => seen.message.length === 1, "message 1");
    const kicked = await server.api("POST", "/v1/disconnect", { app: "demo", user: "room-1" });
    assert.equal(kicked.status, 200);
    // While it is away (300 ms): three messages to the room only.
    for (const n of [2, 3, 4]) await server.push({ room: "resume", data: n });
    await until(() => seen.message.length >= 4, "the missed room messages");
    await server.push({ room: "resume", data: 5 });
    await until(() => seen.message.length >= 5, "five messages");
    await new Promise((r) => setTimeout(r, 200)); // a duplicate would show up by now
    assert.deepEqual(data(), [1, 2, 3, 4, 5]);
    assert.ok(seen.message.every((m) => m.ch === "demo:room:resume"));
    assert.deepEqual(seen.recovered, [{ recovered: true, lost: [] }]);
    assert.deepEqual(client.rooms, ["resume"]);
    assert.match(client.cursor, /demo:room:resume@[a-z0-9]+:5/);
    client.close();
  });

  for (const transport of ["websocket", "sse", "poll"]) {
    serverTest(`${transport}: kicked, resumes with everything once, in order`, async (server) => {
      const user = `resume-${transport}`;
      const { client, seen, data } = open(server, { user, transports: [transport], reconnect: { min: 300, max: 300, jitter: 0 } });
      await until(() => client.state === "connected", "connected");
      await server.push({ to: user, data: 1 });
      await until(() => seen.message.length === 1, "message 1");
      const kicked = await server.api("POST", "/v1/disconnect", { app: "demo", user });
      assert.equal(kicked.status, 200);
      // While it is away (300 ms): its own channel, everyone, and one push through both.
      await server.push({ to: user, data: 2 });
      await server.push({ to: "*", data: 3 });
      await server.push({ to: `${user},*`, data: 4 });
      await until(() => seen.message.length >= 4, "the missed messages");
      await server.push({ to: user, data: 5 });
      await until(() => seen.message.length >= 5, "five messages");
      await new Promise((r) => setTimeout(r, 200)); // a duplicate would show up by now
      assert.deepEqual(data(), [1, 2, 3, 4, 5]);
      assert.ok(seen.recovered.every((r) => r.recovered), JSON.stringify(seen.recovered));
      if (transport !== "poll") {
        // Long-poll has no connection to cut between two requests; the others reconnected.
        assert.deepEqual(seen.recovered, [{ recovered: true, lost: [] }]);
      }
      // SSE and a poll in flight end with the kick's closing frame: the same code as WebSocket's.
      assert.ok(seen.disconnected.every((d) => d.code === 4009 && d.willReconnect), JSON.stringify(seen.disconnected));
      if (transport !== "poll") assert.equal(seen.disconnected.length, 1);
      client.close();
    });

    serverTest(`${transport}: kicked for good (4516), stops and does not come back`, async (server) => {
      const user = `gone-${transport}`;
      const { client, seen } = open(server, { user, transports: [transport], pollTimeout: 5, reconnect: { min: 50, max: 50, jitter: 0 } });
      await until(() => client.state === "connected", "connected");
      // Long-poll: the first answer comes at once; let the waiting poll that follows start.
      await new Promise((r) => setTimeout(r, 200));
      const kicked = await server.api("POST", "/v1/disconnect", { app: "demo", user, reconnect: false, reason: "banned" });
      assert.deepEqual(kicked.body, { disconnected: 1 });
      await until(() => client.state === "closed", "the client gives up");
      assert.equal(seen.disconnected.length, 1);
      assert.deepEqual(
        [seen.disconnected[0].code, seen.disconnected[0].reason, seen.disconnected[0].willReconnect],
        [4516, "banned", false],
      );
      assert.equal(seen.error.length, 1);
      assert.equal(seen.error[0].closeCode, 4516);
      // Were it to reconnect, it would have by now (50 ms backoff).
      await new Promise((r) => setTimeout(r, 500));
      const online = await server.api("GET", "/v1/apps/demo/users");
      assert.ok(!online.body.users.some((u) => u.user === user), JSON.stringify(online.body));
      assert.equal(client.state, "closed");
    });
  }

  serverTest("sse and poll refuse calls clearly", async (server) => {
    const { client } = open(server, { user: "sse-calls", transports: ["sse"] });
    await until(() => client.state === "connected", "connected");
    await assert.rejects(client.rpc("a.b"), { code: "unsupported_transport", message: /rpc needs a WebSocket connection/ });
    await assert.rejects(client.join("r"), { code: "unsupported_transport" });
    await assert.rejects(client.send("x", "e", 1), { code: "unsupported_transport" });
    client.close();
  });

  serverTest("an unknown app is terminal: no reconnect, an error", async (server) => {
    for (const transport of ["websocket", "sse", "poll"]) {
      const { client, seen } = open(server, { app: "nope", transports: [transport] });
      await until(() => client.state === "closed", `${transport} gives up`);
      assert.equal(seen.error.length, 1);
      assert.match(seen.error[0].message, /unknown app "nope"/);
      assert.ok(seen.error[0].closeCode === 4501 || seen.error[0].status === 404);
    }
  });

  serverTest("token app: an expired token is replaced from getToken; refresh before expiry keeps the connection", async (server) => {
    let calls = 0;
    const getToken = async () => token(SECRET, "tok", "alice", ++calls === 1 ? 4 : 3600);
    const { client, seen } = open(server, { app: "tok", user: undefined, token: token(SECRET, "tok", "alice", -60), getToken });
    await until(() => client.state === "connected", "connected with a fresh token");
    assert.equal(calls, 1, "the expired token was refused (4006) and a fresh one fetched");
    assert.equal(client.session.user, "alice");
    const conn = client.session.conn;
    // That token lives 4 s (+5 s skew): the client refreshes it in-band before then.
    await until(() => calls === 2, "a refresh", 8000);
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(client.session.conn, conn, "the same connection outlived the first token");
    await server.push({ app: "tok", to: "alice", data: "still here" });
    await until(() => seen.message.length === 1, "a message");
    assert.deepEqual(seen.error, []);
    client.close();
  });
});

describe("against a server that dies", { skip: skip ?? false, concurrency: true, timeout: 60000 }, () => {
  test("upgraded (pushhub upgrade): every transport comes back within restartJitter after 1012 and resumes, each message once", async () => {
    const server = await startServer({ config: CONFIG });
    let successor = null;
    try {
      // A reconnect on the error backoff would wait 5 s: the restart close must not use it.
      const clients = ["websocket", "sse", "poll"].map((transport) => ({
        transport,
        ...open(server, { user: `up-${transport}`, transports: [transport], restartJitter: 300, reconnect: { min: 5000, max: 5000, jitter: 0 } }),
      }));
      await until(() => clients.every(({ client }) => client.state === "connected"), "connected");
      const push = async (n) => {
        try {
          await server.push({ to: "*", data: n });
        } catch (error) {
          // A keep-alive connection the old process closed as it drained: sent again once.
          if (!String(error?.cause ?? error).includes("closed")) throw error;
          await server.push({ to: "*", data: n });
        }
      };
      for (let n = 0; n < 5; n++) await push(n);
      const upgraded = await server.api("POST", "/v1/admin/upgrade");
      assert.equal(upgraded.status, 200, JSON.stringify(upgraded.body));
      successor = upgraded.body.pid;
      const back = Date.now();
      for (let n = 5; n < 10; n++) await push(n);
      const report = () =>
        clients.map(({ transport, client, seen }) => `${transport}: ${client.state}, ${seen.message.length} messages, ${JSON.stringify(seen.disconnected)}`).join("; ");
      // The wall clock only bounds a hang: on a loaded CI machine the hand-over alone can take
      // seconds. That nobody waited for the error backoff is shown by each close's own delay.
      await until(() => clients.every(({ seen }) => seen.message.length >= 10), "every message", 20000).catch((error) => {
        throw new Error(`${error.message} (${Date.now() - back} ms after the upgrade): ${report()}`);
      });
      await until(() => clients.every(({ client }) => client.state === "connected"), "all back", 20000);
      await new Promise((r) => setTimeout(r, 200));
      for (const { transport, seen, data } of clients) {
        assert.deepEqual(data(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], transport);
        // A long-poller between two requests has nothing to close: its next poll simply
        // reaches the new process. A connection that was open is closed with 1012.
        const restart = seen.disconnected.find((d) => d.code === 1012);
        assert.ok(restart || (transport === "poll" && seen.disconnected.length === 0), `${transport} saw no 1012: ${JSON.stringify(seen.disconnected)}`);
        if (restart) assert.ok(restart.willReconnect && restart.delay >= 0 && restart.delay <= 300, `${transport}: ${JSON.stringify(restart)}`);
        assert.deepEqual(seen.error, [], transport);
      }
    } finally {
      for (const client of server.clients ?? []) client.close();
      if (successor) process.kill(successor, "SIGKILL");
      await server.stop();
    }
  });

  test("killed and restarted on the same ports: reconnects, recovered:false, new epoch read from its start", async () => {
    let server = await startServer({ config: CONFIG });
    const first = server;
    try {
      const { client, seen, data } = open(server, { user: "crash" });
      await until(() => client.state === "connected", "connected");
      await server.push({ to: "crash", data: "before 1" });
      await server.push({ to: "*", data: "before 2" });
      await until(() => seen.message.length === 2, "two messages");
      await server.kill();
      await until(() => client.state === "reconnecting", "noticed");
      server = await server.restart();
      // Pushed before the client is back: kept in the new epoch, which the client reads from offset 1.
      await server.push({ to: "crash", data: "after 1" });
      await until(() => seen.recovered.length === 1, "the resume");
      await server.push({ to: "crash", data: "after 2" });
      await until(() => seen.message.length === 4, "four messages");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(data(), ["before 1", "before 2", "after 1", "after 2"]);
      assert.equal(seen.recovered[0].recovered, false, "the old epochs' tail is unknowable");
    } finally {
      for (const client of first.clients) client.close();
      await server.stop();
    }
  });

  test("killed and restarted: a joined room is joined again and its new epoch read from its start", async () => {
    let server = await startServer({ config: CONFIG });
    const first = server;
    try {
      const { client, seen, data } = open(server, { user: "crash-room" });
      await until(() => client.state === "connected", "connected");
      await client.join("den");
      await server.push({ room: "den", data: "before" });
      await until(() => seen.message.length === 1, "one message");
      await server.kill();
      await until(() => client.state === "reconnecting", "noticed");
      server = await server.restart();
      // Pushed before the client is back (most likely): kept in the room's new epoch.
      await server.push({ room: "den", data: "after 1" });
      await until(() => seen.message.length === 2, "the room's new epoch, from its start");
      await server.push({ room: "den", data: "after 2" });
      await until(() => seen.message.length === 3, "three messages");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(data(), ["before", "after 1", "after 2"]);
      assert.deepEqual(client.rooms, ["den"]);
    } finally {
      for (const client of first.clients) client.close();
      await server.stop();
    }
  });

  test("heartbeat: a frozen server (half-open link) is detected and left", async () => {
    const server = await startServer({ config: CONFIG });
    try {
      const { client, seen } = open(server, { user: "frozen", heartbeat: { interval: 1, timeout: 0.5 } });
      await until(() => client.state === "connected", "connected");
      const started = Date.now();
      process.kill(server.pid, "SIGSTOP");
      try {
        await until(() => seen.disconnected.length === 1, "the dead link", 5000);
      } finally {
        process.kill(server.pid, "SIGCONT");
      }
      const took = Date.now() - started;
      assert.equal(seen.disconnected[0].reason, "heartbeat: no answer from the server");
      assert.ok(took >= 1500 && took < 8000, `detected after ${took} ms (1 s + 2 × 0.5 s, and a loaded machine)`);
      await until(() => client.state === "connected", "connected again");
    } finally {
      for (const client of server.clients ?? []) client.close();
      await server.stop();
    }
  });
});
