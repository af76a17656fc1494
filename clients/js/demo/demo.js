// The demo page: the real SDK (served at /demo/pushhub.js) driven by a few forms.
// Everything a server sends is shown with textContent, never as HTML.
import { connect } from "./pushhub.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_ROWS = 500;

// What the page saw, for the console and the browser tests.
const demo = { client: null, messages: [], events: [] };
// Where the last client of each app/user stood: Connect after Disconnect resumes from it.
const cursors = new Map();
window.demo = demo;

// -- form defaults: query string, then what was used last time, then the server's defaults

const saved = JSON.parse(localStorage.getItem("pushhub-demo") ?? "{}");
const initial = (key, fallback) => params.get(key) ?? saved[key] ?? fallback;
$("url").value = initial("url", location.origin);
$("app").value = initial("app", "demo");
$("user").value = initial("user", "100");
$("token").value = params.get("token") ?? "";
$("api").value = initial("api", `${location.protocol}//${location.hostname}:8082`);
$("target").value = $("user").value;
$("send-to").value = $("user").value;
if (params.get("transports")) {
  const wanted = params.get("transports").split(",");
  for (const t of ["websocket", "sse", "poll"]) $(`t-${t}`).checked = wanted.includes(t);
}

// -- rendering

const time = () => new Date().toLocaleTimeString([], { hour12: false }) + "." + String(Date.now() % 1000).padStart(3, "0");

function cell(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

function prepend(list, item) {
  list.prepend(item);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

function log(kind, text, tone = "") {
  demo.events.push({ kind, text });
  const li = document.createElement("li");
  li.append(cell("time", time()), cell(`kind ${tone}`, kind), cell("text", text));
  prepend($("log"), li);
}

function show(id, value, ok) {
  const el = $(id);
  el.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  el.className = `result ${ok ? "ok" : "bad"}`;
}

function render(msg) {
  const li = document.createElement("li");
  const data = typeof msg.data === "string" ? msg.data : JSON.stringify(msg.data);
  li.append(
    cell("time", time()),
    cell("ch", msg.ch),
    cell("off", `#${msg.off}`),
    cell("event", msg.event ?? "—"),
    cell("data", data),
  );
  if (msg.from !== undefined) li.lastChild.prepend(cell("from", `from ${msg.from}: `));
  li.dataset.id = msg.id;
  prepend($("messages"), li);
  $("count").textContent = String(demo.messages.length);
  $("no-messages").hidden = true;
}

function setState(state) {
  const pill = $("state");
  pill.textContent = state;
  pill.className = `pill ${state}`;
  pill.dataset.state = state;
  const client = demo.client;
  const live = client && state !== "closed";
  $("connect").disabled = Boolean(live);
  $("disconnect").disabled = !live;
  $("reconnect").disabled = !client;
  $("transport").hidden = state !== "connected";
  $("conn").hidden = state !== "connected";
  if (state === "connected") {
    $("transport").textContent = client.transport;
    $("conn").textContent = `conn ${client.session?.conn ?? "?"}`;
  }
}

function showRooms() {
  const box = $("rooms");
  box.replaceChildren(...(demo.client?.rooms ?? []).map((room) => cell("chip", room)));
}

function parseData(text) {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text; // plain text is pushed as a string
  }
}

// -- the client

$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  demo.client?.close();
  const transports = ["websocket", "sse", "poll"].filter((t) => $(`t-${t}`).checked);
  if (transports.length === 0) return log("error", "pick at least one transport", "bad");
  const options = {
    url: $("url").value.trim(),
    app: $("app").value.trim(),
    user: $("user").value.trim() || undefined,
    transports,
  };
  const token = $("token").value.trim();
  if (token) options.token = token;
  const key = `${options.url} ${options.app} ${options.user ?? token}`;
  if (cursors.get(key)) options.since = cursors.get(key);
  if (params.get("backoff")) {
    const [min, max] = params.get("backoff").split(",").map(Number);
    options.reconnect = { min, max };
  }
  localStorage.setItem("pushhub-demo", JSON.stringify({ url: options.url, app: options.app, user: options.user, api: $("api").value.trim() }));
  let client;
  try {
    client = connect(options);
  } catch (error) {
    return log("error", error.message, "bad");
  }
  demo.client = client;
  client.on("state", (state) => {
    if (state === "closed") cursors.set(key, client.cursor);
    setState(state);
    if (state === "connecting" || state === "reconnecting") log("state", state, "warn");
  });
  client.on("connected", ({ transport, conn, user, welcome }) => {
    setState("connected");
    log("connected", `as ${user} over ${transport}, conn ${conn}, channels ${welcome.channels?.map((c) => c.ch).join(", ") || "(long-poll)"}`, "good");
    showRooms();
  });
  client.on("disconnected", ({ code, reason, status, willReconnect, delay }) => {
    const why = status ? `HTTP ${status}` : `close ${code}`;
    log("disconnected", `${why} ${reason || ""}${willReconnect ? ` — reconnecting in ${delay} ms` : ""}`.trim(), "warn");
  });
  client.on("recovered", ({ recovered, lost }) => {
    log("recovered", recovered ? "resumed: nothing missed" : `could not recover ${lost.join(", ")}: some messages may be missing`, recovered ? "good" : "bad");
  });
  client.on("error", (error) => log("error", `${error.code}: ${error.message}`, "bad"));
  client.on("message", (msg) => {
    demo.messages.push(msg);
    render(msg);
    $("cursor").textContent = client.cursor || "—";
  });
  setState(client.state);
  log("connect", `${options.url} app=${options.app} user=${options.user ?? "(from token)"} via ${transports.join(" → ")}${options.since ? ", resuming" : ""}`);
});

$("disconnect").addEventListener("click", () => {
  demo.client?.close();
  showRooms();
});

$("reconnect").addEventListener("click", () => demo.client?.reconnect());

// -- client frames: each answer or error lands in the result box

async function frame(label, call) {
  if (!demo.client) return show("frame-result", "connect first", false);
  try {
    const answer = await call(demo.client);
    show("frame-result", `${label} → ${JSON.stringify(answer)}`, true);
    log(label, JSON.stringify(answer), "good");
  } catch (error) {
    show("frame-result", `${label} → ${error.code}: ${error.message}`, false);
    log(label, `${error.code}: ${error.message}`, "bad");
  }
  showRooms();
}

$("rpc-form").addEventListener("submit", (event) => {
  event.preventDefault();
  frame("rpc", (c) => c.rpc($("rpc-method").value.trim(), parseData($("rpc-data").value)));
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  frame("join", (c) => c.join($("room").value.trim()));
});

$("leave").addEventListener("click", () => frame("leave", (c) => c.leave($("room").value.trim())));

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  frame("send", (c) => c.send($("send-to").value.trim(), $("send-event").value.trim() || undefined, parseData($("send-data").value)));
});

$("clear").addEventListener("click", () => {
  $("messages").replaceChildren();
  $("no-messages").hidden = false;
});

// -- the push API, as a backend calls it

async function api(method, path, body) {
  const base = $("api").value.trim().replace(/\/+$/, "");
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) headers.authorization = `Bearer ${key}`;
  try {
    const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    show("api-result", `${method} ${path} → ${response.status}\n${JSON.stringify(answer, null, 2)}`, response.ok);
    return answer;
  } catch (error) {
    show(
      "api-result",
      `${method} ${base}${path} failed: ${error.message}\nIs the API at ${base}? The demo may call it only when it listens on loopback (docs/client-js.md).`,
      false,
    );
    return null;
  }
}

$("push-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = { app: $("app").value.trim(), [$("target-kind").value]: $("target").value.trim() };
  const eventName = $("event").value.trim();
  if (eventName) body.event = eventName;
  const data = parseData($("data").value);
  if (data !== undefined) body.data = data;
  api("POST", "/v1/push", body);
});

$("users").addEventListener("click", () => api("GET", `/v1/apps/${encodeURIComponent($("app").value.trim())}/users`));

$("kick").addEventListener("click", () =>
  api("POST", "/v1/disconnect", { app: $("app").value.trim(), user: $("user").value.trim(), reason: "kicked from the demo page" }),
);

setState("idle");
if (params.get("autoconnect") === "1") $("connect-form").requestSubmit();
