// Headless Chromium for the tests that drive pages (the demo page and the SDK, the admin
// dashboard): Debian's Chromium through playwright-core, the rule for when it cannot run
// here, a server and a browser started together, and the demo page opened as a client.
import { existsSync } from "node:fs";

import { binaryPath, missing, startServer } from "./server.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

let chromium = null;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  // reported by browserMissing()
}

/**
 * Why these tests cannot run here (skipped loudly, or thrown with CI=true: see `missing`),
 * or null.
 */
export function browserMissing() {
  const nodeMajor = Number(process.versions.node.split(".")[0]);
  return missing(
    nodeMajor < 20
      ? `playwright-core needs Node >= 20 (this is ${process.version})`
      : !binaryPath()
        ? "no pushhub binary (set PUSHHUB_BIN or run cargo build)"
        : !chromium
          ? "playwright-core is not installed (npm ci in clients/js)"
          : !existsSync(CHROMIUM)
            ? `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)`
            : null,
  );
}

/** Headless Chromium and a pushhub server with `config`; `stop()` ends both. */
export async function startBrowserAndServer({ config }) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const server = await startServer({ config }).catch(async (error) => {
    await browser.close();
    throw error;
  });
  return {
    browser,
    server,
    async stop() {
      await browser.close();
      await server.stop();
    },
  };
}

/**
 * The demo page of `server` in a fresh context, as `user`, with fast reconnects; connected
 * (autoconnect) unless `connect` is false. `errors` collects the page's uncaught errors
 * and Content-Security-Policy refusals.
 */
export async function openDemo(browser, server, { user = "100", init, transports, connect = true, viewport } = {}) {
  const context = await browser.newContext(viewport ? { viewport } : {});
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (m) => m.type() === "error" && /Content.Security.Policy|Uncaught/.test(m.text()) && errors.push(m.text()));
  const query = new URLSearchParams({ user, api: server.apiUrl, backoff: "100,1000" });
  if (connect) query.set("autoconnect", "1");
  if (transports) query.set("transports", transports);
  await page.goto(`${server.url}/demo?${query}`);
  if (connect) await page.waitForSelector('#state[data-state="connected"]');
  return { page, context, errors };
}
