// Public and private channels with pusher-js in Node: connecting, subscribing through the
// backend's auth endpoint, refusals, and triggers from the `pusher` server SDK reaching
// clients on every node.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startBackend } from "./backend.js";
import {
  APPS,
  NODES,
  api,
  closeAll,
  connect,
  connected,
  errorCode,
  record,
  received,
  skip,
  subscribe,
  uniq,
  until,
} from "./harness.js";

describe("public and private channels", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  test("connecting gives a socket id the SDKs accept, and an activity timeout", async () => {
    const client = connect("chat");
    const socketId = await connected(client);
    assert.match(socketId, /^\d+\.\d+$/);
    // pusher-js keeps min(its own 120 s, the server's activity_timeout): NaN without one.
    const timeout = client.connection.activityTimeout;
    assert.ok(Number.isFinite(timeout) && timeout > 0 && timeout <= 120000, `activity timeout ${timeout}`);
  });

  test("an unknown app key is refused with pusher:error 4001, and not retried", async () => {
    const stranger = connect("chat", { key: "no-such-key" });
    const errors = [];
    stranger.connection.bind("error", (error) => errors.push(error));
    await until(() => errors.find((e) => errorCode(e) === 4001), "pusher:error 4001");
    await until(() => stranger.connection.state === "disconnected", "a refused connection");
  });

  test("a public channel gets triggers, on every node", async () => {
    const name = uniq("news-");
    const clients = Array.from({ length: NODES }, (_, node) => connect("chat", { node }));
    const channels = [];
    for (const client of clients) channels.push(record((await subscribe(client, name)).channel));
    await api("chat").trigger(name, "headline", { title: "hello", n: 1 });
    for (const got of channels) {
      const event = await received(got, "headline");
      assert.deepEqual(event.data, { title: "hello", n: 1 });
    }
  });

  test("a private channel subscribes through the auth endpoint and gets triggers", async () => {
    const name = uniq("private-orders-");
    const client = connect("chat", { backend, node: NODES - 1, user: "ann" });
    const socketId = await connected(client);
    const { channel } = await subscribe(client, name);
    assert.ok(
      backend.requests.some((r) => r.channel_name === name && r.socket_id === socketId && r.status === 200),
      "pusher-js asked the backend with its socket id",
    );
    const got = record(channel);
    await api("chat").trigger(name, "shipped", { id: 7 });
    assert.deepEqual((await received(got, "shipped")).data, { id: 7 });
  });

  test("a private channel the backend refuses: pusher:subscription_error with its status", async () => {
    const refused = connect("chat", { backend, user: "ann" });
    const error = await subscribe(refused, uniq("private-forbidden-")).then(
      () => assert.fail("subscribed to a refused channel"),
      (e) => e.data,
    );
    assert.deepEqual([error.type, error.status], ["AuthError", 403]);
    const nobody = connect("chat", { backend });
    const anonymous = await subscribe(nobody, uniq("private-x-")).then(
      () => assert.fail("subscribed with nobody logged in"),
      (e) => e.data,
    );
    assert.equal(anonymous.status, 403, "nobody logged in");
  });

  test("a forged private auth is refused by the server: never subscribed, no events", async () => {
    const name = uniq("private-forged-");
    const forger = connect("chat", {
      options: {
        channelAuthorization: {
          customHandler: ({ socketId }, callback) =>
            callback(null, { auth: `${APPS.chat.key}:${"0".repeat(64)}`, socket_id: socketId }),
        },
      },
    });
    const errors = [];
    forger.connection.bind("error", (error) => errors.push(error));
    const channel = forger.subscribe(name);
    const refusals = [];
    channel.bind("pusher:subscription_error", (error) => refusals.push(error));
    const events = record(channel);
    await until(() => refusals.length > 0 || errors.length > 0, "the server's refusal (subscription_error or pusher:error)");
    assert.equal(channel.subscribed, false);
    // An honest subscriber on the same node: when the trigger reaches it, it would have
    // reached the forger too.
    const honest = connect("chat", { backend, user: "bob" });
    const witness = record((await subscribe(honest, name)).channel);
    await api("chat").trigger(name, "secret", { n: 1 });
    await received(witness, "secret");
    assert.deepEqual(
      events.filter((e) => e.event === "secret"),
      [],
    );
  });

  test("a trigger to several channels reaches each, once", async () => {
    const names = [uniq("multi-a-"), uniq("private-multi-b-"), uniq("multi-c-")];
    const got = [];
    for (const [i, name] of names.entries()) {
      const client = connect("chat", { backend, node: i, user: "ann" });
      got.push(record((await subscribe(client, name)).channel));
    }
    await api("chat").trigger(names, "fanout", { many: true });
    await api("chat").trigger(names, "marker", {});
    for (const events of got) {
      await received(events, "marker");
      assert.deepEqual(
        events.filter((e) => !e.event.startsWith("pusher:")),
        [
          { event: "fanout", data: { many: true } },
          { event: "marker", data: {} },
        ],
      );
    }
  });

  test("unsubscribing stops the events", async () => {
    const name = uniq("leave-");
    const client = connect("chat");
    const { channel } = await subscribe(client, name);
    const got = record(channel);
    await api("chat").trigger(name, "one", 1);
    await received(got, "one");
    client.unsubscribe(name);
    const other = connect("chat");
    const witness = record((await subscribe(other, name)).channel);
    await api("chat").trigger(name, "two", 2);
    await received(witness, "two");
    assert.deepEqual(
      got.map((e) => e.event),
      ["one"],
    );
  });
});
