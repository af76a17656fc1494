// The demo page and the SDK in a real browser: Debian's Chromium, headless, driven by
// playwright-core, against the real pushhub binary on port 0.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { browserMissing, openDemo, startBrowserAndServer } from "./helpers/browser.js";
import { startServer, until } from "./helpers/server.js";

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "..", "test-artifacts");
const CONFIG = `
[apps.demo]
auth = "none"
client_send = "open"
`;
const skip = browserMissing();

/** A page without WebSocket, as behind a proxy that blocks it: every connection fails at once. */
function blockWebSocket() {
  window.WebSocket = class BlockedWebSocket {
    constructor(url) {
      this.url = url;
      setTimeout(() => {
        this.onerror?.(new Event("error"));
        this.onclose?.({ code: 1006, reason: "" });
      }, 5);
    }
    send() {
      throw new Error("blocked");
    }
    close() {}
  };
}

describe("in Chromium", { skip: skip ?? false, timeout: 120000 }, () => {
  let browser;
  let server;
  let stop;
  before(async () => {
    ({ browser, server, stop } = await startBrowserAndServer({ config: CONFIG }));
  });
  after(async () => {
    await stop?.();
  });

  /** The demo page of `target` for `user`, connected (autoconnect), with fast reconnects. */
  const demoPage = (target, options) => openDemo(browser, target, { viewport: { width: 1360, height: 1000 }, ...options });

  const received = (page) => page.evaluate(() => window.demo.messages.map((m) => m.data));

  test("(a) the page receives pushes", async () => {
    const { page, context, errors } = await demoPage(server, { user: "a-100" });
    assert.equal(await page.textContent("#transport"), "websocket");
    await server.push({ to: "a-100", event: "order", data: { id: 1, text: "<b>not html</b>" } });
    await server.push({ to: "*", data: "everyone" });
    await server.push({ to: "a-100,*", data: "once" });
    await until(async () => (await received(page)).length >= 3, "three messages");
    assert.deepEqual(await received(page), [{ id: 1, text: "<b>not html</b>" }, "everyone", "once"]);
    assert.equal(await page.locator("#messages li").count(), 3);
    assert.equal(await page.locator("#messages b").count(), 0, "pushed text is never HTML");
    assert.equal(await page.textContent("#count"), "3");
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("(b) server killed and restarted mid-stream: every message once, in order", async () => {
    let target = await startServer({ config: CONFIG });
    const { page, context, errors } = await demoPage(target, { user: "b-100" });
    const pushes = []; // {seq, era, ok, maybe}
    let era = "old";
    let stop = false;
    const pusher = (async () => {
      for (let seq = 1; !stop; seq++) {
        const at = era;
        try {
          await target.push({ to: seq % 2 ? "b-100" : "*", data: { seq } });
          pushes.push({ seq, era: at, ok: true });
        } catch (error) {
          // Refused outright (nobody listening, or an error answer): not a push. Cut off
          // after it was sent (the kill landed mid-request): it may have been published
          // and delivered, its answer lost with the process.
          const refused = error?.cause?.code === "ECONNREFUSED" || String(error).includes("push failed:");
          pushes.push({ seq, era: at, ok: false, maybe: !refused });
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const seqs = async () => (await received(page)).map((d) => d.seq);
    await until(async () => (await seqs()).length >= 15, "15 messages before the crash");
    await target.kill();
    era = "down";
    const restarted = await target.restart();
    target = restarted;
    era = "new";
    await page.waitForFunction(() => window.demo.events.some((e) => e.kind === "recovered"));
    const afterReconnect = pushes.length;
    await until(() => pushes.length >= afterReconnect + 15, "15 pushes after the reconnect");
    stop = true;
    await pusher;
    const made = pushes.filter((p) => p.ok);
    const newEra = made.filter((p) => p.era === "new").map((p) => p.seq);
    await until(async () => {
      const got = await seqs();
      return newEra.every((s) => got.includes(s));
    }, "every push to the restarted server", 15000);
    await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show up
    const got = await seqs();

    assert.equal(new Set(got).size, got.length, `no duplicates: ${got}`);
    assert.deepEqual([...got].sort((x, y) => x - y), got, "in push order");
    const unanswered = got.filter((s) => !made.some((p) => p.seq === s));
    assert.ok(
      unanswered.every((s) => pushes.some((p) => p.seq === s && p.maybe)),
      `only pushes the server accepted, or may have before its answer was lost: ${unanswered}`,
    );
    // Pushes the killed server had accepted: all there, or a tail the crash cut off (its
    // history died with it), which the page was told about with recovered:false.
    const oldEra = made.filter((p) => p.era === "old").map((p) => p.seq);
    const lastOld = Math.max(...got.filter((s) => oldEra.includes(s)));
    const lostOld = oldEra.filter((s) => !got.includes(s));
    assert.ok(lostOld.every((s) => s > lastOld), `only a tail may be lost: ${lostOld}`);
    const recovered = await page.evaluate(() => window.demo.events.filter((e) => e.kind === "recovered").map((e) => e.text));
    assert.equal(recovered.length, 1, String(recovered));
    assert.match(recovered[0], /could not recover/, "after a restart the server cannot vouch for the gap");
    // Every push to the new server is there, including those made before the page was back.
    assert.ok(newEra.every((s) => got.includes(s)));
    assert.equal(await page.getAttribute("#state", "data-state"), "connected");
    assert.deepEqual(errors, []);
    process.stderr.write(
      `# restart: ${made.length} pushes accepted (${oldEra.length} before the kill, ${newEra.length} after), ` +
        `${pushes.length - made.length} refused while down, ${got.length} received once each, ${lostOld.length} lost in the crash\n`,
    );
    await context.close();
    await target.stop();
  });

  test("(e) a room is joined again after a kick and resumes: every room message once, in order", async () => {
    const { page, context, errors } = await demoPage(server, { user: "e-100" });
    await page.fill("#room", "e-room");
    await page.click("#join");
    await until(async () => /join → .*"recovered":true/.test(await page.textContent("#frame-result")), "joined");
    await server.push({ room: "e-room", data: 1 });
    await until(async () => (await received(page)).length === 1, "the first room message");
    const kicked = await server.api("POST", "/v1/disconnect", { app: "demo", user: "e-100" });
    assert.equal(kicked.status, 200);
    for (const n of [2, 3, 4]) await server.push({ room: "e-room", data: n });
    await until(async () => (await received(page)).length >= 4, "the missed room messages");
    await server.push({ room: "e-room", data: 5 });
    await until(async () => (await received(page)).length >= 5, "five room messages");
    await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show up
    assert.deepEqual(await received(page), [1, 2, 3, 4, 5]);
    assert.equal(await page.textContent("#rooms"), "e-room");
    const resumes = await page.evaluate(() => window.demo.events.filter((e) => e.kind === "recovered").map((e) => e.text));
    assert.deepEqual(resumes, ["resumed: nothing missed"]);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("(c) WebSocket blocked: falls back to SSE, which resumes too; then to long-poll", async () => {
    const { page, context, errors } = await demoPage(server, { user: "c-100", init: blockWebSocket });
    assert.equal(await page.textContent("#transport"), "sse");
    await server.push({ to: "c-100", data: "over sse" });
    await until(async () => (await received(page)).length === 1, "one message");
    // Cut the stream; what is pushed meanwhile comes with the resume.
    await server.api("POST", "/v1/disconnect", { app: "demo", user: "c-100" });
    await server.push({ to: "c-100", data: "missed" });
    await server.push({ to: "*", data: "missed too" });
    await page.waitForFunction(() => window.demo.events.some((e) => e.kind === "recovered"));
    await server.push({ to: "c-100", data: "live again" });
    await until(async () => (await received(page)).length >= 4, "four messages");
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await received(page), ["over sse", "missed", "missed too", "live again"]);
    assert.deepEqual(errors, []);
    await context.close();

    // SSE blocked as well (a proxy that buffers or refuses event streams): long-poll.
    const poll = await demoPage(server, {
      user: "c-200",
      init: blockWebSocket,
      connect: false,
    });
    await poll.page.route(/\/v1\/sse/, (route) => route.abort());
    await poll.page.click("#connect");
    await poll.page.waitForSelector('#state[data-state="connected"]');
    assert.equal(await poll.page.textContent("#transport"), "poll");
    await server.push({ to: "c-200", data: "over long-poll" });
    await until(async () => (await received(poll.page)).length === 1, "a polled message");
    assert.deepEqual(await received(poll.page), ["over long-poll"]);
    await poll.context.close();
  });

  test("(d) the demo page's buttons work", async () => {
    const { page, context, errors } = await demoPage(server, { user: "d-100", connect: false });
    const result = (id) => page.textContent(`#${id}`);
    await page.click("#connect");
    await page.waitForSelector('#state[data-state="connected"]');

    // The push panel calls the API on its own port (the loopback CORS allowance).
    await page.fill("#target", "d-100");
    await page.click("#push");
    await until(async () => (await received(page)).length === 1, "the panel's push");
    // The message may arrive before the page has the POST's answer: nothing orders them.
    await until(async () => /POST \/v1\/push → 200/.test(await result("api-result")), "the push's answer");
    assert.deepEqual((await received(page))[0], { id: 10, text: "order 10 needs approval" });

    await page.click("#users");
    await until(async () => /"user": "d-100"/.test(await result("api-result")), "online users");

    await page.fill("#room", "lobby");
    await page.click("#join");
    await until(async () => /join → .*"ch":"demo:room:lobby"/.test(await result("frame-result")), "joined");
    assert.equal(await page.textContent("#rooms"), "lobby");
    await page.selectOption("#target-kind", "room");
    await page.fill("#target", "lobby");
    await page.fill("#data", '"hello room"');
    await page.click("#push");
    await until(async () => (await received(page)).includes("hello room"), "the room push");

    await page.click("#rpc");
    await until(async () => /rpc → rpc_not_enabled/.test(await result("frame-result")), "the rpc error");

    await page.fill("#send-to", "d-100");
    await page.click("#send");
    await until(async () => /send → .*"ch":"demo:user:d-100"/.test(await result("frame-result")), "the sent ack");
    await until(async () => (await page.evaluate(() => window.demo.messages.some((m) => m.from === "d-100"))), "the sent message");

    await page.click("#leave");
    await until(async () => /leave → \{"room":"lobby"\}/.test(await result("frame-result")), "left");
    assert.equal(await page.textContent("#rooms"), "");

    // Kick: the client reconnects by itself and resumes.
    await page.click("#kick");
    await page.waitForFunction(() => window.demo.events.some((e) => e.kind === "recovered"));
    await page.waitForSelector('#state[data-state="connected"]');
    await page.selectOption("#target-kind", "to");
    await page.fill("#target", "*");
    await page.fill("#data", '{"text": "after the kick"}');
    await page.click("#push");
    await until(async () => (await received(page)).some((d) => d?.text === "after the kick"), "a push after the kick");

    // Disconnect, a push meanwhile, Connect: the new client resumes from the old one's cursor.
    await page.click("#disconnect");
    await page.waitForSelector('#state[data-state="closed"]');
    await page.fill("#data", '"while you were away"');
    await page.click("#push");
    await until(async () => /"delivered": 0/.test(await result("api-result")), "a push nobody received live");
    await page.click("#connect");
    await page.waitForSelector('#state[data-state="connected"]');
    await until(async () => (await received(page)).includes("while you were away"), "the missed push");
    const resumes = await page.evaluate(() => window.demo.events.filter((e) => e.kind === "recovered").map((e) => e.text));
    assert.deepEqual(resumes, ["resumed: nothing missed", "resumed: nothing missed"]);
    const all = await received(page);
    assert.equal(new Set(all.map((d) => JSON.stringify(d))).size, all.length, "no duplicates");
    assert.deepEqual(errors, []);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "demo.png"), fullPage: true });
    await context.close();
  });
});
