// The pushhub admin dashboard: plain JavaScript over the server API of the listener that
// serves it. No data lives here: every number comes from the API on each refresh, with the
// admin key the operator typed (kept in this tab's sessionStorage, never in a URL).
// Everything the server sends is shown with textContent, never as HTML.

const KEY = "pushhub-admin-key";
const REFRESH_MS = 2000;
const CHART_POINTS = 60;
/** Users listed (in id order) with their connections; the totals always cover everyone. */
const USERS_PAGE = 500;

const $ = (selector) => document.querySelector(selector);

/** An element with attributes (`class`, `data-*`, `title`, …) and children (text or nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const state = {
  app: null,
  view: "overview",
  samples: [], // {t, published, deliveries}
  timerState: "pending",
  users: null,
  open: new Set(), // users whose connections are shown
  timer: null,
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "unreachable", "the server does not answer");
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new ApiError(response.status, error.code ?? "http_error", error.message ?? `HTTP ${response.status}`);
  }
  return answer;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- formatting

const number = new Intl.NumberFormat("en");
const fmt = (n) => (n === null || n === undefined ? "–" : number.format(n));
const rate = (n) => (n >= 100 ? number.format(Math.round(n)) : n.toFixed(1));

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function duration(secs) {
  if (secs < 60) return `${Math.floor(secs)} s`;
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min`;
}

/** "3 min ago" / "in 20 s", with the local date and time as its title. */
function when(ms) {
  if (!ms) return el("span", { class: "muted" }, "–");
  const secs = (ms - Date.now()) / 1000;
  const text = Math.abs(secs) < 1 ? "now" : secs > 0 ? `in ${duration(secs)}` : `${duration(-secs)} ago`;
  return el("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() }, text);
}

function toast(text, kind = "ok") {
  const item = el("li", { class: kind }, text);
  $("#toasts").append(item);
  setTimeout(() => item.remove(), kind === "bad" ? 8000 : 4000);
}

function failed(error) {
  if (error.status === 401 || (error.status === 403 && error.code !== "forbidden")) {
    signOut(`${error.message} (${error.code})`);
    return;
  }
  toast(`${error.message} (${error.code ?? "error"})`, "bad");
}

/** A modal confirmation; resolves with the extra fields' values, or null when cancelled. */
function confirmAction(title, text, { action = "Confirm", extra = null } = {}) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  $("#confirm-extra").replaceChildren(...(extra ? [extra] : []));
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      $("#confirm-ok").onclick = null;
      $("#confirm-cancel").onclick = null;
      resolve(ok);
    };
    $("#confirm-ok").onclick = () => done(true);
    $("#confirm-cancel").onclick = () => done(false);
    dialog.oncancel = () => done(false);
  });
}

// ---------------------------------------------------------------- sign in

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearTimeout(state.timer);
  state.timer = null;
  $("#shell").hidden = true;
  $("#status").hidden = true;
  $("#login-view").hidden = false;
  const box = $("#login-error");
  box.hidden = !message;
  box.textContent = message ?? "";
  $("#key").focus();
}

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  try {
    const overview = await api("GET", "/v1/admin/overview");
    $("#login-view").hidden = true;
    $("#login-error").hidden = true;
    $("#shell").hidden = false;
    $("#status").hidden = false;
    fillApps(overview);
    state.samples = [];
    await refresh();
  } catch (error) {
    signOut(`${error.message} (${error.code})`);
  }
}

// ---------------------------------------------------------------- header and apps

function fillApps(overview) {
  const select = $("#app");
  const names = overview.apps.map((a) => a.app);
  const stored = sessionStorage.getItem("pushhub-admin-app");
  if (!state.app || !names.includes(state.app)) state.app = names.includes(stored) ? stored : names[0] ?? null;
  const current = [...select.options].map((o) => o.value).join("\n");
  if (current !== names.join("\n")) select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  select.value = state.app ?? "";
}

function pill(node, healthy, text, problem) {
  node.className = `pill ${healthy ? "connected" : "bad"}`;
  node.textContent = text;
  node.title = problem ?? "healthy";
}

// ---------------------------------------------------------------- views

const views = {
  async overview(overview, stats) {
    const totals = overview.apps.reduce((sum, a) => ({ users: sum.users + a.users, conns: sum.conns + a.connections }), { users: 0, conns: 0 });
    $("#stat-connections").textContent = fmt(stats.connections);
    $("#stat-connections-total").textContent = `${fmt(stats.connections_total)} since start`;
    $("#stat-users").textContent = fmt(totals.users);
    $("#stat-apps").textContent = `${overview.apps_total} app${overview.apps_total === 1 ? "" : "s"}`;
    const [pub, del] = currentRates();
    $("#stat-rate").textContent = pub === null ? "–" : rate(pub);
    $("#stat-published").textContent = `${fmt(stats.messages_published)} published`;
    $("#stat-deliveries").textContent = del === null ? "–" : rate(del);
    $("#stat-delivered").textContent = `${fmt(stats.deliveries)} delivered`;
    $("#stat-memory").textContent = bytes(overview.memory.rss_bytes);
    $("#stat-history").textContent = `history ${bytes(stats.broker?.history_bytes ?? 0)}`;
    $("#stat-uptime").textContent = duration(overview.uptime_secs);
    $("#stat-version").textContent = `pushhub ${overview.version}`;
    drawChart();
    $("#apps-table tbody").replaceChildren(
      ...overview.apps.map((a) =>
        el(
          "tr",
          { "data-app": a.app },
          el("td", {}, el("code", {}, a.app)),
          el("td", { class: "num" }, fmt(a.users)),
          el("td", { class: "num" }, fmt(a.connections)),
          el("td", { class: "actions" }, el("button", { type: "button", class: "small", onclick: () => go("users", a.app) }, "Users →")),
        ),
      ),
    );
    const timers = stats.timers ?? {};
    facts($("#health"), [
      ["Engine", `${overview.engine.broker} broker, ${overview.engine.presence} presence`, overview.engine.healthy ? "ok" : "bad", overview.engine.problem],
      ["Timer store", overview.store.kind, overview.store.healthy ? "ok" : "bad", overview.store.healthy ? null : "damaged: see the server log"],
      ["Node", overview.node],
      ["Timers", `${fmt(timers.pending)} pending · ${fmt(timers.running)} running · ${fmt(timers.failed)} failed`],
      ["Cron", `${fmt(stats.cron?.jobs ?? 0)} job${stats.cron?.jobs === 1 ? "" : "s"} · ${fmt(stats.cron?.runs ?? 0)} runs · ${fmt(stats.cron?.failed ?? 0)} failed`],
    ]);
    facts($("#counters"), [
      ["Bytes in / out", `${bytes(stats.bytes_in)} / ${bytes(stats.bytes_out)}`],
      ["Frames from clients", fmt(stats.frames_in)],
      ["Replayed on resume", fmt(stats.replayed)],
      ["Slow consumers cut off", fmt(stats.slow_consumers), stats.slow_consumers ? "warn" : null],
      ["Rate-limited", `${fmt(stats.rate_limited_connections)} connections · ${fmt(stats.rate_limited_requests)} requests`],
      ["History", `${fmt(stats.broker?.history_messages ?? 0)} messages in ${fmt(stats.broker?.streams ?? 0)} channel${stats.broker?.streams === 1 ? "" : "s"}`],
    ]);
  },

  async users() {
    if (!state.app) return;
    const answer = await api("GET", `/v1/apps/${enc(state.app)}/users?conns=true&limit=${USERS_PAGE}`);
    state.users = answer;
    renderUsers();
  },

  async timers() {
    if (!state.app) return;
    const answer = await api("GET", `/v1/timers?app=${enc(state.app)}&state=${state.timerState}&limit=100`);
    const rows = answer.timers.map((t) =>
      el(
        "tr",
        { "data-timer": t.id, "data-state": t.state },
        el("td", {}, el("code", {}, t.id)),
        el("td", { class: "call" }, el("span", { class: "method" }, t.method), " ", el("span", { class: "url", title: t.url }, t.url)),
        el("td", {}, when(t.finished_ms ?? t.due_ms)),
        el("td", { class: "num" }, `${t.attempts} / ${t.retry.max_attempts}`),
        el("td", { class: "answer" }, lastAnswer(t.last_attempt)),
        el(
          "td",
          { class: "actions" },
          t.state === "pending" || t.state === "running" ? el("button", { type: "button", class: "small cancel", onclick: () => cancelTimer(t) }, "Cancel") : null,
          t.state === "failed" ? el("button", { type: "button", class: "small retry", onclick: () => retryTimer(t) }, "Retry") : null,
        ),
      ),
    );
    $("#timers-table tbody").replaceChildren(...rows);
    $("#timers-empty").hidden = rows.length > 0;
  },

  async cron() {
    if (!state.app) return;
    const answer = await api("GET", `/v1/cron?app=${enc(state.app)}`);
    const rows = answer.jobs.map((job) => {
      const last = job.last_run;
      return el(
        "tr",
        { "data-job": job.name, "data-paused": job.paused ? "true" : "false" },
        el("td", {}, el("code", {}, job.name), job.paused ? el("span", { class: "badge warn" }, "paused") : null, job.running ? el("span", { class: "badge" }, "running") : null),
        el("td", {}, el("code", {}, job.schedule), " ", el("span", { class: "muted" }, job.time_zone)),
        el("td", {}, job.paused ? el("span", { class: "muted" }, "paused") : when(job.next_run_ms)),
        el("td", {}, last ? [el("span", { class: `outcome ${last.outcome}` }, last.outcome), " ", when(last.started_ms), last.status ? el("span", { class: "muted" }, ` · ${last.status}`) : null] : el("span", { class: "muted" }, "never")),
        el("td", { class: "num" }, `${fmt(job.runs)} / ${fmt(job.failed)}`),
        el(
          "td",
          { class: "actions" },
          job.paused
            ? el("button", { type: "button", class: "small resume", onclick: () => cronAction(job, "resume") }, "Resume")
            : el("button", { type: "button", class: "small pause", onclick: () => cronAction(job, "pause") }, "Pause"),
          el("button", { type: "button", class: "small run", onclick: () => cronAction(job, "run") }, "Run now"),
        ),
      );
    });
    $("#cron-table tbody").replaceChildren(...rows);
    $("#cron-empty").hidden = rows.length > 0;
  },

  async history() {
    const input = $("#history-channel");
    if (state.app && (!input.value || !input.value.startsWith(`${state.app}:`))) input.value = `${state.app}:all`;
  },

  async cluster(overview) {
    const cluster = overview.cluster;
    $("#cluster-mode").textContent = cluster.spans_nodes
      ? `${cluster.nodes.length} live node${cluster.nodes.length === 1 ? "" : "s"} share the ${overview.engine.broker} engine. Connections, presence, kicks and timers span all of them.`
      : `Single node: the ${overview.engine.broker} engine keeps everything in this process. Use engine = "redis" to run several nodes.`;
    $("#nodes").replaceChildren(
      ...cluster.nodes.map((node) =>
        el("li", { "data-node": node }, el("span", { class: "dot" }), el("code", {}, node), node === overview.node ? el("span", { class: "badge" }, "this node") : null),
      ),
    );
  },
};

function facts(list, rows) {
  list.replaceChildren(
    ...rows.flatMap(([name, value, kind, title]) => [
      el("dt", {}, name),
      el("dd", { class: kind ?? null, title: title ?? null }, kind === "ok" ? "● " : kind === "bad" ? "▲ " : null, value),
    ]),
  );
}

function lastAnswer(attempt) {
  if (!attempt) return el("span", { class: "muted" }, "–");
  const good = attempt.status && attempt.status < 400 && !attempt.error;
  return el(
    "span",
    { class: good ? "outcome succeeded" : "outcome failed", title: attempt.response ?? attempt.error ?? "" },
    attempt.status ? `HTTP ${attempt.status}` : "no answer",
    attempt.error && !/^HTTP \d+$/.test(attempt.error) ? el("span", { class: "muted" }, ` · ${attempt.error}`) : null,
  );
}

// ---------------------------------------------------------------- users

function renderUsers() {
  const answer = state.users;
  if (!answer) return;
  const filter = $("#users-filter").value.trim();
  const users = answer.users.filter((u) => !filter || u.user.includes(filter));
  const shown = answer.next_cursor ? ` · the first ${fmt(answer.users.length)} by id shown` : "";
  $("#users-summary").textContent = `${fmt(answer.total_users)} users · ${fmt(answer.total_connections)} connections${shown}`;
  const rows = [];
  for (const u of users) {
    const conns = u.conns;
    const open = state.open.has(u.user);
    const transports = conns ? [...new Set(conns.map((c) => c.transport))] : [];
    rows.push(
      el(
        "tr",
        { "data-user": u.user, class: open ? "open" : null },
        el("td", {}, el("button", { type: "button", class: "link toggle", "aria-expanded": open ? "true" : "false", onclick: () => toggleUser(u.user) }, open ? "▾ " : "▸ ", u.user)),
        el("td", { class: "num" }, fmt(u.connections)),
        el("td", {}, el("span", { class: "chips" }, transports.map((t) => el("span", { class: "chip" }, t)))),
        el("td", { class: "actions" }, el("button", { type: "button", class: "small danger disconnect", onclick: () => disconnect(u.user) }, "Disconnect")),
      ),
    );
    if (open) rows.push(el("tr", { class: "detail", "data-conns-of": u.user }, el("td", { colspan: 4 }, connTable(u))));
  }
  $("#users-table tbody").replaceChildren(...rows);
  $("#users-empty").hidden = answer.users.length > 0;
}

function connTable(user) {
  if (!user.conns) return el("p", { class: "muted" }, "This server does not report connection details (it needs GET /v1/apps/{app}/users?conns=true).");
  const elsewhere = user.connections - user.conns.length;
  const note = elsewhere > 0 ? el("p", { class: "hint note" }, `${elsewhere} more on other nodes: their details are on the node that holds them.`) : null;
  return el(
    "div",
    {},
    note,
    el(
    "table",
    { class: "table inner" },
    el("thead", {}, el("tr", {}, ["Connection", "Node", "Transport", "Dialect", "Address", "Connected", "Queue", ""].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      user.conns.map((c) =>
        el(
          "tr",
          { "data-conn": c.conn },
          el("td", {}, el("code", {}, c.conn)),
          el("td", {}, el("code", {}, c.node ?? "–")),
          el("td", {}, el("span", { class: "chip" }, c.transport ?? "–")),
          el("td", {}, c.dialect ?? "–"),
          el("td", {}, el("code", {}, c.addr ?? "–")),
          el("td", {}, when(c.since)),
          el("td", { class: "num" }, fmt(c.queue)),
          el("td", { class: "actions" }, el("button", { type: "button", class: "small danger disconnect-conn", onclick: () => disconnect(user.user, c.conn) }, "Close")),
        ),
      ),
    ),
    ),
  );
}

function toggleUser(user) {
  if (state.open.has(user)) state.open.delete(user);
  else state.open.add(user);
  renderUsers();
}

async function disconnect(user, conn) {
  const reconnect = el("input", { type: "checkbox", id: "confirm-reconnect" });
  const reason = el("input", { id: "confirm-reason", placeholder: "shown to the client (optional)", maxlength: 120 });
  const extra = el("div", { class: "fields" }, el("label", {}, "Reason", reason), el("label", { class: "check" }, reconnect, " let the client reconnect"));
  const what = conn ? `connection ${conn} of user “${user}”` : `every connection of user “${user}”`;
  if (!(await confirmAction("Disconnect?", `Close ${what} in app ${state.app}.`, { action: "Disconnect", extra }))) return;
  const body = { app: state.app, user, reconnect: reconnect.checked };
  if (conn) body.conn = conn;
  if (reason.value.trim()) body.reason = reason.value.trim();
  try {
    const answer = await api("POST", "/v1/disconnect", body);
    toast(`Disconnected ${answer.disconnected} connection${answer.disconnected === 1 ? "" : "s"} of ${user}`);
  } catch (error) {
    failed(error);
  }
  await refresh();
}

// ---------------------------------------------------------------- timers and cron

async function cancelTimer(timer) {
  if (!(await confirmAction("Cancel this timer?", `Timer ${timer.id} will not call ${timer.method} ${timer.url}.`, { action: "Cancel timer" }))) return;
  try {
    await api("DELETE", `/v1/timers/${enc(timer.id)}`);
    toast(`Timer ${timer.id} cancelled`);
  } catch (error) {
    failed(error);
  }
  await refresh();
}

async function retryTimer(timer) {
  try {
    const retried = await api("POST", `/v1/timers/${enc(timer.id)}/retry`);
    toast(`Timer ${timer.id} runs again as timer ${retried.id}`);
  } catch (error) {
    failed(error);
  }
  await refresh();
}

async function cronAction(job, action) {
  try {
    await api("POST", `/v1/cron/${enc(job.name)}/${action}?app=${enc(state.app)}`);
    toast({ pause: `Paused ${job.name}`, resume: `Resumed ${job.name}`, run: `${job.name} runs now` }[action]);
  } catch (error) {
    failed(error);
  }
  await refresh();
}

// ---------------------------------------------------------------- history

async function readHistory(event) {
  event?.preventDefault();
  const channel = $("#history-channel").value.trim();
  if (!channel || !state.app) return;
  try {
    const answer = await api("GET", `/v1/apps/${enc(state.app)}/history?channel=${enc(channel)}&limit=${enc($("#history-limit").value)}`);
    $("#history-position").textContent = answer.top ? `Top offset ${answer.top} · epoch ${answer.epoch} · showing ${answer.messages.length}, newest last` : "Nothing was published to this channel (or its history expired).";
    const items = answer.messages.map((m) =>
      el(
        "li",
        { "data-off": m.off },
        el("span", { class: "off" }, `#${m.off}`),
        el("span", { class: "time" }, when(m.ts)),
        el("span", { class: "event" }, m.event ?? ""),
        el("span", { class: "data" }, m.from ? el("span", { class: "from" }, `${m.from}: `) : null, JSON.stringify(m.data)),
      ),
    );
    $("#history-list").replaceChildren(...items);
    $("#history-empty").hidden = items.length > 0;
  } catch (error) {
    failed(error);
  }
}

// ---------------------------------------------------------------- rates and chart

function sample(stats) {
  state.samples.push({ t: performance.now(), published: stats.messages_published, deliveries: stats.deliveries });
  if (state.samples.length > CHART_POINTS + 1) state.samples.shift();
}

function ratesAt(i) {
  const [a, b] = [state.samples[i - 1], state.samples[i]];
  const secs = (b.t - a.t) / 1000;
  return secs > 0 ? [(b.published - a.published) / secs, (b.deliveries - a.deliveries) / secs] : [0, 0];
}

function currentRates() {
  return state.samples.length < 2 ? [null, null] : ratesAt(state.samples.length - 1);
}

function drawChart() {
  const svg = $("#chart");
  const points = [];
  for (let i = 1; i < state.samples.length; i++) points.push(ratesAt(i));
  const top = Math.max(1, ...points.flat());
  const [w, h] = [600, 140];
  const line = (k) =>
    points.map((p, i) => `${((CHART_POINTS - points.length + i) / (CHART_POINTS - 1)) * w},${h - 6 - (p[k] / top) * (h - 16)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const shape = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  $("#chart-top").textContent = `${rate(top)}/s`;
  svg.replaceChildren(
    shape("line", { x1: 0, x2: w, y1: 10, y2: 10, class: "grid" }),
    shape("line", { x1: 0, x2: w, y1: h - 6, y2: h - 6, class: "grid" }),
    ...(points.length > 1 ? [shape("polyline", { points: line(1), class: "del" }), shape("polyline", { points: line(0), class: "pub" })] : []),
  );
}

// ---------------------------------------------------------------- refresh loop

async function refresh() {
  clearTimeout(state.timer);
  try {
    const [overview, stats] = await Promise.all([api("GET", "/v1/admin/overview"), api("GET", "/v1/stats")]);
    sample(stats);
    fillApps(overview);
    pill($("#engine"), overview.engine.healthy, `engine ${overview.engine.broker}`, overview.engine.problem);
    pill($("#store"), overview.store.healthy, `store ${overview.store.kind}`, overview.store.healthy ? null : "damaged");
    $("#node").textContent = overview.node;
    $("#updated").textContent = new Date().toLocaleTimeString();
    await views[state.view](overview, stats);
  } catch (error) {
    failed(error);
    if (!sessionStorage.getItem(KEY) && $("#shell").hidden) return;
  }
  if (!$("#shell").hidden) state.timer = setTimeout(refresh, REFRESH_MS);
}

function go(view, app) {
  if (app) {
    state.app = app;
    $("#app").value = app;
    sessionStorage.setItem("pushhub-admin-app", app);
  }
  location.hash = view;
}

function showView() {
  const view = location.hash.slice(1);
  state.view = views[view] ? view : "overview";
  if (state.view === "history") views.history();
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${state.view}`;
  for (const tab of document.querySelectorAll("#tabs a")) tab.classList.toggle("on", tab.dataset.view === state.view);
  if (!$("#shell").hidden) refresh();
}

// ---------------------------------------------------------------- start

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("#key").value.trim());
});
$("#signout").addEventListener("click", () => signOut());
$("#app").addEventListener("change", () => {
  state.app = $("#app").value;
  sessionStorage.setItem("pushhub-admin-app", state.app);
  state.open.clear();
  state.users = null;
  $("#history-list").replaceChildren();
  refresh();
});
$("#users-filter").addEventListener("input", renderUsers);
$("#users-form").addEventListener("submit", (event) => event.preventDefault());
$("#history-form").addEventListener("submit", readHistory);
for (const button of document.querySelectorAll("#timer-states button")) {
  button.addEventListener("click", () => {
    state.timerState = button.dataset.state;
    for (const b of document.querySelectorAll("#timer-states button")) b.classList.toggle("on", b === button);
    refresh();
  });
}
window.addEventListener("hashchange", showView);

showView();
if (sessionStorage.getItem(KEY) !== null) signIn(sessionStorage.getItem(KEY));
else signOut();
