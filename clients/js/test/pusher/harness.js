// What every Pusher test shares: the server under test (from the environment the Rust
// driver sets, crates/pushhub/tests/it/pusher.rs), pusher-js clients spread over its nodes,
// the `pusher` server SDK pointed at a node's API, and waits that give up after a while.
//
// The environment:
//   PUSHHUB_PUSHER_WS    client listeners, "127.0.0.1:PORT[,127.0.0.1:PORT…]", one per node
//   PUSHHUB_PUSHER_API   API listeners, in the same order
//   PUSHHUB_PUSHER_APPS  {"chat": {"app_id", "key", "secret", "client_events", "token_secret"},
//                        "quiet": {…}}
// Without it (a bare `node --test`) the suites skip loudly, or fail with CI=true. To run them
// by hand, start `pushhub serve --config FILE` with the two apps of tests/it/pusher.rs
// (`apps_toml`), set the three variables and run `npm run test:pusher` in clients/js.
import { randomBytes } from "node:crypto";

import Pusher from "pusher-js";
import PusherServer from "pusher";

import { missing } from "../helpers/server.js";

/** How long any single wait may take before the test fails. */
export const WAIT_MS = 10000;

/** Room for a wrongly delivered event to show up after the marker that follows it. */
export const GRACE_MS = 250;

const addresses = (name) =>
  (process.env[name] ?? "")
    .split(",")
    .filter(Boolean)
    .map((address) => {
      const at = address.lastIndexOf(":");
      return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
    });

/** The client listener of each node. */
export const WS = addresses("PUSHHUB_PUSHER_WS");
/** The API listener of each node, in the same order. */
export const API = addresses("PUSHHUB_PUSHER_API");
/** The Pusher apps of the server's configuration, by pushhub app name. */
export const APPS = JSON.parse(process.env.PUSHHUB_PUSHER_APPS ?? "{}");

/** Why these suites cannot run here (skipped, or thrown with CI=true), or false. */
export const skip =
  missing(
    WS.length === 0 || API.length !== WS.length || !APPS.chat || !APPS.quiet
      ? "no server: PUSHHUB_PUSHER_WS, PUSHHUB_PUSHER_API and PUSHHUB_PUSHER_APPS are set by " +
          "`cargo test -p pushhub --test it pusher`"
      : null,
  ) ?? false;

/** How many nodes the server has (1, or 3 for the cluster run). */
export const NODES = WS.length;

/** A channel name no other test uses: the suites share one server. */
export function uniq(prefix) {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

/** Poll `check` until it returns something truthy; fails naming `what` after `ms`. */
export async function until(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** `promise`, or a failure naming `what` if it has not settled after `ms`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise.finally(() => clearTimeout(timer)), timeout]);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const clients = new Set();

/**
 * A pusher-js client of `app` on node `node` (modulo the node count), as a page of a
 * Laravel app would make it: its auth endpoints are `backend`'s, and `user` (if any) is who
 * the backend believes is logged in (what a session cookie would tell a real backend).
 * `key` replaces the app's key (an unknown one); `options` are merged over the defaults.
 */
export function connect(app, { backend, node = 0, user, key = APPS[app].key, options = {} } = {}) {
  const { host, port } = WS[node % NODES];
  const headers = user ? { "X-Test-User": user } : {};
  const client = new Pusher(key, {
    cluster: "pushhub",
    wsHost: host,
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    ...(backend && {
      channelAuthorization: { endpoint: backend.url(app, "auth"), transport: "ajax", headers },
      userAuthentication: { endpoint: backend.url(app, "user-auth"), transport: "ajax", headers },
    }),
    ...options,
  });
  clients.add(client);
  return client;
}

/** Resolves with the socket id once `client` is connected; fails if it gives up. */
export function connected(client) {
  if (client.connection.state === "connected") return Promise.resolve(client.connection.socket_id);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected after ${WAIT_MS} ms`)), WAIT_MS);
    client.connection.bind("state_change", ({ current }) => {
      if (current === "connected") {
        clearTimeout(timer);
        resolve(client.connection.socket_id);
      } else if (current === "failed" || current === "unavailable") {
        clearTimeout(timer);
        reject(new Error(`connection ${current}`));
      }
    });
  });
}

/**
 * Subscribe `client` to `name` and resolve with the channel and the data of
 * `pusher:subscription_succeeded` (a presence channel's members); rejects with the data of
 * `pusher:subscription_error`.
 */
export function subscribe(client, name) {
  const channel = client.subscribe(name);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no subscription answer after ${WAIT_MS} ms`)), WAIT_MS);
    channel.bind("pusher:subscription_succeeded", (data) => {
      clearTimeout(timer);
      resolve({ channel, data });
    });
    channel.bind("pusher:subscription_error", (error) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`${name}: subscription error ${JSON.stringify(error)}`), { data: error }));
    });
  });
}

/**
 * Every event `emitter` (a channel, `client.user`) emits from now on, as `{event, data}` in
 * arrival order (pusher-js gives global callbacks no metadata: bind the event for that).
 */
export function record(emitter) {
  const got = [];
  emitter.bind_global((event, data) => got.push({ event, data }));
  return got;
}

/** The code of a connection `error` event: pusher:error's, or a refused handshake's. */
export const errorCode = (error) => (error.data ?? error.error?.data)?.code;

/** Wait until `got` (from `record`) holds an event named `event`; returns it. */
export function received(got, event, what = event) {
  return until(() => got.find((e) => e.event === event), what);
}

/** The names of the events in `got` that are not pusher-js's own (`pusher:…`). */
export function names(got) {
  return got.map((e) => e.event).filter((name) => !name.startsWith("pusher:"));
}

/** Disconnect `client` and wait until pusher-js says it is. */
export async function disconnect(client) {
  client.disconnect();
  clients.delete(client);
  await until(() => client.connection.state === "disconnected", "disconnected");
}

/** Disconnect every client still open, so the test process can end. */
export function closeAll() {
  for (const client of clients) client.disconnect();
  clients.clear();
}

/**
 * The `pusher` server SDK of `app` against node `node`'s API, as a Laravel backend
 * configures it (`PUSHER_HOST`, `PUSHER_PORT`, `PUSHER_SCHEME=http`); `override` replaces
 * credentials (a wrong secret).
 */
export function api(app, { node = 0, ...override } = {}) {
  const { host, port } = API[node % NODES];
  const { app_id: appId, key, secret } = APPS[app];
  return new PusherServer({ appId, key, secret, host, port, useTLS: false, timeout: WAIT_MS, ...override });
}

/** The JSON body of an SDK call's answer (`trigger`, `get`…). */
export async function json(response) {
  return (await response).json();
}
