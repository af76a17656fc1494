// The HTTP API through the `pusher` server SDK: triggers (socket_id exclusion, `info`),
// batch triggers, channel queries, and what a wrongly signed request gets. Every query is
// asked of every node: in a cluster each must see the whole cluster's subscribers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startBackend } from "./backend.js";
import {
  APPS,
  GRACE_MS,
  NODES,
  api,
  closeAll,
  connect,
  connected,
  json,
  names,
  record,
  received,
  skip,
  sleep,
  subscribe,
  uniq,
  until,
} from "./harness.js";

describe("the HTTP API through the pusher SDK", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  /** `user` (or nobody) on `node` subscribed to `name`: {client, channel, got}. */
  async function subscriber(name, node, user, app = "chat") {
    const client = connect(app, { backend, node, user });
    const { channel } = await subscribe(client, name);
    return { client, channel, got: record(channel) };
  }

  /** Ask every node `path` with `params` until each answers `expected` (presence settles). */
  async function everyNode(path, params, expected) {
    for (let node = 0; node < NODES; node++) {
      let last;
      try {
        await until(async () => {
          last = await json(api("chat", { node }).get({ path, params }));
          return JSON.stringify(last) === JSON.stringify(expected);
        }, `${path} ${JSON.stringify(params)} on node ${node}`);
      } catch (error) {
        assert.deepEqual(last, expected, `${error.message}: node ${node}`);
      }
    }
  }

  test("trigger with socket_id: every subscriber but that connection", async () => {
    const name = uniq("toothers-");
    const sender = await subscriber(name, 0);
    const others = [await subscriber(name, 0), await subscriber(name, 1), await subscriber(name, 2)];
    const socketId = await connected(sender.client);
    const sdk = api("chat", { node: 1 });
    await sdk.trigger(name, "saved", { id: 1 }, { socket_id: socketId });
    await sdk.trigger(name, "marker", {});
    for (const { got } of others) {
      await received(got, "marker");
      assert.deepEqual(names(got), ["saved", "marker"]);
    }
    await received(sender.got, "marker");
    await sleep(GRACE_MS);
    assert.deepEqual(names(sender.got), ["marker"], "the excluded connection never gets it");
  });

  test("triggerBatch: each event to its channel, with its own socket_id", async () => {
    const [a, b] = [uniq("batch-a-"), uniq("private-batch-b-")];
    const onA = await subscriber(a, 0);
    const onB = await subscriber(b, 1, "ann");
    const excluded = await subscriber(b, 2, "bob");
    const answer = await api("chat").triggerBatch([
      { channel: a, name: "first", data: JSON.stringify({ n: 1 }) },
      { channel: b, name: "second", data: JSON.stringify({ n: 2 }) },
      { channel: b, name: "third", data: JSON.stringify({ n: 3 }), socket_id: excluded.client.connection.socket_id },
      { channel: a, name: "fourth", data: "plain text" },
    ]);
    assert.equal(answer.status, 200);
    await received(onA.got, "fourth");
    assert.deepEqual(
      onA.got.filter((e) => !e.event.startsWith("pusher:")).map((e) => [e.event, e.data]),
      [
        ["first", { n: 1 }],
        ["fourth", "plain text"],
      ],
    );
    await received(onB.got, "third");
    assert.deepEqual(names(onB.got), ["second", "third"]);
    await api("chat").trigger(b, "marker", {});
    await received(excluded.got, "marker");
    assert.deepEqual(names(excluded.got), ["second", "marker"]);
  });

  test("trigger with info: the channels' counts in the answer", async () => {
    const name = uniq("presence-info-");
    await subscriber(name, 0, "ann");
    await subscriber(name, 1, "ann");
    await subscriber(name, 2, "bob");
    await everyNode(`/channels/${name}`, { info: "user_count" }, { occupied: true, user_count: 2 });
    const answer = await json(api("chat").trigger(name, "x", {}, { info: "user_count,subscription_count" }));
    assert.deepEqual(answer, { channels: { [name]: { user_count: 2, subscription_count: 3 } } });
  });

  test("GET /channels with filter_by_prefix and info=user_count", async () => {
    const prefix = uniq("presence-list-");
    const [one, two, plain] = [`${prefix}-one`, `${prefix}-two`, uniq("list-")];
    await subscriber(one, 0, "ann");
    await subscriber(one, 1, "bob");
    await subscriber(one, 2, "bob");
    await subscriber(two, 1, "cid");
    await subscriber(plain, 2);
    await everyNode("/channels", { filter_by_prefix: prefix, info: "user_count" }, {
      channels: { [one]: { user_count: 2 }, [two]: { user_count: 1 } },
    });
    await everyNode("/channels", { filter_by_prefix: prefix }, { channels: { [one]: {}, [two]: {} } });
    const all = await json(api("chat").get({ path: "/channels" }));
    assert.deepEqual(all.channels[plain], {}, "unfiltered, every occupied channel");
    // user_count is for presence channels only.
    const refused = await api("chat")
      .get({ path: "/channels", params: { filter_by_prefix: "list-", info: "user_count" } })
      .then(
        () => assert.fail("user_count of non-presence channels"),
        (error) => error.status,
      );
    assert.equal(refused, 400);
  });

  test("GET /channels/NAME with user_count and subscription_count, and an empty channel", async () => {
    const name = uniq("presence-one-");
    await subscriber(name, 0, "ann");
    await subscriber(name, 1, "ann");
    const bob = await subscriber(name, 2, "bob");
    await everyNode(`/channels/${name}`, { info: "user_count,subscription_count" }, {
      occupied: true,
      user_count: 2,
      subscription_count: 3,
    });
    bob.client.disconnect();
    await everyNode(`/channels/${name}`, { info: "user_count,subscription_count" }, {
      occupied: true,
      user_count: 1,
      subscription_count: 2,
    });
    const publicName = uniq("count-");
    await subscriber(publicName, 0);
    await subscriber(publicName, 1);
    await everyNode(`/channels/${publicName}`, { info: "subscription_count" }, { occupied: true, subscription_count: 2 });
    await everyNode(`/channels/${uniq("nobody-")}`, {}, { occupied: false });
  });

  test("GET /channels/presence-NAME/users: one entry per user", async () => {
    const name = uniq("presence-users-");
    await subscriber(name, 0, "ann");
    await subscriber(name, 1, "bob");
    await subscriber(name, 2, "ann");
    for (let node = 0; node < NODES; node++) {
      const users = await json(api("chat", { node }).get({ path: `/channels/${name}/users` }));
      assert.deepEqual(
        users.users.map((u) => u.id).sort(),
        ["ann", "bob"],
        `node ${node}`,
      );
    }
    const notPresence = await api("chat")
      .get({ path: `/channels/${uniq("plain-")}/users` })
      .then(
        () => assert.fail("users of a non-presence channel"),
        (error) => error.status,
      );
    assert.equal(notPresence, 400);
  });

  test("the two apps are apart: same channel name, separate subscribers", async () => {
    const name = uniq("shared-");
    const chat = await subscriber(name, 0, undefined, "chat");
    const quiet = await subscriber(name, 1, undefined, "quiet");
    await api("chat").trigger(name, "for-chat", {});
    await api("quiet").trigger(name, "for-quiet", {});
    await received(chat.got, "for-chat");
    await received(quiet.got, "for-quiet");
    await sleep(GRACE_MS);
    assert.deepEqual(names(chat.got), ["for-chat"]);
    assert.deepEqual(names(quiet.got), ["for-quiet"]);
  });

  test("wrong credentials: 401, and nothing is published", async () => {
    const name = uniq("signed-");
    const { got } = await subscriber(name, 0);
    const statusOf = (promise) =>
      promise.then(
        (response) => assert.fail(`accepted with status ${response.status}`),
        (error) => error.status,
      );
    assert.equal(await statusOf(api("chat", { secret: "not-the-secret" }).trigger(name, "forged", {})), 401);
    assert.equal(await statusOf(api("chat", { key: "not-a-key" }).trigger(name, "forged", {})), 401);
    // The other app's key and secret for this app's id.
    assert.equal(
      await statusOf(api("chat", { key: APPS.quiet.key, secret: APPS.quiet.secret }).trigger(name, "forged", {})),
      401,
    );
    assert.equal(await statusOf(api("chat", { secret: "not-the-secret" }).get({ path: "/channels" })), 401);
    await api("chat").trigger(name, "marker", {});
    await received(got, "marker");
    assert.deepEqual(names(got), ["marker"]);
  });
});
