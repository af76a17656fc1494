// Presence channels with pusher-js in Node: the member list a subscriber gets, member_added
// and member_removed, and one member per user however many connections, with the members
// spread over every node (the 3-node run checks what Reverb gets wrong: a node listing only
// its own members).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { memberOf, nameOf, startBackend } from "./backend.js";
import { APPS, GRACE_MS, api, closeAll, connect, disconnect, record, received, skip, sleep, subscribe, uniq, until } from "./harness.js";

/** The members of a presence channel as `{id: info}`, from pusher-js's `Members`. */
function members(channel) {
  const all = {};
  channel.members.each((member) => {
    all[member.id] = member.info;
  });
  return all;
}

/** `{id: info}` of `users`, as the backend describes them. */
const expected = (...users) => Object.fromEntries(users.map((u) => [u, memberOf(u).user_info]));

/** The ids of the `pusher:member_added` / `_removed` events in `got`, in order. */
const memberEvents = (got) =>
  got
    .filter((e) => e.event === "pusher:member_added" || e.event === "pusher:member_removed")
    .map((e) => `${e.event === "pusher:member_added" ? "+" : "-"}${e.data.id}`);

describe("presence channels", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  /** `user` on `node`, subscribed to presence channel `name`: {client, channel, got}. */
  async function join(name, user, node) {
    const client = connect("chat", { backend, node, user });
    const { channel } = await subscribe(client, name);
    return { client, channel, got: record(channel) };
  }

  test("the member list, member_added and member_removed, across nodes", async () => {
    const name = uniq("presence-room-");
    const ann = await join(name, "ann", 0);
    assert.deepEqual(members(ann.channel), expected("ann"));
    assert.equal(ann.channel.members.count, 1);
    assert.deepEqual(ann.channel.members.me, { id: "ann", info: { name: nameOf("ann") } });

    const bob = await join(name, "bob", 1);
    assert.deepEqual(members(bob.channel), expected("ann", "bob"), "bob sees ann, who is on another node");
    const added = await received(ann.got, "pusher:member_added", "ann told bob joined");
    assert.deepEqual(added.data, { id: "bob", info: { name: "Bob" } });

    const cid = await join(name, "cid", 2);
    assert.deepEqual(members(cid.channel), expected("ann", "bob", "cid"));
    for (const { got } of [ann, bob]) {
      await until(() => memberEvents(got).includes("+cid"), "cid's member_added");
    }
    assert.deepEqual(members(ann.channel), expected("ann", "bob", "cid"));

    await disconnect(bob.client);
    for (const { got, channel } of [ann, cid]) {
      await until(() => memberEvents(got).includes("-bob"), "bob's member_removed");
      assert.deepEqual(members(channel), expected("ann", "cid"));
    }
    assert.deepEqual(memberEvents(ann.got), ["+bob", "+cid", "-bob"]);
    assert.deepEqual(memberEvents(cid.got), ["-bob"]);
  });

  test("one member per user, however many connections on however many nodes", async () => {
    const name = uniq("presence-many-");
    const bob = await join(name, "bob", 0);
    const ann1 = await join(name, "ann", 1);
    await until(() => memberEvents(bob.got).includes("+ann"), "ann's member_added");
    const ann2 = await join(name, "ann", 2);
    assert.deepEqual(members(ann2.channel), expected("ann", "bob"), "ann once in the list");
    assert.equal(ann2.channel.members.count, 2);

    // cid's arrival is the marker: by then a second +ann would have come.
    const cid = await join(name, "cid", 0);
    await until(() => memberEvents(bob.got).includes("+cid"), "cid's member_added");
    await sleep(GRACE_MS);
    assert.deepEqual(memberEvents(bob.got), ["+ann", "+cid"], "ann's second connection is not a new member");

    // One of ann's connections leaves: ann stays.
    await disconnect(ann1.client);
    await disconnect(cid.client);
    await until(() => memberEvents(bob.got).includes("-cid"), "cid's member_removed");
    await sleep(GRACE_MS);
    assert.deepEqual(memberEvents(bob.got), ["+ann", "+cid", "-cid"], "ann is still here through her other connection");
    assert.deepEqual(members(bob.channel), expected("ann", "bob"));

    const users = await (await api("chat", { node: 1 }).get({ path: `/channels/${name}/users` })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ["ann", "bob"]);

    // Her last connection leaves: now she is gone.
    await disconnect(ann2.client);
    await until(() => memberEvents(bob.got).includes("-ann"), "ann's member_removed");
    assert.deepEqual(members(bob.channel), expected("bob"));
  });

  test("a member who unsubscribes (still connected) is removed", async () => {
    const name = uniq("presence-leave-");
    const ann = await join(name, "ann", 0);
    const bob = await join(name, "bob", 1);
    await until(() => memberEvents(ann.got).includes("+bob"), "bob's member_added");
    bob.client.unsubscribe(name);
    await until(() => memberEvents(ann.got).includes("-bob"), "bob's member_removed");
    assert.deepEqual(members(ann.channel), expected("ann"));
    assert.equal(bob.client.connection.state, "connected");
  });

  test("a presence channel the backend refuses: subscription_error, and not a member", async () => {
    const name = uniq("presence-forbidden-");
    const client = connect("chat", { backend, user: "eve" });
    const error = await subscribe(client, name).then(
      () => assert.fail("joined a refused presence channel"),
      (e) => e.data,
    );
    assert.equal(error.status, 403);
    const users = await (await api("chat").get({ path: `/channels/${name}/users` })).json();
    assert.deepEqual(users, { users: [] });
  });

  test("members joining together: each is in a subscriber's list or announced to it, never both", async () => {
    const name = uniq("presence-rush-");
    const users = ["ann", "bob", "cid", "dan", "eve", "fay", "gus", "hal"];
    const joined = await Promise.all(
      users.map(async (user, node) => {
        const client = connect("chat", { backend, node, user });
        const { channel } = await subscribe(client, name);
        // Taken before any later frame is handled: what the list said, then what came.
        return { channel, listed: Object.keys(members(channel)), got: record(channel) };
      }),
    );
    await until(() => joined.every(({ channel }) => channel.members.count === users.length), "every member knows every member");
    await sleep(GRACE_MS);
    for (const { listed, got } of joined) {
      const added = memberEvents(got).map((e) => e.slice(1));
      assert.deepEqual(added.filter((id) => listed.includes(id)), [], "announced although listed");
      assert.deepEqual([...listed, ...added].sort(), [...users].sort());
    }
  });

  test("a full presence channel (quiet allows 3): a new user is refused with LimitReached and announced to nobody", async () => {
    const name = uniq("presence-full-");
    const inRoom = [];
    for (const [node, user] of ["ann", "bob", "cid"].entries()) {
      const client = connect("quiet", { backend, node, user });
      const { channel } = await subscribe(client, name);
      inRoom.push({ client, channel, got: record(channel) });
    }
    const dan = connect("quiet", { backend, node: 1, user: "dan" });
    const error = await subscribe(dan, name).then(
      () => assert.fail("joined a full presence channel"),
      (e) => e.data,
    );
    assert.equal(error.status, 403);
    assert.equal(error.type, "LimitReached");
    // A member's second connection is no new member: it gets in.
    const ann2 = connect("quiet", { backend, node: 2, user: "ann" });
    const { channel } = await subscribe(ann2, name);
    assert.equal(channel.members.count, 3);
    await sleep(GRACE_MS);
    for (const { got } of inRoom) {
      assert.deepEqual(memberEvents(got).filter((e) => e.endsWith("dan")), [], "dan was never a member");
    }
    const listed = await (await api("quiet").get({ path: `/channels/${name}/users` })).json();
    assert.deepEqual(listed.users.map((u) => u.id).sort(), ["ann", "bob", "cid"]);
  });
});
