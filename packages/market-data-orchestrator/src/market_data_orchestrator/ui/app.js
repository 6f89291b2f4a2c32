// The operators' status page of market-data-orchestrator: plain JavaScript, no build step,
// no third-party code. The token lives in this tab's sessionStorage and goes out only as a
// bearer header; live updates come from GET /v1/events (server-sent events) read with
// fetch, since EventSource cannot send a header. The pure parts (texts, ticks) are in
// format.js (window.StatusFormat), unit-tested with Node.
"use strict";

const Format = window.StatusFormat;

const TOKEN_KEY = "market-data-orchestrator.token";
const FEEDBACK_WINDOW_MS = 10 * 60 * 1000;
const LEVELS = { ok: 0, soft: 1, hard: 2 };
const CONTROL_ROLES = new Set(["operator", "admin"]);

const page = {
  token: null,
  role: null,
  events: null, // the AbortController of the live stream
  refresher: null,
  feedback: new Map(), // coordinator id -> [{t, level, utilization}]
  latest: new Map(), // coordinator id -> the latest FeedbackEvent
  transport: null, // GET /v1/feedback: the orchestrator's view of its feedback transport
  storeState: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function announce(message) {
  $("live").textContent = message;
}

// -- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${page.token}`, Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: "no-store",
  });
  if (response.status === 401) {
    signOut("The token was refused: sign in again.");
    throw new ApiError(401, "unauthenticated");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = (body && (body.detail || body.message || body.title)) || response.statusText;
    throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

// -- signing in and out ------------------------------------------------------------------

async function signIn(token) {
  page.token = token;
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    page.token = null;
    if (error.status !== 401) $("login-error").textContent = `Cannot sign in: ${error.message}`;
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  page.role = me.role;
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  $("who").hidden = false;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("login-error").textContent = "";
  document.body.dataset.role = me.role;
  start();
  return true;
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  page.token = null;
  page.role = null;
  if (page.events) page.events.abort();
  page.events = null;
  clearInterval(page.refresher);
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("token").value = "";
  $("login-error").textContent = message;
  $("token").focus();
}

function canControl() {
  return CONTROL_ROLES.has(page.role);
}

// -- jobs ----------------------------------------------------------------------------------

function jobRow(job) {
  const state = el("span", { class: "state", "data-state": job.state, text: job.state });
  // data-label: the column's name, shown before each cell where the table stacks (phones)
  const cells = [
    el("th", { scope: "row", text: job.name, "data-label": "Job" }),
    el("td", { "data-label": "State" }, state, job.paused_by ? ` by ${job.paused_by}` : ""),
    el("td", { "data-label": "Replicas", class: "replicas", text: Format.replicaText(job) }),
    el("td", { "data-label": "Throughput", text: Format.throughputText(job) }),
  ];
  if (canControl()) {
    const buttons = el("span", { class: "buttons" }, ...controls(job));
    cells.push(el("td", { class: "actions", "data-label": "Actions" }, buttons));
  }
  return el("tr", { "data-job": job.name }, ...cells);
}

// A control that cannot apply to the job's state is disabled, and its title says why.
function applies(node, allowed) {
  node.disabled = !allowed.enabled;
  if (allowed.reason) node.title = allowed.reason;
  return node;
}

function controls(job) {
  const allowed = Format.controlStates(job);
  const pause = el("button", { type: "button", text: "Pause", "aria-label": `Pause ${job.name}` });
  applies(pause, allowed.pause).addEventListener("click", () => control(job.name, "pause"));
  const resume = el("button", { type: "button", text: "Resume", "aria-label": `Resume ${job.name}` });
  applies(resume, allowed.resume).addEventListener("click", () => control(job.name, "resume"));
  const id = `replicas-${job.name}`;
  const count = applies(el("input", {
    id, type: "number", min: 1, max: job.partitions || 64, value: job.desired_replicas,
  }), allowed.scale);
  const label = el("label", { for: id, text: `Replicas of ${job.name}` });
  label.classList.add("visually-hidden");
  const scale = el("button", { type: "button", text: "Scale", "aria-label": `Scale ${job.name}` });
  applies(scale, allowed.scale).addEventListener("click", () => scaleJob(job.name, Number(count.value)));
  const group = el("span", { class: "scale" }, label, count, scale);
  return [pause, resume, group];
}

async function control(name, verb) {
  try {
    const result = await api(`/v1/jobs/${encodeURIComponent(name)}/${verb}`, { method: "POST" });
    announce(result.message || `${name}: ${verb} sent`);
  } catch (error) {
    announce(`${name}: ${verb} failed: ${error.message}`);
  }
  // the audit record is written before the answer; the state event may come before it
  await Promise.allSettled([refreshJobs(), refreshAudit()]);
}

async function scaleJob(name, replicas) {
  try {
    const info = await api(`/v1/jobs/${encodeURIComponent(name)}/scale`, {
      method: "POST", body: { replicas },
    });
    announce(`${name}: ${info.desired_replicas} replicas`);
  } catch (error) {
    announce(`${name}: scale failed: ${error.message}`);
  }
  await Promise.allSettled([refreshJobs(), refreshAudit()]);
}

async function refreshJobs({ periodic = false } = {}) {
  const body = $("jobs").tBodies[0];
  if (periodic && body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
    return; // someone is typing a replica count: the next refresh will do
  }
  const jobs = await api("/v1/jobs");
  const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
  body.replaceChildren(...jobs.map(jobRow));
  for (const header of document.querySelectorAll("#jobs .controls")) header.hidden = !canControl();
  $("jobs-empty").hidden = jobs.length > 0;
  if (focused) { // keep the keyboard where it was across a re-render
    const again = body.querySelector(`[aria-label="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// -- the store -------------------------------------------------------------------------------

function renderStore(view) {
  const state = $("store-state");
  state.textContent = view.state;
  state.dataset.state = view.state;
  $("store-reason").textContent = view.reason ? `(${view.reason})` : "";
  // reported null: the store's health could not be read, its components are unknown
  const unread = view.reported === null && view.components.length > 0;
  $("store-components").setAttribute("aria-label", unread
    ? "The store's components: unknown, its health cannot be read" : "The store's components");
  $("store-components").dataset.stale = unread ? "true" : "false";
  $("store-components").replaceChildren(
    ...view.components.map((c) =>
      el("li", {}, `${c.name} `, el("span", { class: "state", "data-state": c.state, text: c.state }))),
  );
  const recovered = page.storeState === "unhealthy" && view.state !== "unhealthy";
  if (page.storeState !== null && page.storeState !== view.state) {
    announce(`The store is ${view.state}${view.reason ? `: ${view.reason}` : ""}`);
  }
  page.storeState = view.state;
  if (recovered && !$("symbol").value) loadSymbols().then(loadBars).catch(() => {});
}

async function refreshStore() {
  try {
    renderStore(await api("/v1/store"));
  } catch (error) {
    if (error.status === 404) $("store-reason").textContent = "(this orchestrator watches no store)";
  }
}

// -- backpressure ------------------------------------------------------------------------------

function addFeedback(event) {
  const id = event.coordinator_id;
  const points = page.feedback.get(id) || [];
  const seen = page.latest.get(id);
  if (seen && seen.seq === event.seq && seen.ts === event.ts) return; // sent twice
  points.push({ t: Date.parse(event.ts), level: LEVELS[event.level] ?? 0, utilization: event.utilization ?? 0 });
  points.sort((a, b) => a.t - b.t);
  const since = Date.now() - FEEDBACK_WINDOW_MS;
  while (points.length > 2 && points[0].t < since) points.shift();
  page.feedback.set(id, points);
  page.latest.set(id, event);
  if (page.transport && page.transport.transport) { // a report: the transport is heard
    page.transport = { ...page.transport, connected: true, reason: null };
  }
  renderBackpressure();
}

async function refreshTransport() {
  page.transport = await api("/v1/feedback");
  renderBackpressure();
}

function renderBackpressure() {
  let worst = null;
  for (const event of page.latest.values()) {
    if (worst === null || LEVELS[event.level] > LEVELS[worst.level]) worst = event;
  }
  const text = Format.backpressureText(page.transport, worst);
  $("bp-level").textContent = text.level;
  $("bp-level").dataset.state = text.state;
  $("bp-detail").textContent = text.detail;
  const chart = $("bp-chart");
  chart.toggleAttribute("hidden", worst === null); // no empty frame before the first report
  if (worst === null) return;
  const title = chart.querySelector("title");
  const points = [...page.feedback.values()].flat().sort((a, b) => a.t - b.t);
  const [w, h, left, right, pad] = [600, 130, 34, 8, 18];
  const t1 = Math.max(Date.now(), points[points.length - 1].t);
  const span = Math.min(FEEDBACK_WINDOW_MS, Math.max(60 * 1000, t1 - points[0].t));
  const t0 = t1 - span;
  const x = (t) => left + ((t - t0) / span) * (w - left - right);
  const y = (level) => h - pad - (level / 2) * (h - 2 * pad);
  const nodes = [title];
  for (const [name, level] of Object.entries(LEVELS)) {
    nodes.push(svg("line", { class: "grid", x1: left, x2: w - right, y1: y(level), y2: y(level) }));
    nodes.push(svg("text", { class: "axis", x: 2, y: y(level) + 4 }, name));
  }
  const minutes = Math.round(span / 60000);
  nodes.push(svg("text", { class: "axis", x: left, y: h - 2 }, `${minutes} min ago`));
  nodes.push(svg("text", { class: "axis", x: w - right, y: h - 2, "text-anchor": "end" }, "now"));
  const shown = points.filter((p) => p.t >= t0);
  if (shown.length) {
    const area = shown.map((p) => `${x(p.t)},${y(2 * p.utilization)}`);
    nodes.push(svg("polygon", {
      class: "utilization",
      points: [`${x(shown[0].t)},${y(0)}`, ...area, `${x(shown[shown.length - 1].t)},${y(0)}`].join(" "),
    }));
    let path = `M${x(shown[0].t)},${y(shown[0].level)}`;
    for (const p of shown.slice(1)) path += ` H${x(p.t)} V${y(p.level)}`;
    path += ` H${x(t1)}`;
    nodes.push(svg("path", { class: "level", d: path, "data-points": shown.length }));
  }
  title.textContent = `Backpressure level over the last ${minutes} minutes: ${worst.level} now,`
    + ` ${shown.length} reports, queue ${worst.queue_size} of ${worst.capacity}`;
  chart.replaceChildren(...nodes);
}

// -- bars ------------------------------------------------------------------------------------------

async function loadSymbols() {
  const timeframe = $("timeframe").value;
  let symbols = [];
  try {
    symbols = await api(`/v1/store/symbols?timeframe=${encodeURIComponent(timeframe)}`);
  } catch (error) {
    $("bars-chart").toggleAttribute("hidden", true);
    $("bars-summary").textContent = `No data yet: cannot list symbols (${error.message})`;
    return;
  }
  const select = $("symbol");
  const chosen = select.value;
  select.replaceChildren(...symbols.map((s) => el("option", { value: s.symbol, text: s.symbol })));
  if (symbols.some((s) => s.symbol === chosen)) select.value = chosen;
  if (!symbols.length) {
    $("bars-chart").toggleAttribute("hidden", true);
    $("bars-summary").textContent = `No data yet: no ${timeframe} bars in the store.`;
  }
}

async function loadBars() {
  const symbol = $("symbol").value;
  const timeframe = $("timeframe").value;
  if (!symbol) return;
  const query = `symbol=${encodeURIComponent(symbol)}&timeframe=${encodeURIComponent(timeframe)}&limit=120`;
  try {
    drawBars(symbol, timeframe, await api(`/v1/store/bars?${query}`));
  } catch (error) {
    $("bars-summary").textContent = `Cannot read bars: ${error.message}`;
  }
}

function drawBars(symbol, timeframe, bars) {
  const chart = $("bars-chart");
  const title = chart.querySelector("title");
  const [w, h, left, right, top, bottom] = [800, 280, 64, 12, 12, 28];
  const nodes = [title];
  chart.toggleAttribute("hidden", !bars.length); // no empty frame: the summary says why
  if (!bars.length) {
    title.textContent = `No ${timeframe} bars of ${symbol}`;
    $("bars-summary").textContent = `No data yet: no ${timeframe} bars of ${symbol}.`;
    chart.replaceChildren(...nodes);
    return;
  }
  const low = Math.min(...bars.map((b) => b.low));
  const high = Math.max(...bars.map((b) => b.high));
  const span = high - low || Math.abs(high) || 1;
  const y = (price) => top + (1 - (price - low) / span) * (h - top - bottom);
  const step = (w - left - right) / bars.length;
  const body = Math.max(1, step * 0.6);
  for (const tick of Format.priceTicks(bars)) { // labels with the prices' own decimals
    const at = y(tick.value);
    nodes.push(svg("line", { class: "grid", x1: left, x2: w - right, y1: at, y2: at }));
    nodes.push(svg("text", { class: "axis tick", x: 2, y: at + 4 }, tick.label));
  }
  bars.forEach((bar, i) => {
    const cx = left + step * (i + 0.5);
    const kind = bar.close >= bar.open ? "up" : "down";
    const group = svg("g", { class: `candle ${kind}`, "data-start": bar.start, "data-close": bar.close });
    group.append(svg("line", { class: "wick", x1: cx, x2: cx, y1: y(bar.high), y2: y(bar.low) }));
    const top_ = y(Math.max(bar.open, bar.close));
    group.append(svg("rect", {
      x: cx - body / 2, y: top_, width: body, height: Math.max(1, y(Math.min(bar.open, bar.close)) - top_),
    }));
    group.append(svg("title", {}, `${bar.start}: open ${bar.open}, high ${bar.high}, low ${bar.low}, close ${bar.close}`));
    nodes.push(group);
  });
  const first = bars[0].start.replace("T", " ").slice(0, 16);
  const last = bars[bars.length - 1];
  nodes.push(svg("text", { class: "axis", x: left, y: h - 8 }, first));
  nodes.push(svg("text", { class: "axis", x: w - right, y: h - 8, "text-anchor": "end" },
    last.start.replace("T", " ").slice(0, 16)));
  const summary = `${bars.length} ${timeframe} bars of ${symbol} from ${first} to`
    + ` ${last.start.replace("T", " ").slice(0, 16)} UTC; last close ${last.close}`;
  title.textContent = summary;
  $("bars-summary").textContent = summary;
  chart.replaceChildren(...nodes);
}

// -- audit ------------------------------------------------------------------------------------------

async function refreshAudit() {
  if (page.role !== "admin") {
    $("audit-note").textContent = "The audit log is shown to admin tokens.";
    $("audit").hidden = true;
    return;
  }
  const records = await api("/v1/audit?limit=20");
  $("audit-note").textContent = records.length ? "" : "No audit records yet.";
  $("audit").hidden = records.length === 0;
  $("audit").tBodies[0].replaceChildren(...records.map((r) => el("tr", {},
    el("td", { text: r.ts.replace("T", " ").slice(0, 19), "data-label": "Time (UTC)" }),
    el("td", { text: r.actor, "data-label": "Who" }),
    el("td", { text: r.action, "data-label": "Action" }),
    el("td", { text: r.target || "", "data-label": "Target" }),
    el("td", { text: r.reason ? `${r.result}: ${r.reason}` : r.result, "data-label": "Result" }),
  )));
}

// -- live updates -------------------------------------------------------------------------------

function setConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection").textContent = `Live updates: ${text}`;
}

async function follow(controller) {
  const response = await fetch("/v1/events", {
    headers: { Authorization: `Bearer ${page.token}`, Accept: "text/event-stream" },
    signal: controller.signal,
    cache: "no-store",
  });
  if (response.status === 401) {
    signOut("The token was refused: sign in again.");
    return;
  }
  if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
  setConnection("live", "on");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(frame) {
  let kind = "message";
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (kind === "state") {
    if (payload.replica === null) announce(`${payload.name} is ${payload.new}`);
    refreshJobs().catch(() => {});
    if (page.role === "admin") refreshAudit().catch(() => {});
  } else if (kind === "store") {
    renderStore(payload);
  } else if (kind === "feedback") {
    addFeedback(payload);
  }
}

async function live() {
  let delay = 1000;
  while (page.token !== null) {
    const controller = new AbortController();
    page.events = controller;
    try {
      await follow(controller);
      delay = 1000;
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (page.token === null) return;
    setConnection("lost", "reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function start() {
  setConnection("connecting", "connecting");
  live();
  await Promise.allSettled([refreshJobs(), refreshStore(), refreshAudit(), refreshTransport()]);
  await loadSymbols();
  await loadBars();
  page.refresher = setInterval(() => {
    refreshJobs({ periodic: true }).catch(() => {});
    refreshTransport().catch(() => {});
    // no symbol yet (the page opened before the first bars): ask again while the store is
    // healthy (a refused read is audited; a store coming back triggers a reload of its own)
    if (!$("symbol").value && page.storeState === "healthy") loadSymbols().then(loadBars).catch(() => {});
  }, 5000);
}

// -- wiring -------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token && !(await signIn(token))) {
      $("login-error").textContent ||= "That token was refused.";
      $("token").focus();
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("bars-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadBars();
  });
  $("timeframe").addEventListener("change", async () => {
    await loadSymbols();
    await loadBars();
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else $("token").focus();
});
