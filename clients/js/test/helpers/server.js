// A real pushhub binary on port 0 for the tests, and what they need around it: the binary's
// path, pushes through the API, tokens, and the rule for a missing service (skip loudly, or
// fail when CI=true).
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, "../../../..");

/** The pushhub binary: $PUSHHUB_BIN (cargo test sets it), else the usual cargo outputs. */
export function binaryPath() {
  if (process.env.PUSHHUB_BIN) return process.env.PUSHHUB_BIN;
  const dirs = [process.env.CARGO_TARGET_DIR, join(ROOT, "target")].filter(Boolean);
  for (const dir of dirs) {
    for (const profile of ["debug", "release"]) {
      const path = join(dir, profile, "pushhub");
      if (existsSync(path)) return path;
    }
  }
  return null;
}

/**
 * Why a test cannot run here (a missing service), or null. Outside CI the caller skips with
 * this text, loudly; with CI=true it throws instead, so CI never passes by skipping.
 */
export function missing(what) {
  if (!what) return null;
  const text = `SKIPPED: ${what}`;
  if (process.env.CI === "true") throw new Error(`${what} (CI=true: a missing service fails the run)`);
  process.stderr.write(`\n*** ${text} ***\n\n`);
  return text;
}

const ANSI = /\x1b\[[0-9;]*m/g;

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Start `pushhub serve` on port 0 (or the given addresses, for a restart on the same ports)
 * with an optional TOML config; resolves once its `listening client=… api=…` line is logged.
 */
export async function startServer({ config, listen = "127.0.0.1:0", apiListen = "127.0.0.1:0", env = {} } = {}) {
  const bin = binaryPath();
  if (!bin) throw new Error("no pushhub binary: set PUSHHUB_BIN or run cargo build");
  const dir = mkdtempSync(join(tmpdir(), "pushhub-js-"));
  const args = ["serve", "--listen", listen, "--api-listen", apiListen, "--data-dir", join(dir, "data")];
  if (config) {
    writeFileSync(join(dir, "pushhub.toml"), config);
    args.push("--config", join(dir, "pushhub.toml"));
  }
  // Every PUSHHUB_* variable is a configuration key to the server: pass none of ours.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PUSHHUB_")));
  const child = spawn(bin, args, {
    env: { ...inherited, PUSHHUB_LOG: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const addresses = await new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 15000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk.replace(ANSI, "");
      const match = /listening client=(\S+) api=(\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolveStart({ client: match[1], api: match[2] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${log}`));
    });
  });
  child.removeAllListeners("exit");
  // A server a failed test left behind neither keeps the test process alive nor outlives it.
  child.unref();
  child.stderr.unref();
  running.add(child);
  child.on("exit", () => running.delete(child));
  const exited = new Promise((r) => child.on("exit", r));
  const server = {
    ...addresses,
    pid: child.pid,
    url: `http://${addresses.client}`,
    apiUrl: `http://${addresses.api}`,
    log: () => log,
    /** SIGKILL, as a crash: no shutdown, in-memory history gone. */
    async kill() {
      child.ref();
      child.kill("SIGKILL");
      await exited;
    },
    /** Stop and remove the data directory. */
    async stop() {
      child.ref();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
    /** A new process on the same two ports (after kill()). */
    restart() {
      return startServer({ config, listen: addresses.client, apiListen: addresses.api, env });
    },
    /** POST /v1/push; returns the API's answer. */
    async push(body) {
      const response = await fetch(`${server.apiUrl}/v1/push`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ app: "demo", ...body }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(`push failed: ${response.status} ${JSON.stringify(answer)}`);
      return answer;
    },
    async api(method, path, body) {
      const response = await fetch(`${server.apiUrl}${path}`, {
        method,
        headers: body ? { "content-type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: response.status, body: await response.json().catch(() => null) };
    },
  };
  return server;
}

/** An HS256 token for `user` of `app`, valid for `ttl` seconds (negative: already expired). */
export function token(secret, app, user, ttl) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, app, exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

/** Resolve when `check()` is truthy; reject after `ms` with `what`. */
export async function until(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
