// Client events (`client-` prefix, pusher-js `channel.trigger`) between clients: delivered to
// the channel's other subscribers on every node and never back to the sender; refused on
// public channels, and on every channel of an app that does not enable them ("quiet").
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startBackend } from "./backend.js";
import { APPS, GRACE_MS, api, closeAll, connect, names, record, received, skip, sleep, subscribe, uniq, until } from "./harness.js";

describe("client events", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  /** `users` of `app` subscribed to `name`, the i-th on node i (modulo the node count). */
  async function subscribers(app, name, users) {
    const all = [];
    for (const [node, user] of users.entries()) {
      const client = connect(app, { backend, node, user });
      const { channel } = await subscribe(client, name);
      all.push({ client, channel, got: record(channel) });
    }
    return all;
  }

  /** Connection errors (`pusher:error`) `client` gets from now on. */
  function errorsOf(client) {
    const errors = [];
    client.connection.bind("error", (error) => errors.push(error));
    return errors;
  }

  for (const kind of ["private", "presence"]) {
    test(`on a ${kind} channel: to the others, on every node, not to the sender`, async () => {
      const name = uniq(`${kind}-chat-`);
      // With 3 nodes, dan shares the sender's node and bob and cid are on the others.
      const [sender, ...others] = await subscribers("chat", name, ["ann", "bob", "cid", "dan"]);
      const senders = [];
      for (const { channel } of others) channel.bind("client-typing", (_data, metadata) => senders.push(metadata?.user_id));
      assert.equal(sender.channel.trigger("client-typing", { text: "hi" }), true);
      assert.equal(sender.channel.trigger("client-done", {}), true);
      for (const { got } of others) {
        await received(got, "client-done");
        const typing = got.find((e) => e.event === "client-typing");
        assert.deepEqual(typing.data, { text: "hi" });
        assert.deepEqual(names(got), ["client-typing", "client-done"]);
      }
      // Pusher adds the sender's user id to client events on presence channels.
      assert.deepEqual(senders, others.map(() => (kind === "presence" ? "ann" : undefined)));
      await sleep(GRACE_MS);
      assert.deepEqual(names(sender.got), [], "the sender does not get its own client events");
    });
  }

  test("on a public channel: refused with pusher:error, delivered to nobody", async () => {
    const name = uniq("public-chat-");
    const [sender, other] = await subscribers("chat", name, ["ann", "bob"]);
    const errors = errorsOf(sender.client);
    sender.channel.trigger("client-typing", { text: "hi" });
    await until(() => errors.find((e) => e.type === "PusherError"), "pusher:error for the client event");
    // The event was refused before the error was sent: a trigger after it is the marker.
    await api("chat").trigger(name, "marker", {});
    await received(other.got, "marker");
    assert.deepEqual(names(other.got), ["marker"]);
  });

  test("in an app without client_events: refused even on private channels", async () => {
    const name = uniq("private-quiet-");
    const [sender, other] = await subscribers("quiet", name, ["ann", "bob"]);
    const errors = errorsOf(sender.client);
    sender.channel.trigger("client-typing", { text: "hi" });
    await until(() => errors.find((e) => e.type === "PusherError"), "pusher:error for the client event");
    await api("quiet").trigger(name, "marker", {});
    await received(other.got, "marker");
    assert.deepEqual(names(other.got), ["marker"]);
  });

  test("past the app's client_events_per_second (5 for chat): refused with 4301, the rest relayed", async () => {
    const name = uniq("private-rate-");
    const [sender, other] = await subscribers("chat", name, ["ann", "bob"]);
    const errors = errorsOf(sender.client);
    for (let i = 0; i < 8; i++) sender.channel.trigger("client-burst", { i });
    await until(() => errors.length > 0, "pusher:error for the events past the rate");
    await api("chat").trigger(name, "marker", {});
    await received(other.got, "marker");
    await sleep(GRACE_MS);
    const refused = errors.filter((e) => e.data?.code === 4301);
    assert.ok(refused.length >= 1, JSON.stringify(errors));
    assert.equal(refused.length, errors.length, JSON.stringify(errors));
    const relayed = other.got.filter((e) => e.event === "client-burst").map((e) => e.data.i);
    assert.deepEqual(relayed, [...Array(8 - refused.length).keys()], "the first ones, in order");
  });

  test("an event without the client- prefix is never relayed", async () => {
    const name = uniq("private-prefix-");
    const [sender, other] = await subscribers("chat", name, ["ann", "bob"]);
    // pusher-js refuses it itself; the raw send is what a broken client would do.
    assert.throws(() => sender.channel.trigger("typing", {}), /client-/);
    sender.client.send_event("typing", { text: "hi" }, name);
    sender.channel.trigger("client-marker", {});
    await received(other.got, "client-marker");
    await sleep(GRACE_MS);
    assert.deepEqual(names(other.got), ["client-marker"]);
  });
});
