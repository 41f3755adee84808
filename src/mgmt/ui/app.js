// Warren's management UI: one page over the management API (the same calls rabbitmqadmin
// makes), no framework and no build step. Credentials are kept for the browser tab only
// (sessionStorage) and sent as HTTP Basic on every call, as RabbitMQ's UI does.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const enc = encodeURIComponent;
const num = (n) => (n === undefined || n === null ? "" : Number(n).toLocaleString("en"));
const rate = (s, k) => {
  const r = s && s[k + "_details"] ? s[k + "_details"].rate : 0;
  return (Math.round(r * 10) / 10).toLocaleString("en") + "/s";
};
const bytes = (n) => {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  const i = Math.min(u.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return (n / 1024 ** i).toFixed(i ? 1 : 0) + " " + u[i];
};

let auth = sessionStorage.getItem("warren-auth");
let me = null;
let timer = null;
const history = []; // overview rate samples for the chart

async function api(method, path, body) {
  const headers = { "x-requested-with": "XMLHttpRequest" };
  if (auth) headers.authorization = "Basic " + auth;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch("api/" + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (r.status === 401 && path !== "whoami") { logout("Session expired: log in again."); }
  if (!r.ok) {
    const why = data && data.reason ? data.reason : r.status + " " + r.statusText;
    throw new Error(why);
  }
  return data;
}

function toast(text, bad) {
  const t = $("#toast");
  t.textContent = text;
  t.className = bad ? "error-toast" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

function table(cols, rows, empty = "Nothing here yet.") {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  const head = cols.map((c) => `<th class="${c.num ? "num" : ""}">${esc(c.h)}</th>`).join("");
  const body = rows.map((r) => "<tr>" + cols.map((c) =>
    `<td class="${c.num ? "num" : ""}">${c.html ? c.v(r) : esc(c.v(r))}</td>`).join("") + "</tr>").join("");
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function form(id, fields, button) {
  const inputs = fields.map((f) => {
    if (f.type === "select") {
      const opts = f.options.map((o) => `<option value="${esc(o)}">${esc(o)}</option>`).join("");
      return `<label>${esc(f.label)} <select name="${f.name}">${opts}</select></label>`;
    }
    if (f.type === "textarea") {
      return `<label>${esc(f.label)} <textarea name="${f.name}" rows="${f.rows || 3}">${esc(f.value || "")}</textarea></label>`;
    }
    return `<label>${esc(f.label)} <input name="${f.name}" type="${f.type || "text"}" value="${esc(f.value || "")}" ${f.required ? "required" : ""}></label>`;
  }).join("");
  return `<form id="${id}" class="row">${inputs}<button type="submit">${esc(button)}</button></form>`;
}

function onSubmit(id, handler) {
  const f = document.getElementById(id);
  if (!f) return;
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = Object.fromEntries(new FormData(f).entries());
    try { await handler(values, f); } catch (err) { toast(err.message, true); }
  });
}

function onClick(selector, handler) {
  document.querySelectorAll(selector).forEach((b) => b.addEventListener("click", async () => {
    try { await handler(b.dataset, b); } catch (err) { toast(err.message, true); }
  }));
}

const queueLink = (q) =>
  `<a href="#/queues/${enc(q.vhost)}/${enc(q.name)}">${esc(q.name)}</a>`;
const exchangeLink = (x) =>
  `<a href="#/exchanges/${enc(x.vhost)}/${enc(x.name || "amq.default")}">${esc(x.name || "(AMQP default)")}</a>`;

// ---------------------------------------------------------------- overview

const SERIES = [
  ["publish", "#c4520b"], ["deliver_get", "#1565c0"], ["ack", "#2f7d32"],
  ["redeliver", "#8e24aa"], ["confirm", "#00838f"],
];

function drawChart(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...history.flatMap((s) => SERIES.map(([k]) => s[k])));
  g.strokeStyle = "#d9dee5"; g.fillStyle = "#5f6b7a"; g.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = 10 + (h - 30) * (i / 4);
    g.beginPath(); g.moveTo(40, y); g.lineTo(w, y); g.stroke();
    g.fillText(Math.round(max * (1 - i / 4)).toLocaleString("en"), 0, y + 4);
  }
  const n = 60;
  const x = (i) => 40 + ((w - 45) * i) / (n - 1);
  const y = (v) => 10 + (h - 30) * (1 - v / max);
  for (const [k, color] of SERIES) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    history.forEach((s, i) => {
      const xi = x(n - history.length + i);
      i ? g.lineTo(xi, y(s[k])) : g.moveTo(xi, y(s[k]));
    });
    g.stroke();
  }
  g.fillStyle = "#5f6b7a";
  g.fillText("last " + Math.round((history.length * 2) / 60 * 10) / 10 + " min, msg/s", 40, h - 4);
}

async function overview(view) {
  const [o, nodes] = await Promise.all([api("GET", "overview"), api("GET", "nodes").catch(() => [])]);
  const s = o.message_stats || {};
  const sample = {};
  for (const [k] of SERIES) sample[k] = s[k + "_details"] ? s[k + "_details"].rate : 0;
  history.push(sample);
  while (history.length > 60) history.shift();
  const t = o.object_totals || {}, q = o.queue_totals || {};
  const node = nodes[0] || {};
  const stat = (label, v) => `<div class="stat"><b>${esc(v)}</b><span>${esc(label)}</span></div>`;
  view.innerHTML = `
    <h1>Overview <small class="muted">${esc(o.product_name)} ${esc(o.warren_version || "")} · ${esc(o.cluster_name)}</small></h1>
    <div class="totals" id="totals">
      ${stat("Connections", num(t.connections))}${stat("Channels", num(t.channels))}
      ${stat("Exchanges", num(t.exchanges))}${stat("Queues", num(t.queues))}
      ${stat("Consumers", num(t.consumers))}${stat("Messages", num(q.messages))}
      ${stat("Ready", num(q.messages_ready))}${stat("Unacked", num(q.messages_unacknowledged))}
    </div>
    <h2>Message rates</h2>
    <div class="card"><canvas id="chart" aria-label="message rates"></canvas>
      <div class="legend">${SERIES.map(([k, c]) =>
        `<span data-series="${k}"><i style="background:${c}"></i>${k} <b>${rate(s, k)}</b></span>`).join("")}</div></div>
    <h2>Node</h2>
    ${table([
      { h: "Name", v: (n) => n.name },
      { h: "Memory", v: (n) => bytes(n.mem_used) + " of " + bytes(n.mem_limit) + (n.mem_alarm ? " (ALARM)" : "") },
      { h: "Disk free", v: (n) => (n.disk_free >= 2 ** 60 ? "not watched (in memory)" : bytes(n.disk_free)) +
        (n.disk_free_alarm ? " (ALARM)" : " (limit " + bytes(n.disk_free_limit) + ")") },
      { h: "Uptime", v: () => Math.round((o.uptime_ms || 0) / 60000) + " min" },
    ], node.name ? [node] : [])}
    <h2>Listeners</h2>
    ${table([
      { h: "Protocol", v: (l) => l.protocol }, { h: "Bound to", v: (l) => l.ip_address },
      { h: "Port", v: (l) => l.port, num: true },
    ], o.listeners || [])}
    <h2>Definitions</h2>
    <div class="card row">
      <button type="button" id="export" class="plain">Download definitions</button>
      <label>Import a definitions file <input type="file" id="import-file" accept=".json,application/json"></label>
      <button type="button" id="import">Upload</button>
    </div>`;
  drawChart($("#chart"));
  onClick("#export", async () => {
    const d = await api("GET", "definitions");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(d, null, 2)], { type: "application/json" }));
    a.download = "warren-definitions.json";
    a.click();
  });
  onClick("#import", async () => {
    const file = $("#import-file").files[0];
    if (!file) throw new Error("Choose a file first.");
    await api("POST", "definitions", JSON.parse(await file.text()));
    toast("Definitions imported");
  });
}

// ---------------------------------------------------------------- connections, channels

async function connections(view) {
  const cs = await api("GET", "connections");
  view.innerHTML = `<h1>Connections</h1>` + table([
    { h: "Name", v: (c) => c.name },
    { h: "User", v: (c) => c.user }, { h: "Virtual host", v: (c) => c.vhost },
    { h: "Client", v: (c) => { const p = c.client_properties || {}; return [p.product, p.version].filter(Boolean).join(" "); } },
    { h: "Protocol", v: (c) => c.protocol }, { h: "TLS", v: (c) => (c.ssl ? "yes" : "") },
    { h: "Channels", v: (c) => c.channels, num: true },
    { h: "From client", v: (c) => bytes((c.recv_oct_details || {}).rate) + "/s", num: true },
    { h: "To client", v: (c) => bytes((c.send_oct_details || {}).rate) + "/s", num: true },
    { h: "", html: true, v: (c) => `<button class="danger" data-close="${esc(c.name)}">Close</button>` },
  ], cs, "No connections.");
  onClick("[data-close]", async (d) => {
    await fetch("api/connections/" + enc(d.close), {
      method: "DELETE",
      headers: { authorization: "Basic " + auth, "x-reason": "Closed from the management UI", "x-requested-with": "XMLHttpRequest" },
    });
    toast("Connection closed");
    route();
  });
}

async function channels(view) {
  const cs = await api("GET", "channels");
  view.innerHTML = `<h1>Channels</h1>` + table([
    { h: "Channel", v: (c) => c.name }, { h: "User", v: (c) => c.user },
    { h: "Mode", v: (c) => (c.confirm ? "C" : "") + (c.transactional ? "T" : "") },
    { h: "Consumers", v: (c) => c.consumer_count, num: true },
    { h: "Prefetch", v: (c) => c.prefetch_count, num: true },
    { h: "Unacked", v: (c) => c.messages_unacknowledged, num: true },
    { h: "Unconfirmed", v: (c) => c.messages_unconfirmed, num: true },
    { h: "Publish", v: (c) => rate(c.message_stats, "publish"), num: true },
    { h: "Deliver", v: (c) => rate(c.message_stats, "deliver_get"), num: true },
    { h: "Ack", v: (c) => rate(c.message_stats, "ack"), num: true },
  ], cs, "No channels.");
}

// ---------------------------------------------------------------- exchanges

async function vhostOptions() {
  try { return (await api("GET", "vhosts")).map((v) => v.name); } catch (_) { return ["/"]; }
}

async function exchanges(view) {
  const [xs, vhosts] = await Promise.all([api("GET", "exchanges"), vhostOptions()]);
  view.innerHTML = `<h1>Exchanges</h1>` + table([
    { h: "Virtual host", v: (x) => x.vhost }, { h: "Name", html: true, v: exchangeLink },
    { h: "Type", v: (x) => x.type },
    { h: "Features", v: (x) => [x.durable ? "D" : "", x.auto_delete ? "AD" : "", x.internal ? "I" : ""].filter(Boolean).join(" ") },
    { h: "In", v: (x) => rate(x.message_stats, "publish_in"), num: true },
    { h: "Out", v: (x) => rate(x.message_stats, "publish_out"), num: true },
  ], xs) + `<h2>Add an exchange</h2><div class="card">` + form("add-exchange", [
    { name: "vhost", label: "Virtual host", type: "select", options: vhosts },
    { name: "name", label: "Name", required: true },
    { name: "type", label: "Type", type: "select", options: ["direct", "fanout", "topic", "headers", "x-consistent-hash", "x-delayed-message"] },
    { name: "durable", label: "Durable", type: "select", options: ["true", "false"] },
  ], "Add exchange") + `</div>`;
  onSubmit("add-exchange", async (v) => {
    await api("PUT", `exchanges/${enc(v.vhost)}/${enc(v.name)}`, { type: v.type, durable: v.durable === "true" });
    toast("Exchange declared");
    route();
  });
}

async function exchange(view, vhost, name) {
  const path = `exchanges/${enc(vhost)}/${enc(name)}`;
  const [x, bindings] = await Promise.all([api("GET", path), api("GET", path + "/bindings/source")]);
  view.innerHTML = `<h1>Exchange ${esc(x.name || "(AMQP default)")} <small>${esc(x.type)} in ${esc(vhost)}</small></h1>
    <h2>Bindings from here</h2>` + table([
      { h: "To", v: (b) => b.destination + " (" + b.destination_type + ")" },
      { h: "Routing key", v: (b) => b.routing_key }, { h: "Arguments", v: (b) => JSON.stringify(b.arguments || {}) },
    ], bindings, "No bindings.") + `<h2>Publish a message</h2><div class="card">` + form("publish", [
      { name: "routing_key", label: "Routing key" },
      { name: "delivery_mode", label: "Delivery mode", type: "select", options: ["1 - non-persistent", "2 - persistent"] },
      { name: "headers", label: "Headers (JSON)", value: "{}" },
      { name: "payload", label: "Payload", type: "textarea", rows: 4 },
    ], "Publish message") + `<p id="published" role="status"></p></div>`;
  onSubmit("publish", async (v) => {
    const r = await api("POST", path + "/publish", {
      routing_key: v.routing_key, payload: v.payload, payload_encoding: "string",
      properties: { delivery_mode: Number(v.delivery_mode[0]), headers: JSON.parse(v.headers || "{}") },
    });
    $("#published").textContent = r.routed ? "Message published." : "Message published, but not routed.";
  });
}

// ---------------------------------------------------------------- queues

async function queues(view) {
  const [qs, vhosts] = await Promise.all([api("GET", "queues"), vhostOptions()]);
  view.innerHTML = `<h1>Queues and Streams</h1>` + table([
    { h: "Virtual host", v: (q) => q.vhost }, { h: "Name", html: true, v: queueLink },
    { h: "Type", v: (q) => q.type },
    { h: "Features", v: (q) => [q.durable ? "D" : "", q.auto_delete ? "AD" : "", q.exclusive ? "Excl" : ""].filter(Boolean).join(" ") },
    { h: "Policy", v: (q) => q.policy || "" },
    { h: "Ready", v: (q) => num(q.messages_ready), num: true },
    { h: "Unacked", v: (q) => num(q.messages_unacknowledged), num: true },
    { h: "Total", v: (q) => num(q.messages), num: true },
    { h: "Consumers", v: (q) => num(q.consumers), num: true },
    { h: "Incoming", v: (q) => rate(q.message_stats, "publish"), num: true },
    { h: "Deliver / get", v: (q) => rate(q.message_stats, "deliver_get"), num: true },
    { h: "Ack", v: (q) => rate(q.message_stats, "ack"), num: true },
  ], qs, "No queues.") + `<h2>Add a queue</h2><div class="card">` + form("add-queue", [
    { name: "vhost", label: "Virtual host", type: "select", options: vhosts },
    { name: "type", label: "Type", type: "select", options: ["classic", "quorum", "stream"] },
    { name: "name", label: "Name", required: true },
    { name: "durable", label: "Durable", type: "select", options: ["true", "false"] },
    { name: "arguments", label: "Arguments (JSON)", value: "{}" },
  ], "Add queue") + `</div>`;
  onSubmit("add-queue", async (v) => {
    const args = JSON.parse(v.arguments || "{}");
    if (v.type !== "classic") args["x-queue-type"] = v.type;
    await api("PUT", `queues/${enc(v.vhost)}/${enc(v.name)}`, { durable: v.durable === "true", arguments: args });
    toast("Queue declared");
    route();
  });
}

async function queue(view, vhost, name) {
  const path = `queues/${enc(vhost)}/${enc(name)}`;
  const [q, bindings] = await Promise.all([api("GET", path), api("GET", path + "/bindings")]);
  const stream = q.type === "stream";
  const facts = [
    ["Type", q.type], ["Ready", num(q.messages_ready)], ["Unacked", num(q.messages_unacknowledged)],
    ["Total", num(q.messages)], ["Consumers", num(q.consumers)], ["Policy", q.policy || ""],
    ["In memory", num(q.messages_ram)], ["Paged out", num(q.messages_paged_out)],
    ["Incoming", rate(q.message_stats, "publish")], ["Deliver / get", rate(q.message_stats, "deliver_get")],
    ["Ack", rate(q.message_stats, "ack")],
  ];
  if (stream) facts.push(["Segments", num(q.segments)], ["First offset", num(q.first_offset)],
    ["Last offset", q.last_offset ?? ""], ["Bytes", bytes(q.message_bytes)]);
  view.innerHTML = `<h1>Queue ${esc(q.name)} <small>in ${esc(vhost)}</small></h1>
    <div class="totals" id="queue-facts">${facts.map(([k, v]) =>
      `<div class="stat" data-fact="${esc(k)}"><b>${esc(v)}</b><span>${esc(k)}</span></div>`).join("")}</div>
    <h2>Consumers</h2>` + table([
      { h: "Tag", v: (c) => c.consumer_tag }, { h: "Channel", v: (c) => (c.channel_details || {}).name },
      { h: "Ack required", v: (c) => String(c.ack_required) }, { h: "Prefetch", v: (c) => c.prefetch_count, num: true },
    ], q.consumer_details || [], "No consumers.") + `<h2>Bindings</h2>` + table([
      { h: "From", v: (b) => b.source || "(AMQP default)" }, { h: "Routing key", v: (b) => b.routing_key },
    ], bindings) + (stream ? "" : `<h2>Get messages</h2><div class="card">` + form("get", [
      { name: "ackmode", label: "Ack mode", type: "select", options: ["ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false"] },
      { name: "count", label: "Messages", type: "number", value: "1" },
    ], "Get messages") + `<div id="got"></div></div>
    <h2>Move messages</h2><div class="card">` + form("move", [
      { name: "destination", label: "Destination queue", required: true },
    ], "Move messages") + `</div>`) + `<h2>Delete or purge</h2><div class="card row">
      ${stream ? "" : `<button type="button" class="danger" id="purge">Purge messages</button>`}
      <button type="button" class="danger" id="delete">Delete queue</button></div>`;
  onSubmit("get", async (v) => {
    const ms = await api("POST", path + "/get", { count: Number(v.count || 1), ackmode: v.ackmode, encoding: "auto", truncate: 50000 });
    $("#got").innerHTML = ms.length ? ms.map((m, i) => `<div class="message"><b>Message ${i + 1}</b>
      (exchange ${esc(m.exchange || "(AMQP default)")}, routing key ${esc(m.routing_key)}, ${m.redelivered ? "redelivered" : "first delivery"}, ${num(m.message_count)} left)
      <pre class="payload">${esc(m.payload)}</pre><pre>${esc(JSON.stringify(m.properties))}</pre></div>`).join("")
      : `<p>Queue is empty.</p>`;
  });
  onSubmit("move", async (v) => {
    const r = await api("POST", path + "/move", { destination: v.destination });
    toast(r.moved !== undefined
      ? `Moved ${r.moved} messages to ${v.destination}`
      : `Moving ${r.moving} messages to ${v.destination}`);
    route();
  });
  onClick("#purge", async () => {
    await api("DELETE", path + "/contents");
    toast("Queue purged");
    route();
  });
  onClick("#delete", async () => {
    if (!confirm(`Delete queue ${name}?`)) return;
    await api("DELETE", path);
    toast("Queue deleted");
    location.hash = "#/queues";
  });
}

// ---------------------------------------------------------------- admin

async function admin(view) {
  const [users, vhosts, perms, policies, limits, shovels] = await Promise.all([
    api("GET", "users"), api("GET", "vhosts"), api("GET", "permissions"),
    api("GET", "policies"), api("GET", "vhost-limits").catch(() => []),
    api("GET", "shovels").catch(() => []),
  ]);
  const names = vhosts.map((v) => v.name);
  view.innerHTML = `<h1>Admin</h1><h2>Users</h2>` + table([
    { h: "Name", v: (u) => u.name },
    { h: "Tags", html: true, v: (u) => [].concat(u.tags || []).map((t) => `<span class="tag">${esc(t)}</span>`).join("") },
    { h: "Can access virtual hosts", v: (u) => perms.filter((p) => p.user === u.name).map((p) => p.vhost).join(", ") },
    { h: "", html: true, v: (u) => `<button class="danger" data-del-user="${esc(u.name)}">Delete</button>` },
  ], users) + `<div class="card">` + form("add-user", [
    { name: "name", label: "Username", required: true }, { name: "password", label: "Password", type: "password" },
    { name: "tags", label: "Tags (comma-separated)", value: "management" },
  ], "Add user") + `</div><h2>Virtual hosts</h2>` + table([
    { h: "Name", v: (v) => v.name }, { h: "Messages", v: (v) => num(v.messages), num: true },
    { h: "", html: true, v: (v) => `<button class="danger" data-del-vhost="${esc(v.name)}">Delete</button>` },
  ], vhosts) + `<div class="card">` + form("add-vhost", [{ name: "name", label: "Name", required: true }], "Add virtual host") +
  `</div><h2>Permissions</h2>` + table([
    { h: "User", v: (p) => p.user }, { h: "Virtual host", v: (p) => p.vhost },
    { h: "Configure", v: (p) => p.configure }, { h: "Write", v: (p) => p.write }, { h: "Read", v: (p) => p.read },
  ], perms) + `<div class="card">` + form("set-permission", [
    { name: "user", label: "User", type: "select", options: users.map((u) => u.name) },
    { name: "vhost", label: "Virtual host", type: "select", options: names },
    { name: "configure", label: "Configure", value: ".*" }, { name: "write", label: "Write", value: ".*" },
    { name: "read", label: "Read", value: ".*" },
  ], "Set permission") + `</div><h2>Policies</h2>` + table([
    { h: "Virtual host", v: (p) => p.vhost }, { h: "Name", v: (p) => p.name }, { h: "Pattern", v: (p) => p.pattern },
    { h: "Apply to", v: (p) => p["apply-to"] }, { h: "Definition", v: (p) => JSON.stringify(p.definition) },
    { h: "Priority", v: (p) => p.priority, num: true },
    { h: "", html: true, v: (p) => `<button class="danger" data-del-policy="${esc(p.name)}" data-vhost="${esc(p.vhost)}">Delete</button>` },
  ], policies, "No policies.") + `<div class="card">` + form("add-policy", [
    { name: "vhost", label: "Virtual host", type: "select", options: names },
    { name: "name", label: "Name", required: true }, { name: "pattern", label: "Pattern", value: "^" },
    { name: "apply-to", label: "Apply to", type: "select", options: ["queues", "exchanges", "all"] },
    { name: "definition", label: "Definition (JSON)", value: '{"max-length": 1000}' },
    { name: "priority", label: "Priority", type: "number", value: "0" },
  ], "Add policy") + `</div><h2>Limits</h2>` + table([
    { h: "Virtual host", v: (l) => l.vhost }, { h: "Limits", v: (l) => JSON.stringify(l.value) },
  ], limits, "No limits.") + `<div class="card">` + form("set-limit", [
    { name: "vhost", label: "Virtual host", type: "select", options: names },
    { name: "limit", label: "Limit", type: "select", options: ["max-connections", "max-queues"] },
    { name: "value", label: "Value", type: "number", value: "100" },
  ], "Set limit") + `</div><h2>Shovels</h2>` + table([
    { h: "Virtual host", v: (x) => x.vhost }, { h: "Name", v: (x) => x.name }, { h: "State", v: (x) => x.state },
    { h: "Source", v: (x) => x.src_uri + " " + (x.src_queue || x.src_exchange || "") },
    { h: "Destination", v: (x) => x.dest_uri + " " + (x.dest_queue || x.dest_exchange || "") },
    { h: "Moved", v: (x) => num(x.messages_transferred), num: true },
    { h: "", html: true, v: (x) => `<button class="danger" data-del-shovel="${esc(x.name)}" data-vhost="${esc(x.vhost)}">Delete</button>` },
  ], shovels, "No shovels.") + `<div class="card">` + form("add-shovel", [
    { name: "vhost", label: "Virtual host", type: "select", options: names },
    { name: "name", label: "Name", required: true },
    { name: "src-uri", label: "Source URI", value: "amqp://" }, { name: "src-queue", label: "Source queue", required: true },
    { name: "dest-uri", label: "Destination URI", value: "amqp://" }, { name: "dest-queue", label: "Destination queue", required: true },
  ], "Add shovel") + `</div>`;
  onSubmit("add-shovel", async (v) => {
    const value = { "src-uri": v["src-uri"], "src-queue": v["src-queue"], "dest-uri": v["dest-uri"], "dest-queue": v["dest-queue"] };
    await api("PUT", `parameters/shovel/${enc(v.vhost)}/${enc(v.name)}`, { value });
    toast("Shovel added"); route();
  });
  onClick("[data-del-shovel]", async (d) => { await api("DELETE", `parameters/shovel/${enc(d.vhost)}/${enc(d.delShovel)}`); route(); });
  onSubmit("add-user", async (v) => {
    await api("PUT", "users/" + enc(v.name), { password: v.password, tags: v.tags });
    toast("User added"); route();
  });
  onSubmit("add-vhost", async (v) => { await api("PUT", "vhosts/" + enc(v.name), {}); toast("Virtual host added"); route(); });
  onSubmit("set-permission", async (v) => {
    await api("PUT", `permissions/${enc(v.vhost)}/${enc(v.user)}`, { configure: v.configure, write: v.write, read: v.read });
    toast("Permission set"); route();
  });
  onSubmit("add-policy", async (v) => {
    await api("PUT", `policies/${enc(v.vhost)}/${enc(v.name)}`, {
      pattern: v.pattern, "apply-to": v["apply-to"], definition: JSON.parse(v.definition), priority: Number(v.priority),
    });
    toast("Policy set"); route();
  });
  onSubmit("set-limit", async (v) => {
    await api("PUT", `vhost-limits/${enc(v.vhost)}/${enc(v.limit)}`, { value: Number(v.value) });
    toast("Limit set"); route();
  });
  onClick("[data-del-user]", async (d) => { await api("DELETE", "users/" + enc(d.delUser)); route(); });
  onClick("[data-del-vhost]", async (d) => { await api("DELETE", "vhosts/" + enc(d.delVhost)); route(); });
  onClick("[data-del-policy]", async (d) => { await api("DELETE", `policies/${enc(d.vhost)}/${enc(d.delPolicy)}`); route(); });
}

// ---------------------------------------------------------------- routing, login

async function route() {
  clearTimeout(timer);
  if (!me) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const tab = parts[0] || "overview";
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  const view = $("#view");
  try {
    if (tab === "connections") await connections(view);
    else if (tab === "channels") await channels(view);
    else if (tab === "exchanges" && parts.length >= 3) await exchange(view, parts[1], parts[2] === "amq.default" ? "amq.default" : parts[2]);
    else if (tab === "exchanges") await exchanges(view);
    else if (tab === "queues" && parts.length >= 3) await queue(view, parts[1], parts[2]);
    else if (tab === "queues") await queues(view);
    else if (tab === "admin") await admin(view);
    else await overview(view);
  } catch (err) {
    view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
  // Lists refresh themselves every 2 s (not while the user is typing into one of their forms).
  const live = tab === "overview" || ((tab === "queues" || tab === "exchanges") && parts.length < 3) ||
    tab === "connections" || tab === "channels";
  if (live) timer = setTimeout(refresh, 2000);
}

function refresh() {
  const busy = document.activeElement && document.activeElement.closest("form");
  if (busy) timer = setTimeout(refresh, 2000);
  else route();
}

function logout(why) {
  auth = null; me = null;
  sessionStorage.removeItem("warren-auth");
  clearTimeout(timer);
  $("#tabs").hidden = true; $("#who").hidden = true; $("#view").innerHTML = "";
  $("#login").hidden = false;
  $("#login-error").textContent = why || "";
}

async function start() {
  try {
    me = await api("GET", "whoami");
  } catch (err) {
    logout(auth ? err.message : "");
    return;
  }
  const tags = [].concat(me.tags || []).join(",");
  $("#admin-tab").hidden = !tags.includes("administrator");
  $("#who-name").textContent = me.name;
  $("#login").hidden = true; $("#tabs").hidden = false; $("#who").hidden = false;
  route();
}

$("#login").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  auth = btoa(unescape(encodeURIComponent(f.get("username") + ":" + f.get("password"))));
  sessionStorage.setItem("warren-auth", auth);
  start();
});
$("#logout").addEventListener("click", () => logout(""));
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { const c = $("#chart"); if (c) drawChart(c); });
start();
