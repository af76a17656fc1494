// User authentication (`pusher.signin()` → the backend's /broadcasting/user-auth →
// `pusher:signin`), events sent to a user (`sendToUser`, on every connection of the user on
// every node), and `terminateUserConnections`.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { nameOf, startBackend } from "./backend.js";
import { APPS, GRACE_MS, NODES, api, closeAll, connect, connected, names, record, received, skip, sleep, uniq, until, within } from "./harness.js";

describe("users", { skip }, () => {
  let backend;
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    closeAll();
    await backend?.close();
  });

  /**
   * `user` signed in on `node`: resolves once the server confirmed the sign-in and
   * pusher-js's subscription to the user's channel (`#server-to-user-ID`) succeeded.
   */
  async function signedIn(user, node, app = "chat") {
    const client = connect(app, { backend, node, user });
    const subscribed = new Promise((resolve) =>
      client.connection.bind("message", (m) => {
        if (m.event === "pusher_internal:subscription_succeeded" && m.channel === `#server-to-user-${user}`) resolve();
      }),
    );
    client.signin();
    await connected(client);
    await within(subscribed, `${user}'s sign-in and user channel`);
    assert.deepEqual(client.user.user_data, { id: user, name: nameOf(user) });
    return { client, got: record(client.user) };
  }

  test("sendToUser reaches every connection of the user, on every node, and nobody else", async () => {
    const [annId, bobId] = [uniq("ann-"), uniq("bob-")];
    const ann = [];
    for (let node = 0; node < NODES; node++) ann.push(await signedIn(annId, node));
    const bob = await signedIn(bobId, 0);
    await api("chat", { node: NODES - 1 }).sendToUser(annId, "notice", { text: "for ann" });
    await api("chat").sendToUser(bobId, "marker", {});
    for (const { got } of ann) {
      assert.deepEqual((await received(got, "notice")).data, { text: "for ann" });
    }
    await received(bob.got, "marker");
    await sleep(GRACE_MS);
    assert.deepEqual(names(bob.got), ["marker"]);
    for (const { got } of ann) assert.deepEqual(names(got), ["notice"]);
  });

  test("a user of one app is not the user of the same name in another app", async () => {
    const annId = uniq("ann-");
    const chatAnn = await signedIn(annId, 0, "chat");
    const quietAnn = await signedIn(annId, 1, "quiet");
    await api("quiet").sendToUser(annId, "quiet-notice", {});
    await api("chat").sendToUser(annId, "chat-notice", {});
    await received(quietAnn.got, "quiet-notice");
    await received(chatAnn.got, "chat-notice");
    await sleep(GRACE_MS);
    assert.deepEqual(names(chatAnn.got), ["chat-notice"]);
    assert.deepEqual(names(quietAnn.got), ["quiet-notice"]);
  });

  test("a sign-in the backend refuses: pusher:signin_error, and no user", async () => {
    const client = connect("chat", { backend });
    const errors = [];
    client.user.bind("pusher:signin_error", (error) => errors.push(error));
    client.signin();
    await connected(client);
    const error = await until(() => errors[0], "pusher:signin_error");
    assert.deepEqual([error.type, error.status], ["AuthError", 403]);
    assert.equal(client.user.user_data, null);
  });

  test("a forged sign-in is refused by the server, and gets no user's events", async () => {
    const forger = connect("chat", {
      options: {
        userAuthentication: {
          customHandler: (_params, callback) =>
            callback(null, { auth: `${APPS.chat.key}:${"0".repeat(64)}`, user_data: JSON.stringify({ id: "ann" }) }),
        },
      },
    });
    const errors = [];
    forger.connection.bind("error", (error) => errors.push(error));
    const messages = [];
    forger.connection.bind("message", (m) => messages.push(m));
    forger.signin();
    await until(
      () => errors.length > 0 || forger.connection.state === "disconnected",
      "the server's refusal of the forged sign-in",
    );
    assert.equal(
      messages.some((m) => m.event === "pusher:signin_success"),
      false,
    );
    const ann = await signedIn("ann", 0);
    await api("chat").sendToUser("ann", "notice", {});
    await received(ann.got, "notice");
    await sleep(GRACE_MS);
    assert.equal(
      messages.some((m) => m.event === "notice"),
      false,
    );
  });

  test("terminateUserConnections closes every connection of the user, for good", async () => {
    const [annId, bobId] = [uniq("ann-"), uniq("bob-")];
    const ann = [];
    for (let node = 0; node < NODES; node++) ann.push(await signedIn(annId, node));
    const bob = await signedIn(bobId, NODES - 1);
    const response = await api("chat").terminateUserConnections(annId);
    assert.equal(response.status, 200);
    for (const { client } of ann) {
      await until(() => client.connection.state === "disconnected", "ann's connection closed");
    }
    // pusher-js does not reconnect after a 4000-4099 close: still down a moment later.
    await sleep(1000);
    for (const { client } of ann) assert.equal(client.connection.state, "disconnected");
    assert.equal(bob.client.connection.state, "connected");
    await api("chat").sendToUser(bobId, "still-here", {});
    await received(bob.got, "still-here");
  });
});
