// One call of the npm `pusher` server SDK against pushhub, for crates/pushhub/tests/it/pusher_api.rs.
//
//   node sdk.mjs OP 'JSON ARGUMENTS'
//
// The app comes from PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, PUSHER_HOST, PUSHER_PORT. Prints one
// JSON line: {"status":N,"body":…} for a request (an SDK RequestError too), or {"query":"…"} for
// `sign`, the query string the SDK signs a request with (for requests the SDK would refuse to send).
// `now` (Unix seconds) in the arguments sets the SDK's clock, to sign a stale request.
import Pusher from "pusher";

const [op, argText] = process.argv.slice(2);
const arg = JSON.parse(argText || "{}");
const env = process.env;
if (arg.now) {
  Date.now = () => arg.now * 1000;
}
const pusher = new Pusher({
  appId: env.PUSHER_APP_ID,
  key: env.PUSHER_KEY,
  secret: env.PUSHER_SECRET,
  host: env.PUSHER_HOST,
  port: Number(env.PUSHER_PORT),
  useTLS: false,
  timeout: 10000,
});

async function call() {
  switch (op) {
    case "trigger":
      return pusher.trigger(arg.channels, arg.event, arg.data, arg.params);
    case "batch":
      return pusher.triggerBatch(arg.batch);
    case "get":
      return pusher.get({ path: arg.path, params: arg.params || {} });
    case "terminate":
      return pusher.terminateUserConnections(arg.user);
    case "sendToUser":
      return pusher.sendToUser(arg.user, arg.event, arg.data);
    default:
      throw new Error(`unknown op ${op}`);
  }
}

if (op === "sign") {
  const body = arg.body === undefined ? undefined : JSON.stringify(arg.body);
  const query = pusher.createSignedQueryString({
    method: arg.method,
    path: arg.path,
    params: arg.params,
    body,
  });
  console.log(JSON.stringify({ query, body: body ?? "" }));
} else {
  try {
    const res = await call();
    const text = await res.text();
    console.log(JSON.stringify({ status: res.status, body: JSON.parse(text) }));
  } catch (error) {
    if (error.status === undefined) {
      throw error;
    }
    let body = error.body;
    try {
      body = JSON.parse(body);
    } catch {}
    console.log(JSON.stringify({ status: error.status, body }));
  }
}
