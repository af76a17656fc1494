// pusher-js's browser build (dist/web/pusher.min.js, what a `<script>` tag or a bundler
// gives a page) in headless Chromium: the page comes from the test backend, which also
// answers its auth requests (same origin, as in a Laravel app); the page subscribes to
// public, private and presence channels and gets what the `pusher` SDK triggers.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, describe, test } from "node:test";

import { missing } from "../helpers/server.js";
import { memberOf, startBackend } from "./backend.js";
import { APPS, NODES, WAIT_MS, WS, api, skip as noServer, uniq, until } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const PUSHER_JS = createRequire(import.meta.url).resolve("pusher-js/dist/web/pusher.min.js");

let chromium = null;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  // reported below
}

const skip =
  noServer ||
  (missing(
    Number(process.versions.node.split(".")[0]) < 20
      ? `playwright-core needs Node >= 20 (this is ${process.version})`
      : !chromium
        ? "playwright-core is not installed (npm ci in clients/js)"
        : !existsSync(CHROMIUM)
          ? `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)`
          : null,
  ) ??
    false);

/** The page: pusher-js from a script tag, and a log of every event of every channel. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>pusher-js</title>
<script src="/pusher.min.js"></script></head>
<body><script>
window.log = [];
window.open_ = (key, options) => {
  window.pusher = new Pusher(key, options);
  window.pusher.bind_global((event, data) => window.log.push({ event, data }));
};
window.join = (name) =>
  window.pusher
    .subscribe(name)
    .bind_global((event, data) => window.log.push({ channel: name, event, data }));
</script></body></html>`;

describe("pusher-js in Chromium", { skip, timeout: 120000 }, () => {
  let backend;
  let browser;
  before(async () => {
    backend = await startBackend(APPS, {
      files: {
        "/": { type: "text/html; charset=utf-8", body: PAGE },
        "/pusher.min.js": { type: "text/javascript", body: readFileSync(PUSHER_JS) },
      },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });
  after(async () => {
    await browser?.close();
    await backend?.close();
  });

  /** A page of app chat on `node`, logged in as `user` (the backend's header), connected. */
  async function open(user, node) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(`${backend.origin}/`);
    const { host, port } = WS[node % NODES];
    const headers = { "X-Test-User": user };
    await page.evaluate(
      ([key, options]) => window.open_(key, options),
      [
        APPS.chat.key,
        {
          cluster: "pushhub",
          wsHost: host,
          wsPort: port,
          wssPort: port,
          forceTLS: false,
          enabledTransports: ["ws"],
          disableStats: true,
          channelAuthorization: { endpoint: "/chat/broadcasting/auth", transport: "ajax", headers },
        },
      ],
    );
    await page.waitForFunction(() => window.pusher.connection.state === "connected");
    return { page, context, errors };
  }

  /** Subscribe the page to `name`; resolves with the subscription_succeeded data. */
  async function join(page, name) {
    await page.evaluate((n) => window.join(n), name);
    const handle = await page.waitForFunction(
      (n) =>
        window.log.find(
          (e) =>
            e.channel === n && (e.event === "pusher:subscription_succeeded" || e.event === "pusher:subscription_error"),
        ),
      name,
    );
    const answer = await handle.jsonValue();
    assert.equal(answer.event, "pusher:subscription_succeeded", `${name}: ${JSON.stringify(answer.data)}`);
    return answer.data;
  }

  /** The data of the events named `event` the page got on `channel`. */
  const got = (page, channel, event) =>
    page.evaluate(([c, e]) => window.log.filter((x) => x.channel === c && x.event === e).map((x) => x.data), [channel, event]);

  test("public, private and presence channels get the SDK's triggers", async () => {
    const ann = await open("ann", 0);
    const bob = await open("bob", 1);
    const [news, orders, room] = [uniq("news-"), uniq("private-orders-"), uniq("presence-room-")];
    for (const page of [ann.page, bob.page]) {
      await join(page, news);
      await join(page, orders);
    }
    await join(ann.page, room);
    const members = await join(bob.page, room);
    assert.deepEqual(members.members, {
      ann: memberOf("ann").user_info,
      bob: memberOf("bob").user_info,
    });
    await until(async () => (await got(ann.page, room, "pusher:member_added")).length === 1, "member_added in the page");
    assert.deepEqual(await got(ann.page, room, "pusher:member_added"), [{ id: "bob", info: { name: "Bob" } }]);

    const sdk = api("chat", { node: NODES - 1 });
    await sdk.trigger([news, orders, room], "update", { text: "<b>hi</b>", n: 1 });
    for (const { page } of [ann, bob]) {
      for (const channel of [news, orders, room]) {
        await until(async () => (await got(page, channel, "update")).length === 1, `update on ${channel}`);
        assert.deepEqual(await got(page, channel, "update"), [{ text: "<b>hi</b>", n: 1 }]);
      }
    }

    await bob.context.close();
    await until(async () => (await got(ann.page, room, "pusher:member_removed")).length === 1, "member_removed in the page");
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
  });

  test("a private channel the backend refuses: subscription_error in the page", async () => {
    const { page, context } = await open("ann", 0);
    const name = uniq("private-forbidden-");
    await page.evaluate((n) => window.join(n), name);
    const handle = await page.waitForFunction(
      (n) => window.log.find((e) => e.channel === n && e.event === "pusher:subscription_error"),
      name,
    );
    assert.equal((await handle.jsonValue()).data.status, 403);
    await context.close();
  });
});
