// The test backend signs exactly what crates/pushhub/src/auth/pusher.rs's test vectors say
// the `pusher` SDK signs: if the SDK or the backend drifted, the server's checks and these
// suites would disagree about what a good signature is. Needs no server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import PusherServer from "pusher";

import { startBackend } from "./backend.js";

// The app of auth/pusher.rs's tests.
const APP = { app_id: "123", key: "app-key-1234", secret: "app-secret-5678" };
const SOCKET = "1234.5678";

describe("the test backend's signatures match auth/pusher.rs's vectors", () => {
  let backend;
  before(async () => {
    backend = await startBackend({ vectors: APP });
  });
  after(() => backend.close());

  /** POST `form` to the backend's `kind` endpoint as pusher-js does, as `user`. */
  const post = async (kind, form, user) => {
    const response = await fetch(backend.url("vectors", kind), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...(user && { "x-test-user": user }) },
      body: new URLSearchParams(form),
    });
    return { status: response.status, body: await response.json() };
  };

  test("private channel", async () => {
    const { status, body } = await post("auth", { socket_id: SOCKET, channel_name: "private-orders" }, "u1");
    assert.equal(status, 200);
    assert.deepEqual(body, {
      auth: "app-key-1234:2a5ac7d63aedb2eb1211931e119f263c98eac8ef0eb58c1c0831d7a84e95ae68",
    });
  });

  test("presence channel, with the member's data exactly as signed", async () => {
    // The backend names user "u1" "U1"; the vector's member is named "Ann": sign it with
    // the same SDK call and check both against what the backend does with its own member.
    const sdk = new PusherServer({ appId: APP.app_id, key: APP.key, secret: APP.secret });
    const ann = { user_id: "u1", user_info: { name: "Ann" } };
    assert.deepEqual(sdk.authorizeChannel(SOCKET, "presence-room", ann), {
      auth: "app-key-1234:ec85cc8937f4f0fc9f96e8e3c0ed80e86a6c3af74c61c888c1194976b261b561",
      channel_data: '{"user_id":"u1","user_info":{"name":"Ann"}}',
    });
    const { status, body } = await post("auth", { socket_id: SOCKET, channel_name: "presence-room" }, "u1");
    assert.equal(status, 200);
    assert.equal(body.channel_data, '{"user_id":"u1","user_info":{"name":"U1"}}');
    assert.deepEqual(body, sdk.authorizeChannel(SOCKET, "presence-room", JSON.parse(body.channel_data)));
  });

  test("user sign-in", async () => {
    const sdk = new PusherServer({ appId: APP.app_id, key: APP.key, secret: APP.secret });
    assert.deepEqual(sdk.authenticateUser(SOCKET, { id: "u1", name: "Ann" }), {
      auth: "app-key-1234:71ecaf86dbcdf4291cb63950b63d47340505d699ae72b6e243d1c04bcd588951",
      user_data: '{"id":"u1","name":"Ann"}',
    });
    const { status, body } = await post("user-auth", { socket_id: SOCKET }, "u1");
    assert.equal(status, 200);
    assert.deepEqual(body, sdk.authenticateUser(SOCKET, { id: "u1", name: "U1" }));
  });

  test("API requests", () => {
    const sdk = new PusherServer({ appId: APP.app_id, key: APP.key, secret: APP.secret });
    const now = Date.now;
    Date.now = () => 1765000000123;
    try {
      const trigger = sdk.createSignedQueryString({
        method: "POST",
        path: "/apps/123/events",
        body: '{"name":"order","channels":["private-orders","news"],"data":"{\\"id\\":7}"}',
      });
      assert.equal(
        trigger,
        "auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=1.0&body_md5=503851d5f665cb246b1da97412fbec90" +
          "&auth_signature=2c660fe0ae07916020f0555cac9554a6c80cd206f53d8b034d1525fdf3f9deae",
      );
      const channels = sdk.createSignedQueryString({
        method: "GET",
        path: "/apps/123/channels",
        params: { filter_by_prefix: "presence-", info: "user_count" },
      });
      assert.equal(
        channels,
        "auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count" +
          "&auth_signature=faa20f7c6d606ff3df943ef20de4b6a5d3a76a3820e60d436fda65a8b00c387e",
      );
    } finally {
      Date.now = now;
    }
  });

  test("webhooks", () => {
    const sdk = new PusherServer({ appId: APP.app_id, key: APP.key, secret: APP.secret });
    const body = '{"time_ms":1765000000123,"events":[{"name":"channel_occupied","channel":"news"}]}';
    const webhook = sdk.webhook({
      headers: {
        "x-pusher-key": APP.key,
        "x-pusher-signature": "18abd2c6ef2f402ab8f081e1107d097e61048125eabc88e03a03df9dbf8f7be7",
        "content-type": "application/json",
      },
      rawBody: body,
    });
    assert.ok(webhook.isValid());
    assert.deepEqual(webhook.getEvents(), [{ name: "channel_occupied", channel: "news" }]);
  });

  test("refusals: nobody logged in, a forbidden channel, a bad socket id", async () => {
    assert.equal((await post("auth", { socket_id: SOCKET, channel_name: "private-orders" })).status, 403);
    assert.equal((await post("user-auth", { socket_id: SOCKET })).status, 403);
    assert.equal((await post("auth", { socket_id: SOCKET, channel_name: "private-forbidden-x" }, "u1")).status, 403);
    assert.equal((await post("auth", { socket_id: "12.ab", channel_name: "private-orders" }, "u1")).status, 400);
  });
});
