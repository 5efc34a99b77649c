// Dalal console: every page's script. No framework, no CDN: plain DOM, fetch and EventSource.
// Text from the services is always set as text (never as HTML).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const csrf = () => (document.querySelector("meta[name=csrf-token]") || {}).content || "";

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, data: { error: "offline", message: "the console is not reachable" } };
  }
  let data = null;
  const type = resp.headers.get("content-type") || "";
  if (type.includes("json")) data = await resp.json().catch(() => null);
  if (resp.status === 401 && data && data.error === "login_required") {
    location.href = "/login?next=" + encodeURIComponent(location.pathname);
  }
  return { ok: resp.ok, status: resp.status, data };
}

const errText = (r) =>
  (r.data && (r.data.message || r.data.error)) || `HTTP ${r.status}`;

function flash(text, kind = "info") {
  const box = $("#flash");
  if (!box) return;
  const item = el("div", { class: `flash ${kind}` }, text);
  box.prepend(item);
  setTimeout(() => item.remove(), kind === "error" ? 15000 : 6000);
}

function confirmAction(text) {
  const dialog = $("#confirm");
  if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(text));
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// an action button: confirm (when asked), call, report, refresh
function action(label, { method = "POST", path, body, confirm, done, cls, id }) {
  return el("button", {
    type: "button", class: cls || "", id,
    on: {
      click: async (ev) => {
        const button = ev.currentTarget;
        if (confirm && !(await confirmAction(confirm))) return;
        button.disabled = true;
        const r = await api(method, path, typeof body === "function" ? body() : body);
        button.disabled = false;
        if (!r.ok) flash(`${label}: ${errText(r)}`, "error");
        else flash(`${label}: done`, "ok");
        if (done) done(r);
      },
    },
  }, label);
}

function table(columns, rows, empty = "nothing here", attrs = {}) {
  if (!rows || !rows.length) return el("p", { class: "muted" }, empty);
  return el("div", { class: "scroll" },
    el("table", attrs,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c[0])))),
      el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
        const v = c[1](row);
        return el("td", c[2] ? { class: c[2](row) } : {}, v === null || v === undefined ? "" : v);
      }))))));
}

const money = (v) => (v === null || v === undefined || v === "" ? "-" :
  Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
const sign = (v) => (Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : "");
const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/\.\d+/, "").replace("+05:30", " IST") : "");

// a figure as people read it: money and counts as given, long fractions to 6 significant digits
function figure(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  if (typeof v === "string" && /^-?\d+\.\d{7,}$/.test(v)) return String(Number(Number(v).toPrecision(6)));
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function card(title, ...body) {
  return el("section", { class: "card" }, el("h2", {}, title), ...body);
}

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.flatMap(([k, v, cls]) => [el("dt", {}, k), el("dd", { class: cls || "" }, v)]));
}

function main(...children) {
  const m = $("#main");
  m.replaceChildren(...children);
}

// ----------------------------------------------------------------------- live updates
const listeners = [];
function onBus(fn) { listeners.push(fn); }

function startLive() {
  const badge = $("#live");
  if (!window.EventSource || !badge) return;
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => { badge.textContent = "live"; badge.className = "live on"; });
  source.addEventListener("bus", (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.connected === false) { badge.textContent = "bus down"; badge.className = "live off"; return; }
    badge.textContent = "live"; badge.className = "live on";
    for (const fn of listeners) fn(msg);
  });
  source.onerror = () => { badge.textContent = "reconnecting"; badge.className = "live off"; };
}

// refresh at most every 500 ms however many events arrive
function debounced(fn, ms = 500) {
  let timer = null;
  return () => { if (!timer) timer = setTimeout(() => { timer = null; fn(); }, ms); };
}

function describe(msg) {
  const d = msg.data || {};
  switch (msg.type) {
    case "OrderFilled": return `Fill: ${d.side || ""} ${d.quantity} ${d.symbol || ""} @ ${d.price} (${d.client_order_id})`;
    case "OrderRejected": return `Rejected: ${d.client_order_id}: ${d.reason || ""}`;
    case "OrderAccepted": return `Accepted at the exchange: ${d.client_order_id}`;
    case "OrderCancelled": return `Cancelled: ${d.client_order_id}`;
    case "KillSwitchEngaged": return `Kill switch engaged: ${d.reason || ""}`;
    case "KillSwitchReleased": return "Kill switch released";
    case "SessionExpired": return "Kite session expired: log in again";
    case "SessionValid": return "Kite session valid";
    default: return null;
  }
}

// ----------------------------------------------------------------------- Today
function equityChart(points) {
  const values = points.map((p) => Number(p.equity)).filter((v) => !Number.isNaN(v));
  if (values.length < 2) return el("p", { class: "muted" }, "the curve starts with the second snapshot");
  const w = 600, h = 160, pad = 4;
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  const xy = values.map((v, i) =>
    `${(pad + (i * (w - 2 * pad)) / (values.length - 1)).toFixed(1)},${(h - pad - ((v - lo) * (h - 2 * pad)) / span).toFixed(1)}`);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `equity from ${money(values[0])} to ${money(values[values.length - 1])}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy.join(" "));
  svg.append(line);
  return el("figure", {}, svg,
    el("figcaption", { class: "muted" }, `low ${money(lo)} · high ${money(hi)} · last ${money(values[values.length - 1])}`));
}

async function pageToday() {
  const r = await api("GET", "/api/today");
  if (!r.ok) return main(el("h1", {}, "Today"), el("p", { class: "error" }, errText(r)));
  const t = r.data;
  const b = t.broker || {}, e = t.engine || {}, p = t.pnl_today || {}, book = t.portfolio || {};
  const session = b.session || {};
  const ks = b.kill_switch || {};
  const sessionCard = card("Kite session",
    b.error ? el("p", { class: "error" }, `broker: ${b.message}`) :
      kv([["state", session.valid ? "valid" : "not logged in", session.valid ? "pos" : "neg"],
          ["user", session.user_id || "-"],
          ["expires", when(session.expires_at) || "-"],
          ["mode", b.mode || "-"]]),
    el("a", { class: "button", href: t.kite_login_url, id: "kite-login" }, session.valid ? "Log in again" : "Log in to Kite"));
  const ksCard = card("Kill switch",
    kv([["state", ks.engaged ? "ENGAGED: every new order is refused" : "released", ks.engaged ? "neg" : "pos"],
        ["reason", ks.reason || "-"], ["since", when(ks.at) || "-"]]),
    ks.engaged
      ? action("Release kill switch", { path: "/api/broker/kill-switch/release", body: {}, confirm: "Allow new orders again?", done: pageToday, id: "ks-release" })
      : action("Engage kill switch", { path: "/api/broker/kill-switch/engage", body: () => ({ reason: "engaged from the console" }), confirm: "Refuse every new order until released?", done: pageToday, cls: "danger", id: "ks-engage" }));
  const strategies = Object.entries(e.strategies || {});
  const engineCard = card("Engine",
    e.error ? el("p", { class: "error" }, `engine: ${e.message}`) :
      kv([["mode", e.mode || "-", e.running ? "pos" : "neg"],
          ["market clock", when((e.market_clock || {}).now)],
          ["open positions", String((e.open_positions || []).length)],
          ["open orders", String(e.open_intents ?? "-")]]),
    el("div", { class: "row" },
      action("Pause", { path: "/api/engine/engine/pause", confirm: "Pause the engine? No new entries; exits keep working.", done: pageToday, id: "engine-pause" }),
      action("Resume", { path: "/api/engine/engine/resume", done: pageToday, id: "engine-resume" }),
      action("Flatten", { path: "/api/engine/engine/flatten", confirm: "Exit every open position at market, cancel entries, then pause?", done: pageToday, cls: "danger", id: "engine-flatten" })),
    table([["strategy", ([n]) => n], ["kind", ([, s]) => s.strategy], ["entries", ([, s]) => (s.enabled ? "on" : "off")],
           ["P&L today", ([, s]) => money((s.risk || {}).daily_pnl_rupees), ([, s]) => sign((s.risk || {}).daily_pnl_rupees)],
           ["halted", ([, s]) => ((s.risk || {}).halted_for_the_day ? "yes" : "no")],
           ["", ([n, s]) => (s.enabled
             ? action("Pause entries", { path: `/api/engine/strategies/${encodeURIComponent(n)}/disable`, confirm: `No new entries from ${n}? Its exits keep working.`, done: pageToday })
             : action("Enable", { path: `/api/engine/strategies/${encodeURIComponent(n)}/enable`, done: pageToday }))]],
          strategies, "no strategies configured"));
  const pnlCard = card(`P&L on ${p.day || "today"}`,
    book.error ? el("p", { class: "error" }, `portfolio: ${book.message}`) :
      kv([["realised (net)", money(p.realised_net), sign(p.realised_net)],
          ["charges", money(p.charges)],
          ["unrealised", money(p.unrealised), sign(p.unrealised)],
          ["total", money(p.total), sign(p.total)],
          ["equity", money(book.equity)], ["cash", money(book.cash)]]));
  const alerts = t.alerts || {};
  const alertCard = card("Alerts firing",
    !alerts.configured ? el("p", { class: "muted" }, "no Prometheus configured (--prometheus-url); Grafana and Alertmanager hold the alerts") :
      alerts.error ? el("p", { class: "error" }, `Prometheus: ${alerts.error}`) :
        table([["alert", (a) => a.name], ["severity", (a) => a.severity], ["since", (a) => when(a.since)], ["summary", (a) => a.summary]],
          alerts.firing, "none"));
  main(el("h1", {}, "Today"),
    el("div", { class: "grid" }, sessionCard, ksCard, pnlCard, engineCard, alertCard,
      card("Equity", equityChart(t.equity_curve || []))));
}

// ----------------------------------------------------------------------- Positions & orders
const OPEN = new Set(["PENDING", "SUBMITTED", "OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED", "PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "MODIFY PENDING", "CANCEL PENDING"]);

function modifyForm(order, refresh) {
  const price = el("input", { type: "number", step: "0.05", min: "0", placeholder: "price", value: order.price || "", "aria-label": "new price" });
  const qty = el("input", { type: "number", step: "1", min: "1", placeholder: "qty", value: order.quantity, "aria-label": "new quantity" });
  return el("form", { class: "inline", on: { submit: async (ev) => {
    ev.preventDefault();
    const body = {};
    if (price.value) body.price = price.value;
    if (qty.value && Number(qty.value) !== order.quantity) body.quantity = Number(qty.value);
    const r = await api("PATCH", `/api/broker/orders/${encodeURIComponent(order.client_order_id)}`, body);
    flash(r.ok ? `Modified ${order.client_order_id}` : `Modify: ${errText(r)}`, r.ok ? "ok" : "error");
    refresh();
  } } }, price, qty, el("button", { type: "submit" }, "Modify"));
}

async function showAudit(coid) {
  const box = $("#audit-result");
  box.scrollIntoView({ block: "nearest" });
  const r = await api("GET", `/api/audit/${encodeURIComponent(coid)}`);
  if (!r.ok) { box.replaceChildren(el("p", { class: "error" }, errText(r))); return; }
  box.replaceChildren(
    el("h3", {}, `Order ${r.data.client_order_id}`),
    table([["when", (s) => when(s.at)], ["who", (s) => s.who], ["what", (s) => s.what], ["detail", (s) => s.detail]], r.data.steps));
}

// a part of a page that live data replaces; left alone while the person is typing in it (it is
// brought up to date when they leave it)
function fill(id, ...nodes) {
  const box = document.getElementById(id);
  if (!box) return;
  if (document.activeElement && document.activeElement !== document.body && box.contains(document.activeElement)) {
    box.dataset.stale = "1";
    return;
  }
  delete box.dataset.stale;
  box.replaceChildren(...nodes);
}

function setupOrders() {
  const handSymbol = el("input", { id: "hand-symbol", required: true, pattern: "[A-Za-z0-9&_.-]+", placeholder: "INFY", "aria-label": "symbol" });
  const handQty = el("input", { id: "hand-qty", type: "number", min: "1", step: "1", required: true, value: "1", "aria-label": "quantity" });
  const handSide = el("select", { id: "hand-side", "aria-label": "side" }, el("option", {}, "BUY"), el("option", {}, "SELL"));
  const handProduct = el("select", { id: "hand-product", "aria-label": "product" }, el("option", {}, "CNC"), el("option", {}, "MIS"));
  const handPrice = el("input", { id: "hand-price", type: "number", step: "0.05", min: "0", placeholder: "market", "aria-label": "limit price (empty: market)" });
  const handForm = el("form", { id: "hand-form", class: "inline", on: { submit: async (ev) => {
    ev.preventDefault();
    const body = { client_order_id: `console-${Date.now().toString(36)}`, symbol: handSymbol.value.trim().toUpperCase(),
      side: handSide.value, quantity: Number(handQty.value), product: handProduct.value };
    if (handPrice.value) { body.order_type = "LIMIT"; body.price = handPrice.value; }
    const r = await api("POST", "/api/engine/engine/orders", body);
    const out = $("#hand-result");
    if (r.ok) out.replaceChildren(el("span", { class: "pos" }, `${body.client_order_id}: ${r.data.status}`));
    else out.replaceChildren(el("span", { class: "error", id: "hand-refused" }, `Refused: ${errText(r)}`));
    refreshOrders();
  } } }, handSide, handQty, handSymbol, handProduct, handPrice, el("button", { type: "submit" }, "Send"), el("span", { id: "hand-result" }));
  const auditInput = el("input", { id: "audit-id", placeholder: "client_order_id", required: true, "aria-label": "client_order_id" });
  main(el("h1", {}, "Positions & orders"),
    card("Positions", el("div", { id: "positions-box" }, el("p", { class: "muted" }, "Loading…"))),
    card("Order by hand (through the engine's risk manager)", handForm),
    card("Open orders", el("div", { id: "open-box" })),
    card("Orders (newest first)", el("div", { id: "orders-box" })),
    card("Fills (newest first)", el("div", { id: "fills-box" })),
    card("Audit trail of one order",
      el("form", { id: "audit-form", class: "inline", on: { submit: (ev) => { ev.preventDefault(); showAudit(auditInput.value.trim()); } } },
        auditInput, el("button", { type: "submit" }, "Show")),
      el("div", { id: "audit-result" })));
}

async function refreshOrders() {
  const [pos, orders, book, fills] = await Promise.all([
    api("GET", "/api/portfolio/positions"), api("GET", "/api/broker/orders?limit=100"), api("GET", "/api/portfolio/portfolio"),
    api("GET", "/api/broker/trades")]);
  const trades = ((fills.data && fills.data.trades) || []).slice().reverse().slice(0, 100);
  const positions = (pos.data && pos.data.positions) || [];
  const all = Array.isArray(orders.data) ? orders.data : [];
  const open = all.filter((o) => OPEN.has(o.status));
  fill("positions-box",
    pos.ok ? table([["symbol", (p) => p.symbol], ["product", (p) => p.product], ["qty", (p) => p.quantity],
      ["avg", (p) => money(p.average_price)], ["last", (p) => money(p.last_price)],
      ["unrealised", (p) => money(p.unrealised_pnl), (p) => sign(p.unrealised_pnl)],
      ["since", (p) => when(p.opened_at)]], positions, "no open positions", { id: "positions" })
      : el("p", { class: "error" }, errText(pos)),
    book.ok ? el("p", { class: "muted" }, `equity ${money(book.data.equity)} · cash ${money(book.data.cash)} · unrealised ${money(book.data.unrealised)}`) : "");
  fill("open-box",
    table([["order", (o) => o.client_order_id], ["side", (o) => o.side], ["qty", (o) => `${o.filled_quantity}/${o.quantity}`],
      ["symbol", (o) => o.symbol], ["type", (o) => o.order_type], ["price", (o) => o.price || o.trigger_price || "-"],
      ["status", (o) => o.status],
      ["", (o) => el("div", { class: "row" }, modifyForm(o, refreshOrders),
        action("Cancel", { method: "DELETE", path: `/api/broker/orders/${encodeURIComponent(o.client_order_id)}`, confirm: `Cancel ${o.client_order_id}?`, done: refreshOrders }))]],
    open, "no open orders", { id: "open-orders" }));
  fill("orders-box",
    orders.ok ? table([["when", (o) => when(o.created_at)], ["order", (o) => el("a", { href: "#audit-result", on: { click: (ev) => { ev.preventDefault(); showAudit(o.client_order_id); } } }, o.client_order_id)],
      ["side", (o) => o.side], ["symbol", (o) => o.symbol], ["type", (o) => o.order_type], ["qty", (o) => o.quantity], ["filled", (o) => o.filled_quantity],
      ["avg price", (o) => money(o.average_price)], ["status", (o) => o.status, (o) => (o.status === "REJECTED" ? "neg" : o.status === "COMPLETE" ? "pos" : "")],
      ["reason", (o) => o.reason || o.message || ""]], all, "no orders yet", { id: "orders" })
      : el("p", { class: "error" }, errText(orders)));
  fill("fills-box",
    fills.ok ? table([["when", (t) => when(t.filled_at)], ["order", (t) => t.client_order_id], ["side", (t) => t.side],
      ["symbol", (t) => t.symbol], ["product", (t) => t.product], ["qty", (t) => t.quantity], ["price", (t) => money(t.price)],
      ["trade", (t) => t.trade_id]], trades, "no fills yet", { id: "fills" }) : el("p", { class: "error" }, errText(fills)));
}

// ----------------------------------------------------------------------- Strategies
async function pageStrategies() {
  const [st, sig, status] = await Promise.all([
    api("GET", "/api/engine/strategies"), api("GET", "/api/engine/signals?limit=100"), api("GET", "/api/engine/engine/status")]);
  if (!st.ok) return main(el("h1", {}, "Strategies"), el("p", { class: "error" }, errText(st)));
  const enabled = (status.data && status.data.strategies) || {};
  const instances = st.data.instances || [];
  main(el("h1", {}, "Strategies"),
    card("Configured instances",
      table([["name", (i) => i.name], ["strategy", (i) => i.strategy], ["interval", (i) => i.interval], ["product", (i) => i.product],
        ["universe", (i) => (i.universe || []).join(", ")], ["parameters", (i) => el("code", {}, JSON.stringify(i.params))],
        ["entries", (i) => ((enabled[i.name] || {}).enabled === false ? "off" : "on"), (i) => ((enabled[i.name] || {}).enabled === false ? "neg" : "pos")],
        ["", (i) => ((enabled[i.name] || {}).enabled === false
          ? action("Enable", { path: `/api/engine/strategies/${encodeURIComponent(i.name)}/enable`, done: pageStrategies, id: `enable-${i.name}` })
          : action("Pause entries", { path: `/api/engine/strategies/${encodeURIComponent(i.name)}/disable`, confirm: `No new entries from ${i.name}? Its exits keep working.`, done: pageStrategies, id: `disable-${i.name}` }))]],
      instances, "no strategy instances configured", { id: "instances" })),
    card("Last decisions (risk manager)",
      sig.ok ? table([["when", (d) => when(d.at)], ["strategy", (d) => d.strategy], ["symbol", (d) => d.symbol], ["action", (d) => d.action],
        ["verdict", (d) => (d.approved ? "approved" : "refused"), (d) => (d.approved ? "pos" : "neg")], ["reason", (d) => d.reason],
        ["qty", (d) => d.quantity], ["detail", (d) => d.detail], ["order", (d) => d.client_order_id]], sig.data, "no decisions yet", { id: "decisions" })
        : el("p", { class: "error" }, errText(sig))),
    card("Available strategies",
      table([["name", (s) => s.name], ["description", (s) => s.description],
        ["parameters", (s) => Object.keys((s.parameters || {}).properties || {}).join(", ")]], st.data.registered || [])));
}

// ----------------------------------------------------------------------- Backtests
async function setupBacktests() {
  const st = await api("GET", "/api/engine/strategies");
  const names = ((st.data && st.data.registered) || []).map((x) => x.name);
  const f = {
    strategy: el("select", { id: "bt-strategy", "aria-label": "strategy" }, names.map((n) => el("option", {}, n))),
    symbols: el("input", { id: "bt-symbols", value: "INFY,TCS", required: true, "aria-label": "symbols" }),
    from: el("input", { id: "bt-from", type: "date", value: "2023-01-01", required: true, "aria-label": "from" }),
    to: el("input", { id: "bt-to", type: "date", value: "2023-12-31", required: true, "aria-label": "to" }),
    interval: el("select", { id: "bt-interval", "aria-label": "interval" }, ["day", "15minute", "5minute", "minute", "60minute"].map((n) => el("option", {}, n))),
    params: el("textarea", { id: "bt-params", rows: 2, "aria-label": "parameters (JSON)" }, '{"fast_bars": 10, "slow_bars": 30}'),
  };
  const common = () => ({ strategy: f.strategy.value, symbols: f.symbols.value.split(",").map((x) => x.trim().toUpperCase()).filter(Boolean),
    from: f.from.value, to: f.to.value, interval: f.interval.value });
  const json = (text, what) => {
    try { return JSON.parse(text || "{}"); } catch (err) { flash(`${what}: not JSON (${err.message})`, "error"); return null; }
  };
  const form = el("form", { id: "bt-form", class: "stack", on: { submit: async (ev) => {
    ev.preventDefault();
    const params = json(f.params.value, "parameters");
    if (params === null) return;
    const r = await api("POST", "/api/engine/backtests", { ...common(), params });
    if (!r.ok) { flash(`Backtest refused: ${errText(r)}`, "error"); return; }
    flash(`Backtest ${r.data.id} queued`, "ok");
    refreshBacktests();
  } } },
  el("label", {}, "strategy", f.strategy), el("label", {}, "symbols (comma-separated)", f.symbols),
  el("label", {}, "from", f.from), el("label", {}, "to", f.to), el("label", {}, "interval", f.interval),
  el("label", {}, "parameters (JSON)", f.params), el("button", { type: "submit" }, "Run backtest"));
  const grid = el("textarea", { id: "sw-grid", rows: 2, "aria-label": "grid (JSON: parameter -> values)" }, '{"fast_bars": [5, 10], "slow_bars": [20, 30]}');
  const objective = el("select", { id: "sw-objective", "aria-label": "objective" },
    ["sharpe", "sortino", "total_return", "cagr", "profit_factor", "net_pnl", "max_drawdown"].map((n) => el("option", {}, n)));
  const sweepForm = el("form", { id: "sw-form", class: "stack", on: { submit: async (ev) => {
    ev.preventDefault();
    const parsed = json(grid.value, "grid");
    if (parsed === null) return;
    const r = await api("POST", "/api/engine/sweeps", { ...common(), grid: parsed, objective: objective.value });
    if (!r.ok) { flash(`Sweep refused: ${errText(r)}`, "error"); return; }
    flash(`Sweep ${r.data.id} queued: ${r.data.progress.trials_total} points`, "ok");
    refreshBacktests();
  } } }, el("label", {}, "grid (JSON), over the strategy, symbols and range above", grid), el("label", {}, "rank by", objective),
  el("button", { type: "submit" }, "Run sweep"));
  const compareForm = el("form", { id: "cmp-form", class: "inline", on: { submit: async (ev) => {
    ev.preventDefault();
    const a = $("#cmp-a"), b = $("#cmp-b");
    if (!a || !b || !a.value || !b.value) { flash("Compare: two finished runs are needed", "error"); return; }
    const r = await api("GET", `/api/backtests/compare?a=${encodeURIComponent(a.value)}&b=${encodeURIComponent(b.value)}`);
    $("#cmp-result").replaceChildren(r.ok ? table([["metric", (m) => m.metric], ["A", (m) => figure(m.a)], ["B", (m) => figure(m.b)], ["B − A", (m) => figure(m.b_minus_a), (m) => sign(m.b_minus_a)]], r.data.metrics, "no figures", { id: "cmp-table" })
      : el("p", { class: "error" }, errText(r)));
  } } }, el("span", { id: "cmp-picks", class: "row" }), el("button", { type: "submit" }, "Compare"));
  main(el("h1", {}, "Backtests & sweeps"),
    card("New backtest", form),
    card("Runs", el("div", { id: "runs-box" }, el("p", { class: "muted" }, "Loading…"))),
    card("Compare two runs", compareForm, el("div", { id: "cmp-result" })),
    card("Parameter sweeps", sweepForm, el("div", { id: "sweeps-box" })));
}

let polling = null;

function progressBar(job) {
  const pr = job.progress || {};
  const pct = Math.round((pr.fraction || 0) * 100);
  const bar = el("span", {}, `${pct}%${pr.eta_seconds ? ` · ${pr.eta_seconds}s left` : ""}`);
  bar.style.width = `${Math.max(pct, 8)}%`; // the CSSOM, not a style attribute (the CSP allows it)
  return el("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
}

async function refreshBacktests() {
  const [runs, sw] = await Promise.all([api("GET", "/api/engine/backtests?limit=30"), api("GET", "/api/engine/sweeps?limit=10&top=3")]);
  const jobs = Array.isArray(runs.data) ? runs.data : [];
  const sweeps = Array.isArray(sw.data) ? sw.data : [];
  const pct = (v) => `${(Number(v) * 100).toFixed(2)}%`;
  const headline = (x) => {
    const r = (x && x.report) || {};
    const parts = [`${x ? x.trades : 0} trades`];
    if ("total_pnl_rupees" in r) parts.push(`P&L ${money(r.total_pnl_rupees)}`);
    if ("total_return" in r) parts.push(`return ${pct(r.total_return)}`);
    if ("max_drawdown" in r) parts.push(`max DD ${pct(r.max_drawdown)}`);
    if (r.sharpe !== undefined && r.sharpe !== null) parts.push(`Sharpe ${Number(r.sharpe).toFixed(2)}`);
    return parts.join(" · ");
  };
  fill("runs-box", runs.ok ? table([["id", (j) => j.id], ["strategy", (j) => j.request.strategy], ["symbols", (j) => (j.request.symbols || []).join(", ")],
    ["range", (j) => `${j.request.from} → ${j.request.to} (${j.request.interval})`],
    ["status", (j) => j.status, (j) => (j.status === "failed" ? "neg" : j.status === "done" ? "pos" : "")],
    ["progress", (j) => progressBar(j)],
    ["result", (j) => (j.status === "done" ? el("span", {}, headline(j.summary), " ",
      el("a", { href: `/api/engine/backtests/${j.id}/report.html`, target: "_blank", rel: "noopener", class: "report-link" }, "report")) : j.error || "")]],
  jobs, "no backtests yet", { id: "runs" }) : el("p", { class: "error" }, errText(runs)));
  const done = jobs.filter((j) => j.status === "done");
  const pick = (id, selected) => el("select", { id, "aria-label": id === "cmp-a" ? "run A" : "run B" },
    done.map((j, i) => el("option", { value: j.id, selected: i === selected }, `${j.id.slice(-8)} ${j.request.strategy} ${JSON.stringify(j.request.params)}`)));
  fill("cmp-picks", pick("cmp-a", 1), pick("cmp-b", 0));
  fill("sweeps-box", sw.ok ? table([["id", (x) => x.id], ["strategy", (x) => x.request.strategy], ["points", (x) => `${x.progress.trials_done}/${x.progress.trials_total}`],
    ["status", (x) => x.status, (x) => (x.status === "failed" ? "neg" : x.status === "done" ? "pos" : "")],
    ["progress", (x) => progressBar(x)],
    ["best", (x) => (x.results && x.results.length ? `${JSON.stringify(x.results[0].params)} → ${x.objective} ${x.results[0].metrics[x.objective] ?? ""}` : "")],
    ["report", (x) => (x.links ? el("a", { href: `/api/engine${x.links.html}`, target: "_blank", rel: "noopener" }, "best point's report") : x.error || "")]],
  sweeps, "no sweeps yet", { id: "sweeps" }) : el("p", { class: "error" }, errText(sw)));
  clearTimeout(polling);
  const busy = (x) => x.status === "queued" || x.status === "running";
  if (jobs.some(busy) || sweeps.some(busy)) polling = setTimeout(refreshBacktests, 1000);
}

// ----------------------------------------------------------------------- Reconcile & DLQ
function reconcileResult(r) {
  if (!r.ok) return el("p", { class: "error" }, errText(r));
  const breaks = Array.isArray(r.data.breaks) ? r.data.breaks : [];
  return el("div", {},
    el("p", { class: breaks.length ? "neg" : "pos" }, breaks.length ? `${breaks.length} breaks` : "clean: no breaks"),
    breaks.length ? el("pre", {}, JSON.stringify(breaks, null, 2)) : null,
    el("p", { class: "muted" }, Object.entries(r.data).filter(([k]) => k !== "breaks" && typeof r.data[k] !== "object").map(([k, v]) => `${k}: ${v}`).join(" · ")));
}

function runReconcile(label, service, box) {
  return el("button", { type: "button", id: `reconcile-${service}`, on: { click: async (ev) => {
    ev.currentTarget.disabled = true;
    $(box).replaceChildren(el("p", { class: "muted" }, "checking…"));
    const r = await api("GET", `/api/${service}/reconcile`);
    ev.target.disabled = false;
    $(box).replaceChildren(reconcileResult(r));
  } } }, label);
}

async function pageReconcile() {
  const [last, dlq] = await Promise.all([api("GET", "/api/reconcile/last"), api("GET", "/api/dlq")]);
  const lastOf = (scope) => {
    const l = (last.data || {})[scope] || {};
    if (l.error) return el("p", { class: "error" }, l.message);
    if (!l.at) return el("p", { class: "muted" }, "not run since the service started");
    return el("p", { class: l.breaks ? "neg" : "pos" }, `last run ${when(l.at)}: ${l.breaks ? `${l.breaks} breaks` : "clean"}`);
  };
  const entries = (dlq.data && dlq.data.entries) || [];
  main(el("h1", {}, "Reconcile & DLQ"),
    el("div", { class: "grid" },
      card("Broker journal against Kite", lastOf("broker"), runReconcile("Check now", "broker", "#reconcile-broker-result"), el("div", { id: "reconcile-broker-result" })),
      card("Ledger against the broker", lastOf("portfolio"), runReconcile("Check now", "portfolio", "#reconcile-portfolio-result"), el("div", { id: "reconcile-portfolio-result" }))),
    card("Dead letters",
      dlq.ok ? el("p", { class: "muted" }, Object.entries(dlq.data.streams || {}).map(([s, n]) => `dlq.${s}: ${n}`).join(" · ") || "no dead-letter queue") : el("p", { class: "error" }, errText(dlq)),
      table([["at", (d) => when(d.at)], ["stream", (d) => d.stream], ["type", (d) => d.type], ["group", (d) => d.group],
        ["reason", (d) => d.reason], ["error", (d) => d.error], ["deliveries", (d) => d.deliveries],
        ["", (d) => (d.lossless ? action("Replay", { path: "/api/dlq/replay", body: { dlq_id: d.dlq_id, stream: d.stream }, confirm: `Publish ${d.type || "this entry"} again to ${d.stream}?`, done: pageReconcile }) : "lossy: cannot replay")]],
      entries, "no dead letters", { id: "dlq" })));
}

// ----------------------------------------------------------------------- login, start
function pageLogin() {
  const form = $("#login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/api/login", { key: $("#key").value });
    if (!r.ok) { $("#login-error").textContent = errText(r); return; }
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
  });
}

const PAGES = {
  today: { refresh: pageToday },
  orders: { setup: setupOrders, refresh: refreshOrders },
  strategies: { refresh: pageStrategies },
  backtests: { setup: setupBacktests, refresh: refreshBacktests },
  reconcile: { refresh: pageReconcile },
};

document.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  if (page === "login") return pageLogin();
  const logout = $("#logout");
  if (logout) logout.addEventListener("click", async () => { await api("POST", "/api/logout"); location.href = "/login"; });
  const { setup, refresh: render } = PAGES[page];
  const refresh = debounced(render, 400);
  onBus((msg) => {
    const text = describe(msg);
    if (text) flash(text, msg.type === "OrderRejected" ? "error" : "info");
    if (page === "today") refresh();
    if (page === "orders" && msg.stream !== "engine.decisions") refresh();
    if (page === "strategies" && msg.stream === "engine.decisions") refresh();
  });
  // a part left alone while someone typed in it is brought up to date when they leave it
  document.addEventListener("focusout", () => setTimeout(() => {
    if (document.querySelector("[data-stale]")) refresh();
  }, 0));
  if (setup) await setup();
  await render();
  startLive();
});
