// The Tidelog console: hash routes over the console's JSON API. Data is only ever put into the page
// as text (textContent), never as HTML, so a record's bytes cannot run in it.

const view = document.getElementById("view");
let session = { csrf: null, auth_required: false, signed_in: false };
let refreshTimer = null;
let tailSource = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (value !== null && value !== undefined && value !== false) el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = session.csrf || "";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch { data = { error: `the console answered ${response.status}` }; }
  if (response.status === 401 && path !== "/api/login") { session.signed_in = false; route(); }
  if (!response.ok) throw new ApiError(response.status, data.error || `failed (${response.status})`);
  return data;
}

const fmt = new Intl.NumberFormat("en");
const num = (n) => fmt.format(Math.round(Number(n) || 0));
function bytes(n) {
  n = Number(n) || 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
const enc = encodeURIComponent;

function message(kind, text) { return h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text); }

function spark(points, attrs = {}) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 160 28");
  for (const [k, v] of Object.entries(attrs)) svg.setAttribute(k, v);
  if (points.length > 1) {
    const max = Math.max(1, ...points);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.map((v, i) => `${(i / (points.length - 1)) * 158 + 1},${27 - (v / max) * 25}`).join(" "));
    svg.append(line);
  }
  return svg;
}

// A chart of several series over the same times: series = [{ label, color, points: [[t, v], ...] }].
function chart(series, attrs = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 120");  // scaled as a whole: its labels keep their shape
  for (const [k, v] of Object.entries(attrs)) svg.setAttribute(k, v);
  const all = series.flatMap((s) => s.points);
  const text = (x, y, content, color = "#6b7385") => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10"); t.setAttribute("fill", color);
    t.textContent = content;
    svg.append(t);
  };
  if (all.length < 2) { text(8, 60, "collecting samples (every 2 s)…"); return svg; }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const max = Math.max(1, ...all.map((p) => p[1]));
  for (const s of series) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("stroke", s.color);
    line.setAttribute("points", s.points.map(([t, v]) => `${((t - t0) / Math.max(1, t1 - t0)) * 590 + 5},${112 - (v / max) * 96}`).join(" "));
    svg.append(line);
  }
  text(5, 12, `max ${num(max)}`);
  series.forEach((s, i) => text(120 + i * 90, 12, s.label, s.color));
  text(500, 118, `last ${Math.round((t1 - t0) / 60)} min`);
  return svg;
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label || c)))),
    h("tbody", {}, rows));
}

function render(...nodes) { view.replaceChildren(...nodes); }

function refreshEvery(ms, fn) {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => fn().catch(() => {}), ms);
}

function shownBytes(part) {
  if (!part) return h("span", { class: "muted" }, "null");
  return h("pre", { class: `kind-${part.kind}`, title: `${part.kind}, ${part.size} bytes` }, part.text);
}

// -- pages ---------------------------------------------------------------------------------

async function loginPage(error) {
  const token = h("input", { type: "password", id: "login-token", autocomplete: "off", placeholder: "token" });
  const status = h("div");
  const form = h("form", { id: "login-form", on: { submit: async (e) => {
    e.preventDefault();
    try {
      session = await api("/api/login", { method: "POST", body: { token: token.value } });
      token.value = "";
      // To the overview, rendered once: a changed hash routes by itself (hashchange).
      if (location.hash === "#/") route();
      else location.hash = "#/";
    } catch (err) { status.replaceChildren(message("error", err.message)); }
  } } }, h("label", {}, "Token", token), h("button", { type: "submit" }, "Sign in"));
  render(h("h1", {}, "Sign in"), h("p", { class: "muted" }, "This broker needs a token. It is sent once and kept only by the broker, for this session."), form, status, error ? message("error", error) : null);
}

async function overviewPage() {
  const status = h("div");
  const name = h("input", { id: "create-topic-name", placeholder: "name", required: true });
  const partitions = h("input", { id: "create-topic-partitions", type: "number", min: 1, value: 1 });
  const create = h("form", { id: "create-topic", on: { submit: async (e) => {
    e.preventDefault();
    try {
      await api("/api/topics", { method: "POST", body: { name: name.value, partitions: partitions.value } });
      status.replaceChildren(message("ok", `Created ${name.value}`));
      name.value = "";
      await load();
    } catch (err) { status.replaceChildren(message("error", err.message)); }
  } } }, h("label", {}, "Topic", name), h("label", {}, "Partitions", partitions), h("button", { type: "submit" }, "Create topic"));
  const cards = h("div", { class: "cards" });
  const body = h("div");
  async function load() {
    const data = await api("/api/overview");
    const health = data.broker.health;
    const totals = data.topics.reduce((t, x) => ({ records: t.records + (x.records || 0), size: t.size + (x.size_bytes || 0), in: t.in + x.rate_in, out: t.out + x.rate_out }), { records: 0, size: 0, in: 0, out: 0 });
    cards.replaceChildren(
      h("div", { class: "card" }, h("div", { class: "muted" }, "Broker"), h("div", { class: "value" }, h("span", { id: "broker-health", class: `badge ${health === "SERVING" ? "good" : "bad"}` }, health))),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Topics"), h("div", { class: "value", id: "topic-count" }, data.topics.length)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Records in / out per s"), h("div", { class: "value" }, `${num(totals.in)} / ${num(totals.out)}`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Disk used"), h("div", { class: "value" }, bytes(totals.size))));
    body.replaceChildren(table(
      ["Topic", { label: "Partitions", num: 1 }, { label: "Records", num: 1 }, { label: "Size", num: 1 }, { label: "In/s", num: 1 }, { label: "Out/s", num: 1 }, "Records/s in"],
      data.topics.map((t) => h("tr", { "data-topic": t.name },
        h("td", {}, h("a", { href: `#/topic/${enc(t.name)}` }, t.name)),
        h("td", { class: "num" }, t.error ? "—" : t.partitions),
        h("td", { class: "num" }, t.error ? t.error : num(t.records)),
        h("td", { class: "num" }, t.error ? "" : bytes(t.size_bytes)),
        h("td", { class: "num" }, num(t.rate_in)),
        h("td", { class: "num" }, num(t.rate_out)),
        h("td", {}, spark(t.series.map((p) => p[1]))))),
      { id: "topics-table" }));
  }
  render(h("h1", {}, "Overview"), cards, create, status, body);
  try {
    await load();
  } catch (err) {
    if (err.status !== 403) throw err;
    // May not list topics (describe on the cluster), perhaps may read some: open one by its name.
    const name = h("input", { id: "open-topic-name", placeholder: "topic" });
    render(h("h1", {}, "Overview"), message("error", err.message),
      h("form", { id: "open-topic", on: { submit: (e) => { e.preventDefault(); location.hash = `#/topic/${enc(name.value)}`; } } },
        h("label", {}, "Open a topic by name", name), h("button", { type: "submit" }, "Open")));
    return;
  }
  refreshEvery(2000, load);
}

async function topicPage(name) {
  const data = await api(`/api/topics/${enc(name)}`);
  const clustered = data.clustered;
  const partitions = table(
    ["Partition", { label: "Log start", num: 1 }, { label: "High watermark", num: 1 }, { label: "Records", num: 1 }, { label: "Size", num: 1 }, ...(clustered ? ["Leader", "Replicas", "ISR"] : [])],
    data.partitions.map((p) => h("tr", {},
      h("td", {}, p.partition), h("td", { class: "num" }, num(p.log_start_offset)), h("td", { class: "num" }, num(p.high_watermark)),
      h("td", { class: "num" }, num(p.high_watermark - p.log_start_offset)), h("td", { class: "num" }, bytes(p.size_bytes)),
      ...(clustered ? [h("td", {}, p.leader), h("td", {}, (p.replicas || []).join(", ")), h("td", {}, (p.isr || []).join(", "))] : []))),
    { id: "partitions-table" });
  const configs = data.topic.configs || {};
  const configStatus = h("div", { id: "config-status" });
  const configName = h("input", { id: "config-name", list: "config-names", placeholder: "retention.ms" });
  const configValue = h("input", { id: "config-value", placeholder: "value" });
  const configForm = h("form", { id: "config-form", on: { submit: async (e) => {
    e.preventDefault();
    try {
      await api(`/api/topics/${enc(name)}/configs`, { method: "POST", body: { configs: { [configName.value]: configValue.value } } });
      configStatus.replaceChildren(message("ok", `Set ${configName.value} = ${configValue.value}`));
      await topicPage(name);
      document.getElementById("config-status").replaceChildren(message("ok", `Set ${configName.value} = ${configValue.value}`));
    } catch (err) { configStatus.replaceChildren(message("error", err.message)); }
  } } }, h("label", {}, "Config", configName), h("label", {}, "Value", configValue), h("button", { type: "submit" }, "Save"),
    h("datalist", { id: "config-names" }, Object.keys(configs).map((k) => h("option", { value: k }))));
  const produceStatus = h("div", { id: "produce-status" });
  const key = h("input", { id: "produce-key", placeholder: "key (optional)" });
  const value = h("textarea", { id: "produce-value", placeholder: "value" });
  const partition = h("input", { id: "produce-partition", type: "number", min: 0, placeholder: "any" });
  const produce = h("form", { id: "produce-form", on: { submit: async (e) => {
    e.preventDefault();
    try {
      const written = await api(`/api/topics/${enc(name)}/records`, { method: "POST", body: { key: key.value, value: value.value, partition: partition.value } });
      produceStatus.replaceChildren(message("ok", `Written to partition ${written.partition} at offset ${written.offset}`));
    } catch (err) { produceStatus.replaceChildren(message("error", err.message)); }
  } } }, h("label", {}, "Key", key), h("label", {}, "Value", value), h("label", {}, "Partition", partition), h("button", { type: "submit" }, "Produce"));
  const rates = (series) => chart([
    { label: "records/s in", color: "#1f6feb", points: series.map((p) => [p[0], p[1]]) },
    { label: "records/s out", color: "#067647", points: series.map((p) => [p[0], p[2]]) }], { id: "topic-chart" });
  const cleanup = configs["cleanup.policy"] === "compact"
    ? `Compacted: the latest record of each key is kept (tombstones for ${configs["delete.retention.ms"]} ms).`
    : `Deleted by retention: after ${configs["retention.ms"] === "-1" ? "no time limit" : `${num(configs["retention.ms"])} ms`}, `
      + `${configs["retention.bytes"] === "-1" ? "no size limit" : `beyond ${bytes(configs["retention.bytes"])} a partition`}.`;
  const ratesBox = h("div", {}, rates(data.series));
  render(
    h("h1", {}, `Topic ${name}`),
    h("p", {}, h("a", { href: `#/tail/${enc(name)}`, id: "open-tail" }, "Live tail →")),
    ratesBox,
    h("p", { id: "cleanup", class: "muted" }, cleanup),
    h("h2", {}, "Partitions"), partitions,
    h("h2", {}, "Configs"),
    table(["Name", "Value"], Object.entries(configs).sort().map(([k, v]) => h("tr", { "data-config": k }, h("td", {}, k), h("td", {}, v))), { id: "configs-table" }),
    configForm, configStatus,
    h("h2", {}, "Produce a test record"), produce, produceStatus);
  refreshEvery(2000, async () => {
    const fresh = await api(`/api/topics/${enc(name)}`);
    ratesBox.replaceChildren(rates(fresh.series));
  });
}

function tailPage(name) {
  const start = h("select", { id: "tail-start" }, ["latest", "earliest", "offset", "time"].map((s) => h("option", { value: s }, s)));
  const at = h("input", { id: "tail-at", placeholder: "offset, or time (ISO or ms)" });
  const partition = h("input", { id: "tail-partition", type: "number", min: 0, placeholder: "all" });
  const key = h("input", { id: "tail-key", placeholder: "key equals" });
  const contains = h("input", { id: "tail-contains", placeholder: "contains" });
  const status = h("div", { id: "tail-status", class: "muted" }, "not started");
  const rows = h("tbody", { id: "tail-rows" });
  function open() {
    if (tailSource) tailSource.close();
    rows.replaceChildren();
    const params = new URLSearchParams({ start: start.value });
    let atValue = at.value.trim();
    if (start.value === "time" && atValue && !/^\d+$/.test(atValue)) atValue = String(Date.parse(atValue));
    if (atValue) params.set("at", atValue);
    if (partition.value !== "") params.set("partition", partition.value);
    if (key.value) params.set("key", key.value);
    if (contains.value) params.set("contains", contains.value);
    status.textContent = "connecting…";
    tailSource = new EventSource(`/api/topics/${enc(name)}/tail?${params}`);
    tailSource.addEventListener("ready", () => { status.textContent = "live"; status.dataset.state = "live"; });
    tailSource.addEventListener("record", (e) => {
      rows.prepend(recordRow(name, JSON.parse(e.data)));
      while (rows.children.length > 500) rows.lastChild.remove();  // a page keeps the latest 500
    });
    tailSource.addEventListener("skipped", (e) => rows.prepend(h("tr", {}, h("td", { colspan: 6, class: "muted" }, `${num(JSON.parse(e.data).records)} records not shown (too many per second for a page)`))));
    tailSource.addEventListener("partition_error", (e) => { const d = JSON.parse(e.data); status.replaceChildren(message("error", `partition ${d.partition}: ${d.error}`)); });
    tailSource.addEventListener("error", (e) => {
      if (e.data) { status.replaceChildren(message("error", JSON.parse(e.data).error)); tailSource.close(); }
      else if (tailSource.readyState === EventSource.CLOSED) status.replaceChildren(message("error", "the tail was refused or ended: check the inputs and your rights"));
    });
  }
  const form = h("form", { id: "tail-form", on: { submit: (e) => { e.preventDefault(); open(); } } },
    h("label", {}, "From", start), h("label", {}, "At", at), h("label", {}, "Partition", partition), h("label", {}, "Key", key), h("label", {}, "Contains", contains),
    h("button", { type: "submit" }, "Tail"));
  const records = table(["Partition", { label: "Offset", num: 1 }, "Time", "Key", "Value", "Headers"], [], { id: "tail-table" });
  records.replaceChild(rows, records.querySelector("tbody"));
  render(h("h1", {}, `Live tail: ${name}`), h("p", {}, h("a", { href: `#/topic/${enc(name)}` }, "← topic")), form, status, records);
  open();
}

function recordRow(topic, r) {
  const valueCell = h("td", { class: "value" }, shownBytes(r.value));
  if ((r.value && r.value.truncated) || (r.key && r.key.truncated)) {
    valueCell.append(h("a", { href: "#", class: "show-all", on: { click: async (e) => {
      e.preventDefault();
      try {
        const full = await api(`/api/topics/${enc(topic)}/records/${r.partition}/${r.offset}`);
        valueCell.replaceChildren(shownBytes(full.value));
      } catch (err) { valueCell.append(message("error", err.message)); }
    } } }, `show all (${num((r.value || r.key).size)} bytes)`));
  }
  return h("tr", { "data-offset": r.offset, "data-partition": r.partition },
    h("td", {}, r.partition), h("td", { class: "num" }, r.offset), h("td", {}, new Date(r.timestamp_ms).toISOString()),
    h("td", { class: "key" }, shownBytes(r.key)), valueCell,
    h("td", {}, r.headers.map((x) => h("div", {}, `${x.key}: ${x.value ? x.value.text : ""}`))));
}

async function groupsPage() {
  const body = h("div");
  async function load() {
    const data = await api("/api/groups");
    body.replaceChildren(table(["Group", "State", { label: "Members", num: 1 }, { label: "Lag", num: 1 }, "Lag over time"],
      data.groups.map((g) => h("tr", { "data-group": g.name },
        h("td", {}, h("a", { href: `#/group/${enc(g.name)}` }, g.name)), h("td", {}, g.state), h("td", { class: "num" }, g.members),
        h("td", { class: "num" }, g.lag_series.length ? num(g.lag_series[g.lag_series.length - 1][1]) : "—"),
        h("td", {}, spark(g.lag_series.map((p) => p[1]))))), { id: "groups-table" }));
  }
  render(h("h1", {}, "Consumer groups"), body);
  await load();
  refreshEvery(2000, load);
}

async function groupPage(name) {
  const body = h("div");
  const status = h("div", { id: "reset-status" });
  const topic = h("input", { id: "reset-topic", placeholder: "topic" });
  const to = h("select", { id: "reset-to" }, ["earliest", "latest", "offset", "time"].map((s) => h("option", { value: s }, s)));
  const value = h("input", { id: "reset-value", placeholder: "offset or ms" });
  const reset = h("form", { id: "reset-form", on: { submit: async (e) => {
    e.preventDefault();
    try {
      const done = await api(`/api/groups/${enc(name)}/reset`, { method: "POST", body: { topic: topic.value, to: to.value, value: value.value } });
      status.replaceChildren(message("ok", `Reset ${done.offsets.length} partition(s)`));
      await load();
    } catch (err) { status.replaceChildren(message("error", err.message)); }
  } } }, h("label", {}, "Topic", topic), h("label", {}, "To", to), h("label", {}, "Value", value), h("button", { type: "submit" }, "Reset offsets"));
  async function load() {
    const g = await api(`/api/groups/${enc(name)}`);
    const total = g.partitions.reduce((t, p) => t + Math.max(0, Number(p.lag)), 0);
    body.replaceChildren(
      h("p", {}, "State ", h("span", { class: "badge", id: "group-state" }, g.state), "  generation ", g.generation, "  total lag ",
        h("strong", { id: "group-lag" }, String(total))),
      chart([{ label: "lag (records)", color: "#b42318", points: g.lag_series }], { id: "group-lag-chart" }),
      h("h2", {}, "Members"),
      table(["Member", "Peer", "Partitions"], g.members.map((m) => h("tr", {}, h("td", {}, m.member_id), h("td", {}, m.peer),
        h("td", {}, (m.partitions || []).map((p) => `${p.topic}/${p.partition || 0}`).join(", ")))), { id: "members-table" }),
      h("h2", {}, "Partitions"),
      table(["Topic", "Partition", { label: "Committed", num: 1 }, { label: "End", num: 1 }, { label: "Lag", num: 1 }, "Member"],
        g.partitions.map((p) => h("tr", {}, h("td", {}, p.topic), h("td", {}, p.partition), h("td", { class: "num" }, p.committed_offset),
          h("td", { class: "num" }, p.end_offset), h("td", { class: "num" }, p.lag), h("td", {}, p.member_id))), { id: "group-partitions" }));
  }
  render(h("h1", {}, `Group ${name}`), body, h("h2", {}, "Reset offsets (only while the group has no members)"), reset, status);
  await load();
  refreshEvery(2000, load);
}

async function aclsPage() {
  const data = await api("/api/acls");
  render(h("h1", {}, "ACLs"), h("p", { class: "muted" }, "Read only: change them with the --acls file or `tidelog acls`."),
    table(["Rule", "Source"], (data.acls || []).map((a) => h("tr", {}, h("td", {}, h("code", {}, a.rule)), h("td", {}, a.source))), { id: "acls-table" }));
}

async function clusterPage() {
  const data = await api("/api/cluster");
  const parts = (list) => table(["Topic", "Partition", "Leader", "Replicas", "ISR"], (list || []).map((p) => h("tr", {},
    h("td", {}, p.topic), h("td", {}, p.partition), h("td", {}, p.leader), h("td", {}, (p.replicas || []).join(", ")), h("td", {}, (p.isr || []).join(", ")))));
  render(h("h1", {}, data.clustered ? "Cluster" : "Cluster (a single broker)"),
    h("p", {}, "Controller: ", h("strong", { id: "controller" }, String(data.controller_id))),
    table(["Broker", "Address"], (data.brokers || []).map((b) => h("tr", {}, h("td", {}, b.id), h("td", {}, b.address))), { id: "brokers-table" }),
    h("h2", {}, "Under-replicated partitions"), parts(data.under_replicated),
    h("h2", {}, "Offline partitions"), parts(data.offline));
}

// -- routing -------------------------------------------------------------------------------

async function route() {
  clearInterval(refreshTimer);
  if (tailSource) { tailSource.close(); tailSource = null; }
  if (!session.signed_in) session = await api("/api/session");
  document.getElementById("logout").hidden = !session.auth_required || !session.signed_in;
  if (!session.signed_in) return loginPage();
  const [, page, arg] = (location.hash.slice(1) || "/").split("/").map(decodeURIComponent);
  try {
    if (page === "topic") await topicPage(arg);
    else if (page === "tail") tailPage(arg);
    else if (page === "groups") await groupsPage();
    else if (page === "group") await groupPage(arg);
    else if (page === "acls") await aclsPage();
    else if (page === "cluster") await clusterPage();
    else await overviewPage();
  } catch (err) {
    if (err.status === 401) return;
    render(message("error", err.message));
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST", body: {} }).catch(() => {});
  session = { csrf: null, signed_in: false };
  route();
});
window.addEventListener("hashchange", route);
route();
