// Pusher webhooks: the "hooked" app's webhook is this file's own HTTP server, and every
// batch it gets must pass the `pusher` SDK's own check (`webhook(request).isValid()`,
// X-Pusher-Key and X-Pusher-Signature). Each change must arrive exactly once however many
// nodes saw it: channel_occupied / channel_vacated for a room's first and last connection,
// member_added / member_removed for a presence user's first and last connection,
// client_event with its sender, cache_miss.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import Pusher from "pusher";

import { startBackend } from "./backend.js";
import { APPS, GRACE_MS, NODES, closeAll, connect, disconnect, skip, sleep, subscribe, uniq, until } from "./harness.js";

const PORT = Number(process.env.PUSHHUB_PUSHER_WEBHOOK_PORT);
const APP = "hooked";

describe("Pusher webhooks", { skip: skip || !APPS[APP] || !PORT }, () => {
  let backend;
  let receiver;
  /** Every event of every valid batch, in arrival order. */
  const events = [];
  /** Bodies that failed the SDK's check. */
  const invalid = [];

  before(async () => {
    backend = await startBackend(APPS);
    const { app_id: appId, key, secret } = APPS[APP];
    const sdk = new Pusher({ appId, key, secret });
    receiver = createServer((request, response) => {
      let rawBody = "";
      request.on("data", (chunk) => (rawBody += chunk));
      request.on("end", () => {
        const hook = sdk.webhook({ headers: request.headers, rawBody });
        if (hook.isValid()) {
          events.push(...hook.getEvents());
        } else {
          invalid.push(rawBody);
        }
        response.end("ok");
      });
    });
    await new Promise((resolve) => receiver.listen(PORT, "127.0.0.1", resolve));
  });
  after(async () => {
    closeAll();
    await backend?.close();
    await new Promise((resolve) => receiver?.close(resolve));
  });

  /** The events about `channel` so far, as `name[:user]` strings. */
  const about = (channel) =>
    events
      .filter((e) => e.channel === channel)
      .map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));

  test("a public channel is occupied once and vacated once, across nodes", async () => {
    const name = uniq("news-");
    const clients = [];
    for (let i = 0; i < Math.max(2, NODES); i++) {
      const client = connect(APP, { backend, node: i % NODES });
      await subscribe(client, name);
      clients.push(client);
    }
    await until(() => about(name).includes("channel_occupied"), "channel_occupied");
    for (const client of clients) {
      await disconnect(client);
    }
    await until(() => about(name).includes("channel_vacated"), "channel_vacated");
    await sleep(GRACE_MS * 4);
    assert.deepEqual(about(name), ["channel_occupied", "channel_vacated"]);
    assert.deepEqual(invalid, []);
  });

  test("a presence user is added once and removed once, however many connections", async () => {
    const name = uniq("presence-hooks-");
    const ann = [];
    for (let i = 0; i < 2; i++) {
      const client = connect(APP, { backend, node: i % NODES, user: "ann" });
      await subscribe(client, name);
      ann.push(client);
    }
    const bob = connect(APP, { backend, node: (NODES - 1) % NODES, user: "bob" });
    await subscribe(bob, name);
    await until(() => about(name).includes("member_added:bob"), "bob's member_added");
    for (const client of ann) {
      await disconnect(client);
    }
    await until(() => about(name).includes("member_removed:ann"), "ann's member_removed");
    await disconnect(bob);
    await until(() => about(name).includes("channel_vacated"), "channel_vacated");
    await sleep(GRACE_MS * 4);
    const seen = about(name);
    for (const once of [
      "channel_occupied",
      "member_added:ann",
      "member_added:bob",
      "member_removed:ann",
      "member_removed:bob",
      "channel_vacated",
    ]) {
      assert.equal(seen.filter((e) => e === once).length, 1, `${once} once in ${seen}`);
    }
    assert.ok(seen.indexOf("channel_occupied") < seen.indexOf("member_added:bob"));
    assert.deepEqual(invalid, []);
  });

  test("client events and cache misses", async () => {
    const name = uniq("presence-talk-");
    const ann = connect(APP, { backend, node: 0, user: "ann" });
    const { channel } = await subscribe(ann, name);
    const bob = connect(APP, { backend, node: 1 % NODES, user: "bob" });
    await subscribe(bob, name);
    channel.trigger("client-typing", { who: "ann" });
    await until(() => events.some((e) => e.name === "client_event" && e.channel === name), "client_event");
    const event = events.find((e) => e.name === "client_event" && e.channel === name);
    assert.equal(event.event, "client-typing");
    assert.deepEqual(JSON.parse(event.data), { who: "ann" });
    assert.equal(event.user_id, "ann");
    assert.equal(event.socket_id, ann.connection.socket_id);

    const cache = uniq("cache-hooks-");
    const reader = connect(APP, { backend, node: (NODES - 1) % NODES });
    await subscribe(reader, cache);
    await until(() => about(cache).includes("cache_miss"), "cache_miss");
    assert.deepEqual(invalid, []);
  });
});
