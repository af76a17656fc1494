// Laravel Echo with pusher-js as its connector, configured as a Laravel app's
// resources/js/echo.js is for a self-hosted server (`wsHost`, `wsPort`, `forceTLS: false`),
// against events a Laravel backend broadcasts through the `pusher` SDK: `listen` with Echo's
// `App.Events` namespace, private channels, `join` with here/joining/leaving, whispers
// (client events), and `toOthers()` (the X-Socket-Id Echo sends becomes `socket_id`).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import Echo from "laravel-echo";
import Pusher from "pusher-js";

import { nameOf, startBackend } from "./backend.js";
import { APPS, GRACE_MS, NODES, WS, api, closeAll, connect, connected, skip, sleep, uniq, until } from "./harness.js";

describe("Laravel Echo (pusher-js connector)", { skip }, () => {
  let backend;
  const echoes = [];
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    for (const echo of echoes) echo.disconnect();
    closeAll();
    await backend?.close();
  });

  /** An Echo of app chat on `node`, logged in to the backend as `user` (if any). */
  async function echoOf(user, node = 0) {
    const { host, port } = WS[node % NODES];
    const headers = user ? { "X-Test-User": user } : {};
    const echo = new Echo({
      broadcaster: "pusher",
      Pusher,
      key: APPS.chat.key,
      cluster: "pushhub",
      wsHost: host,
      wsPort: port,
      wssPort: port,
      forceTLS: false,
      enabledTransports: ["ws"],
      disableStats: true,
      authEndpoint: backend.url("chat", "auth"),
      auth: { headers },
      userAuthentication: { endpoint: backend.url("chat", "user-auth"), headers },
    });
    echoes.push(echo);
    await connected(echo.connector.pusher);
    return echo;
  }

  /** Resolves once Echo's `channel` is subscribed (Echo's `subscribed` callback). */
  const ready = (channel) =>
    new Promise((resolve, reject) => {
      channel.subscribed(resolve);
      channel.error(reject);
    });

  test("listen: a Laravel event (App\\Events\\…) on a public channel", async () => {
    const name = uniq("orders-");
    const echo = await echoOf(null, 0);
    const got = [];
    const channel = echo.channel(name).listen("OrderShipped", (e) => got.push(e));
    await ready(channel);
    // What Laravel broadcasts for `class OrderShipped implements ShouldBroadcast`.
    await api("chat", { node: 1 }).trigger(name, "App\\Events\\OrderShipped", { order: { id: 7 } });
    await until(() => got.length === 1, "OrderShipped");
    assert.deepEqual(got, [{ order: { id: 7 } }]);
  });

  test("private: authorized by the backend, gets `broadcastAs` events (leading dot)", async () => {
    const name = uniq("user.");
    const echo = await echoOf("ann", 1);
    const got = [];
    const channel = echo.private(name).listen(".status.changed", (e) => got.push(e));
    await ready(channel);
    await api("chat").trigger(`private-${name}`, "status.changed", { status: "paid" });
    await until(() => got.length === 1, "status.changed");
    assert.deepEqual(got, [{ status: "paid" }]);
  });

  test("private refused by the backend: Echo's error callback with the status", async () => {
    const echo = await echoOf("ann", 0);
    const error = await ready(echo.private(uniq("forbidden."))).then(
      () => assert.fail("subscribed to a refused channel"),
      (e) => e,
    );
    assert.equal(error.status, 403);
  });

  test("join: here, joining and leaving, across nodes", async () => {
    const name = uniq("room.");
    const ann = await echoOf("ann", 0);
    const log = [];
    let here = null;
    ann
      .join(name)
      .here((users) => {
        here = users;
      })
      .joining((user) => log.push(["joining", user]))
      .leaving((user) => log.push(["leaving", user]));
    await until(() => here, "ann's here()");
    assert.deepEqual(here, [{ name: nameOf("ann") }]);

    const bob = await echoOf("bob", 1);
    let bobHere = null;
    bob.join(name).here((users) => {
      bobHere = users;
    });
    await until(() => bobHere, "bob's here()");
    assert.deepEqual(bobHere.map((u) => u.name).sort(), ["Ann", "Bob"]);
    await until(() => log.length === 1, "joining(bob)");
    assert.deepEqual(log, [["joining", { name: "Bob" }]]);

    bob.leave(name);
    await until(() => log.length === 2, "leaving(bob)");
    assert.deepEqual(log[1], ["leaving", { name: "Bob" }]);
  });

  test("whisper and listenForWhisper: the others hear it, the whisperer does not", async () => {
    const name = uniq("chat.");
    const [ann, bob, cid] = [await echoOf("ann", 0), await echoOf("bob", 1), await echoOf("cid", 2)];
    const heard = { ann: [], bob: [], cid: [] };
    for (const [who, echo] of Object.entries({ ann, bob, cid })) {
      await ready(echo.private(name).listenForWhisper("typing", (e) => heard[who].push(e)));
    }
    ann.private(name).whisper("typing", { name: "Ann" });
    await until(() => heard.bob.length === 1 && heard.cid.length === 1, "bob and cid hear ann");
    await sleep(GRACE_MS);
    assert.deepEqual(heard, { ann: [], bob: [{ name: "Ann" }], cid: [{ name: "Ann" }] });
  });

  test("toOthers: the socket id Echo sends its backend excludes its own connection", async () => {
    const name = uniq("feed.");
    const [ann, bob] = [await echoOf("ann", 0), await echoOf("bob", 1)];
    const got = { ann: [], bob: [] };
    await ready(ann.private(name).listen(".posted", (e) => got.ann.push(e)));
    await ready(bob.private(name).listen(".posted", (e) => got.bob.push(e)));
    // Laravel's broadcast(...)->toOthers() passes the request's X-Socket-Id as socket_id.
    const socketId = ann.socketId();
    assert.match(socketId, /^\d+\.\d+$/);
    await api("chat").trigger(`private-${name}`, "posted", { id: 1 }, { socket_id: socketId });
    await api("chat").trigger(`private-${name}`, "posted", { id: 2 });
    await until(() => got.bob.length === 2 && got.ann.length === 1, "both posts at bob, the second at ann");
    await sleep(GRACE_MS);
    assert.deepEqual(got, { ann: [{ id: 2 }], bob: [{ id: 1 }, { id: 2 }] });
  });

  test("the same server serves plain pusher-js and Echo on one channel", async () => {
    const name = uniq("mixed-");
    const echo = await echoOf(null, 0);
    const got = [];
    await ready(echo.channel(name).listen(".ping", (e) => got.push(["echo", e])));
    const plain = connect("chat", { node: 1 });
    plain.subscribe(name).bind("ping", (e) => got.push(["pusher-js", e]));
    await until(() => plain.channel(name).subscribed, "pusher-js subscribed");
    await api("chat").trigger(name, "ping", { n: 1 });
    await until(() => got.length === 2, "both got the ping");
    assert.deepEqual(got.map(([who]) => who).sort(), ["echo", "pusher-js"]);
  });
});
