// The admin dashboard (`/admin` on the API listener) in a real browser: Debian's Chromium,
// headless, driven by playwright-core, against the real pushhub binary on port 0, with
// real clients (the demo page over WebSocket, SSE and long-poll), a real HTTP target for
// timers and cron, and screenshots of every view kept under target/tmp/admin-screenshots/.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { browserMissing, openDemo, startBrowserAndServer } from "./helpers/browser.js";
import { ROOT, until } from "./helpers/server.js";

const SHOTS = process.env.ADMIN_SCREENSHOTS ?? join(ROOT, "target", "tmp", "admin-screenshots");
const ADMIN_KEY = "admin-key-0123456789abcdef";
const CONFIG = `
admin_keys = ["${ADMIN_KEY}"]

[timers]
allow_hosts = ["127.0.0.1"]

[apps.demo]
auth = "none"

[apps.shop]
auth = "none"
`;

const skip = browserMissing();

/** A real HTTP target: records every call; `/flaky` fails until `target.healed`. */
async function startTarget() {
  const target = { calls: [], healed: false };
  const server = createServer((request, response) => {
    target.calls.push(request.url);
    const fail = request.url.startsWith("/flaky") && !target.healed;
    response.writeHead(fail ? 500 : 200, { "content-type": "text/plain" });
    response.end(fail ? "broken backend" : "ok");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  target.url = `http://127.0.0.1:${server.address().port}`;
  target.close = () => new Promise((resolve) => server.close(resolve));
  return target;
}

async function adminApi(server, method, path, body) {
  const response = await fetch(`${server.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => null);
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

describe("admin dashboard in Chromium", { skip: skip ?? false, timeout: 180000 }, () => {
  let browser;
  let server;
  let stop;
  let target;
  const clients = {};
  let admin;
  let errors;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    target = await startTarget();
    ({ browser, server, stop } = await startBrowserAndServer({ config: CONFIG }));
    // Real clients, one per transport, on the demo page of the client listener, and a
    // second connection of alice's, so her row has two.
    for (const [name, user, transports] of [
      ["alice", "alice", "websocket"],
      ["bob", "bob", "sse"],
      ["carol", "carol", "poll"],
      ["dave", "dave", "websocket"],
      ["alice2", "alice", "sse"],
    ]) {
      clients[name] = await openDemo(browser, server, { user, transports });
    }
    // Timers: one pending far ahead, one that fails at once (its target answers 500).
    await adminApi(server, "POST", "/v1/timers", { app: "demo", url: `${target.url}/later`, delay_ms: 3600000 });
    const failing = await adminApi(server, "POST", "/v1/timers", { app: "demo", url: `${target.url}/flaky`, retry: { max_attempts: 1 } });
    await until(async () => (await adminApi(server, "GET", `/v1/timers/${failing.id}`)).state === "failed", "the timer to fail");
    await adminApi(server, "PUT", "/v1/cron/nightly-report?app=demo", { schedule: "0 3 * * *", url: `${target.url}/cron` });

    const adminContext = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    admin = await adminContext.newPage();
    errors = [];
    admin.on("pageerror", (error) => errors.push(String(error)));
    admin.on("console", (m) => m.type() === "error" && !/status of 40[013]/.test(m.text()) && errors.push(m.text()));
  });

  after(async () => {
    await stop?.();
    await target?.close();
  });

  const shot = (name) => admin.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const text = (selector) => admin.textContent(selector);

  test("a wrong key is refused with the server's reason", async () => {
    await admin.goto(`${server.apiUrl}/admin`);
    await admin.waitForSelector("#login-form");
    await shot("01-sign-in");
    await admin.fill("#key", "not-the-admin-key-at-all");
    await admin.click("#signin");
    await admin.waitForSelector("#login-error:not([hidden])");
    assert.match(await text("#login-error"), /unknown API key/);
    assert.equal(await admin.isVisible("#shell"), false);
    await shot("02-wrong-key");
  });

  test("the admin key opens the overview, whose numbers move with pushes", async () => {
    await admin.fill("#key", ADMIN_KEY);
    await admin.click("#signin");
    await admin.waitForSelector("#view-overview:not([hidden])");
    assert.equal(await admin.evaluate(() => location.href.includes("admin-key")), false, "the key is never in the URL");
    await until(async () => (await text("#stat-connections")) === "5", "5 connections");
    assert.equal(await text("#stat-users"), "4");
    assert.equal(await admin.locator('#apps-table tr[data-app="demo"] td').nth(2).textContent(), "5");
    assert.equal(await admin.locator('#apps-table tr[data-app="shop"] td').nth(1).textContent(), "0");
    // Pushes while the page watches: the rates leave zero, and the clients get them.
    const pushing = (async () => {
      for (let i = 0; i < 40; i++) {
        await server.push({ to: "*", event: "tick", data: { i } });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await until(async () => Number((await text("#stat-rate")).replace(/,/g, "")) > 0, "messages/s above zero", 15000);
    await until(async () => Number((await text("#stat-deliveries")).replace(/,/g, "")) > 0, "deliveries/s above zero", 15000);
    await pushing;
    assert.match(await text("#stat-published"), /^[1-9]/);
    assert.match(await text("#stat-memory"), /MiB/);
    assert.equal(await admin.getAttribute("#engine", "class"), "pill connected");
    await until(async () => (await admin.locator("#chart polyline").count()) === 2, "the chart");
    await shot("03-overview");
  });

  test("users: find a user, see its connections, disconnect it (the client closes)", async () => {
    await admin.click('#tabs a[data-view="users"]');
    await admin.waitForSelector('#users-table tr[data-user="alice"]');
    // The list refreshes on its own: a slow machine may show it before every client is in.
    const rows = admin.locator("#users-table tbody tr[data-user]");
    await until(async () => (await rows.count()) === 4, "four users listed");
    await admin.fill("#users-filter", "ali");
    await until(async () => (await rows.count()) === 1, "the filter keeps alice alone");
    const row = admin.locator('#users-table tr[data-user="alice"]');
    await until(async () => (await row.locator("td").nth(1).textContent()) === "2", "alice's two connections counted");
    await row.locator("button.toggle").click();
    const detail = admin.locator('#users-table tr[data-conns-of="alice"]');
    await detail.waitFor();
    const conns = detail.locator("tr[data-conn]");
    // GET /v1/apps/{app}/users?conns=true: one row per connection, with its transport.
    await until(async () => (await conns.count()) === 2, "alice's two connections");
    const transports = await detail.locator("tr[data-conn] .chip").allTextContents();
    assert.deepEqual(transports.sort(), ["sse", "websocket"]);
    assert.match(await detail.textContent(), /native/, "the dialect");
    assert.match(await detail.textContent(), /127\.0\.0\.1/, "the address");
    await shot("04-users");
    // Close alice's WebSocket connection only: her SSE one stays.
    await detail.locator("tr[data-conn]", { hasText: "websocket" }).locator("button.disconnect-conn").click();
    await admin.waitForSelector("#confirm[open]");
    assert.match(await text("#confirm-text"), /connection .* of user “alice”/);
    await admin.click("#confirm-ok");
    await clients.alice.page.waitForSelector('#state[data-state="closed"]', { timeout: 10000 });
    assert.equal(await clients.alice2.page.getAttribute("#state", "data-state"), "connected");
    await until(async () => (await admin.locator('#users-table tr[data-user="alice"] td').nth(1).textContent()) === "1", "alice down to one");
    await admin.fill("#users-filter", "");
    // Disconnect dave (WebSocket) for good: the dialog asks first, then his client is closed.
    await admin.locator('#users-table tr[data-user="dave"] button.disconnect').click();
    await admin.waitForSelector("#confirm[open]");
    assert.match(await text("#confirm-text"), /dave/);
    await admin.fill("#confirm-reason", "maintenance");
    await shot("05-disconnect-confirm");
    await admin.click("#confirm-ok");
    // alice's toast may still show: wait for the one about dave (or an error).
    await until(async () => /of dave|error|\(/.test(await admin.locator("#toasts").textContent()), "the disconnect's answer");
    assert.match(await admin.locator("#toasts").textContent(), /Disconnected 1 connection of dave/);
    await clients.dave.page.waitForSelector('#state[data-state="closed"]', { timeout: 10000 });
    assert.match(await clients.dave.page.locator("#log").textContent(), /4516|maintenance/);
    await until(async () => (await admin.locator('#users-table tr[data-user="dave"]').count()) === 0, "dave gone from the list");
    assert.equal(await clients.alice2.page.getAttribute("#state", "data-state"), "connected", "others stay");
    // Cancelling the dialog disconnects nobody.
    await admin.locator('#users-table tr[data-user="carol"] button.disconnect').click();
    await admin.click("#confirm-cancel");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await clients.carol.page.getAttribute("#state", "data-state"), "connected");
  });

  test("timers: cancel a pending one, retry a failed one", async () => {
    await admin.click('#tabs a[data-view="timers"]');
    await admin.waitForSelector("#timers-table tr[data-timer]");
    const pending = admin.locator('#timers-table tr[data-state="pending"]');
    assert.equal(await pending.count(), 1);
    assert.match(await pending.textContent(), /\/later/);
    await shot("06-timers-pending");
    await pending.locator("button.cancel").click();
    await admin.click("#confirm-ok");
    await until(async () => (await admin.locator("#timers-table tr[data-timer]").count()) === 0, "no pending timer left");
    await admin.click('#timer-states button[data-state="cancelled"]');
    await admin.waitForSelector('#timers-table tr[data-state="cancelled"]');

    await admin.click('#timer-states button[data-state="failed"]');
    const failed = admin.locator('#timers-table tr[data-state="failed"]');
    await failed.waitFor();
    assert.match(await failed.textContent(), /HTTP 500/);
    await shot("07-timers-failed");
    target.healed = true;
    const before = target.calls.filter((c) => c === "/flaky").length;
    await failed.locator("button.retry").click();
    await until(() => target.calls.filter((c) => c === "/flaky").length === before + 1, "the retry's call");
    await admin.click('#timer-states button[data-state="succeeded"]');
    await admin.waitForSelector('#timers-table tr[data-state="succeeded"]');
    assert.match(await admin.locator('#timers-table tr[data-state="succeeded"]').textContent(), /HTTP 200/);
  });

  test("cron: pause, resume, run now", async () => {
    await admin.click('#tabs a[data-view="cron"]');
    const job = admin.locator('#cron-table tr[data-job="nightly-report"]');
    await job.waitFor();
    assert.equal(await job.getAttribute("data-paused"), "false");
    await job.locator("button.pause").click();
    await admin.waitForSelector('#cron-table tr[data-job="nightly-report"][data-paused="true"]');
    assert.equal((await adminApi(server, "GET", "/v1/cron/nightly-report?app=demo")).paused, true);
    await shot("08-cron-paused");
    await job.locator("button.resume").click();
    await admin.waitForSelector('#cron-table tr[data-job="nightly-report"][data-paused="false"]');
    assert.equal((await adminApi(server, "GET", "/v1/cron/nightly-report?app=demo")).paused, false);
    await job.locator("button.run").click();
    await until(() => target.calls.includes("/cron"), "the job's call");
    await until(async () => /succeeded/.test(await job.textContent()), "the run shown as succeeded");
    await shot("09-cron");
  });

  test("history: read a channel's newest messages", async () => {
    await admin.click('#tabs a[data-view="history"]');
    // The view fills the channel in when it draws, after the tab switch.
    await until(async () => (await admin.inputValue("#history-channel")) === "demo:all", "the app's all-users channel proposed");
    await admin.selectOption("#history-limit", "20");
    await admin.click("#history-load");
    await until(async () => (await admin.locator("#history-list li").count()) === 20, "20 messages");
    const offsets = await admin.locator("#history-list li").evaluateAll((items) => items.map((i) => Number(i.dataset.off)));
    assert.deepEqual(offsets, Array.from({ length: 20 }, (_, i) => 21 + i), "the newest 20, oldest first");
    assert.match(await admin.locator("#history-list li").last().textContent(), /tick.*\{"i":39\}/);
    await shot("10-history");
    await admin.fill("#history-channel", "shop:all");
    await admin.click("#history-load");
    await until(async () => /invalid_channel/.test(await admin.locator("#toasts").textContent()), "a clear error");
  });

  test("cluster: a memory engine is one node", async () => {
    await admin.click('#tabs a[data-view="cluster"]');
    await admin.waitForSelector("#nodes li");
    assert.match(await text("#cluster-mode"), /Single node/);
    assert.equal(await admin.locator("#nodes li").count(), 1);
    assert.match(await admin.locator("#nodes li").textContent(), /this node/);
    await shot("11-cluster");
    assert.deepEqual(errors, []);
  });
});
