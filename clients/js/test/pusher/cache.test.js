// Cache channels (`cache-`, `private-cache-`): a subscriber first gets the channel's last
// event (from pushhub's history, so from any node), or `pusher:cache_miss` when there is
// none; then the live events.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startBackend } from "./backend.js";
import { APPS, GRACE_MS, NODES, api, closeAll, connect, names, record, received, skip, sleep, uniq, until } from "./harness.js";

describe("cache channels", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  /**
   * Subscribe to `name` recording from the first frame on (the cached event may come right
   * after the subscription succeeds, before `subscribe` resolves).
   */
  function watch(name, node, user) {
    const client = connect("chat", { backend, node, user });
    const channel = client.subscribe(name);
    const got = record(channel);
    return { client, channel, got };
  }

  test("an empty cache channel answers pusher:cache_miss", async () => {
    const name = uniq("cache-empty-");
    const { got } = watch(name, 0);
    await received(got, "pusher:subscription_succeeded");
    await received(got, "pusher:cache_miss");
    await sleep(GRACE_MS);
    assert.deepEqual(names(got), []);
  });

  test("the last event is replayed on subscribe, on any node, then live events follow", async () => {
    const name = uniq("cache-prices-");
    const sdk = api("chat", { node: 0 });
    await sdk.trigger(name, "price", { v: 1 });
    await sdk.trigger(name, "price", { v: 2 });
    for (let node = 0; node < NODES; node++) {
      const { got } = watch(name, node);
      const replayed = await received(got, "price", `the cached event on node ${node}`);
      assert.deepEqual(replayed.data, { v: 2 });
      await sleep(GRACE_MS);
      assert.deepEqual(names(got), ["price"], "only the last one");
      assert.equal(
        got.some((e) => e.event === "pusher:cache_miss"),
        false,
      );
    }
    const late = watch(name, NODES - 1);
    await received(late.got, "price");
    await api("chat", { node: 1 }).trigger(name, "price", { v: 3 });
    await until(() => late.got.filter((e) => e.event === "price").length === 2, "the live event");
    await sleep(GRACE_MS);
    assert.deepEqual(
      late.got.filter((e) => e.event === "price").map((e) => e.data.v),
      [2, 3],
    );
  });

  test("a private cache channel, through the auth endpoint", async () => {
    const name = uniq("private-cache-status-");
    const { got: first } = watch(name, 0, "ann");
    await received(first, "pusher:cache_miss");
    await api("chat").trigger(name, "status", { ok: true });
    await received(first, "status");
    const { got: second } = watch(name, 1, "bob");
    assert.deepEqual((await received(second, "status", "the cached status")).data, { ok: true });
  });

  test("a cached event is per app: the other app's channel of the same name misses", async () => {
    const name = uniq("cache-shared-name-");
    await api("chat").trigger(name, "price", { v: 1 });
    const client = connect("quiet");
    const got = record(client.subscribe(name));
    await received(got, "pusher:cache_miss");
    assert.deepEqual(names(got), []);
  });
});
