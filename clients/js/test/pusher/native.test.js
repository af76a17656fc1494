// Pusher and pushhub's own clients share an app (docs/pusher.md's channel mapping): Pusher
// channel X is the app's room X, and `#server-to-user-U` is user U's channel. So a native
// client (this repository's SDK, clients/js/src) in room X gets the `pusher` SDK's triggers
// to X, and a native push to user U reaches U's signed-in pusher-js connections.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { connect as connectNative } from "../../src/pushhub.js";
import { startBackend } from "./backend.js";
import { API, APPS, NODES, WS, api, closeAll, connect, connected, record, received, skip, subscribe, uniq, until, within } from "./harness.js";

/** An HS256 token of `app` for `user` that may join any room. */
function token(app, user) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const claims = { sub: user, app, rooms: ["*"], exp: Math.floor(Date.now() / 1000) + 600 };
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", APPS[app].token_secret).update(head).digest("base64url")}`;
}

/** A Pusher event's data as the native client shows it: the JSON text, or already parsed. */
const parsed = (data) => (typeof data === "string" ? JSON.parse(data) : data);

describe("Pusher and native clients of one app", { skip }, () => {
  let backend;
  const natives = [];
  before(async () => {
    backend = await startBackend(APPS);
  });
  after(async () => {
    for (const client of natives) client.close();
    closeAll();
    await backend?.close();
  });

  /** A native client of app chat as `user` on `node`, connected; its messages recorded. */
  async function native(user, node) {
    const { host, port } = WS[node % NODES];
    const client = connectNative({ url: `http://${host}:${port}`, app: "chat", token: token("chat", user), WebSocket, transports: ["websocket"] });
    natives.push(client);
    const messages = [];
    client.on("message", (message) => messages.push(message));
    await until(() => client.state === "connected", `native ${user} connected`);
    return { client, messages };
  }

  test("a trigger to Pusher channel X reaches native clients in room X", async () => {
    const room = uniq("lobby-");
    const { client, messages } = await native("nat", NODES - 1);
    const joined = await client.join(room);
    assert.equal(joined.ch, `chat:room:${room}`);
    const { channel } = await subscribe(connect("chat", { node: 0 }), room);
    const got = record(channel);
    await api("chat", { node: 1 }).trigger(room, "order", { id: 7 });
    await received(got, "order");
    const message = await until(() => messages.find((m) => m.event === "order"), "the trigger at the native client");
    assert.equal(message.ch, `chat:room:${room}`);
    assert.deepEqual(parsed(message.data), { id: 7 });
  });

  test("a native push to user U reaches U's signed-in pusher-js connections", async () => {
    const user = uniq("u-");
    const pusher = connect("chat", { backend, node: 1, user });
    const subscribed = new Promise((resolve) =>
      pusher.connection.bind("message", (m) => {
        if (m.event === "pusher_internal:subscription_succeeded" && m.channel === `#server-to-user-${user}`) resolve();
      }),
    );
    pusher.signin();
    await connected(pusher);
    await within(subscribed, "the sign-in");
    const got = record(pusher.user);
    const { host, port } = API[0];
    const response = await fetch(`http://${host}:${port}/v1/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ app: "chat", to: user, event: "notice", data: { text: "from the native API" } }),
    });
    assert.equal(response.status, 200, await response.text());
    assert.deepEqual((await received(got, "notice")).data, { text: "from the native API" });
  });
});
