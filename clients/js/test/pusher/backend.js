// The application backend of the Pusher tests: what a Laravel app serves at
// /broadcasting/auth and /broadcasting/user-auth, made with the `pusher` server SDK's own
// `authorizeChannel` and `authenticateUser`, behind a real HTTP server on port 0.
//
// Who is logged in comes from the `X-Test-User` header (a real backend reads its session
// cookie); the user's name is the id capitalised. Its rules, like a `routes/channels.php`:
// nobody logged in is refused (403), and so is any channel whose name holds "forbidden".
// It also serves static files for the browser test (`files`: path → {type, body}).
import { createServer } from "node:http";

import PusherServer from "pusher";

/** The name the backend gives user `id`: "ann" → "Ann". */
export const nameOf = (id) => id.charAt(0).toUpperCase() + id.slice(1);

/** The presence member the backend makes for `user`, as the channel's `user_info`. */
export const memberOf = (user) => ({ user_id: user, user_info: { name: nameOf(user) } });

/**
 * Start the backend for `apps` (name → {app_id, key, secret}); resolves with
 * `{url(app, "auth" | "user-auth"), origin, requests, close()}`. `requests` lists every
 * auth request as `{app, kind, user, socket_id, channel_name, status}`.
 */
export async function startBackend(apps, { files = {} } = {}) {
  const sdks = Object.fromEntries(
    Object.entries(apps).map(([name, { app_id: appId, key, secret }]) => [
      name,
      new PusherServer({ appId, key, secret, host: "127.0.0.1", useTLS: false }),
    ]),
  );
  const requests = [];
  const server = createServer(async (req, res) => {
    const send = (status, type, body) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    const url = new URL(req.url, "http://backend");
    if (req.method === "GET" && files[url.pathname]) {
      const { type, body } = files[url.pathname];
      return send(200, type, body);
    }
    const route = url.pathname.match(/^\/([^/]+)\/broadcasting\/(auth|user-auth)$/);
    if (req.method !== "POST" || !route || !sdks[route[1]]) return send(404, "text/plain", "not found");
    const [, app, kind] = route;
    const form = new URLSearchParams(await body(req));
    const user = req.headers["x-test-user"] || null;
    const socketId = form.get("socket_id");
    const channel = form.get("channel_name");
    const answer = (status, payload) => {
      requests.push({ app, kind, user, socket_id: socketId, channel_name: channel, status });
      send(status, "application/json", JSON.stringify(payload));
    };
    if (!user || (kind === "auth" && channel?.includes("forbidden"))) {
      return answer(403, { message: "This action is unauthorized." });
    }
    try {
      const sdk = sdks[app];
      if (kind === "user-auth") return answer(200, sdk.authenticateUser(socketId, { id: user, name: nameOf(user) }));
      const presence = channel.startsWith("presence-") ? memberOf(user) : undefined;
      return answer(200, sdk.authorizeChannel(socketId, channel, presence));
    } catch (error) {
      // The SDK refuses a malformed socket id or channel name: the client's mistake.
      return answer(400, { message: String(error.message ?? error) });
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    requests,
    url: (app, kind) => `${origin}/${app}/broadcasting/${kind}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

function body(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
