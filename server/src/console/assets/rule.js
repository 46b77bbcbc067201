// Rule page: SQL, the dataflow graph laid out with dagre, live per-operator counts, status
// metrics, and start/stop/restart/edit/delete.

import { api, events } from "./api.js";
import { el, count, time, statusClass } from "./format.js";
import { highlight } from "./sql.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The topology's nodes and edges: `{sources, edges: {from: [to]}}` → [nodes], [[from, to]]. */
function graphOf(topo) {
  const nodes = new Set(topo.sources || []);
  const edges = [];
  for (const [from, tos] of Object.entries(topo.edges || {})) {
    nodes.add(from);
    for (const to of tos) { nodes.add(to); edges.push([from, to]); }
  }
  return { nodes: [...nodes], edges };
}

/** Lays the graph out with dagre and draws it; returns `{svg, counts: Map(node → text)}`. */
function drawGraph(topo) {
  const { nodes, edges } = graphOf(topo);
  const g = new window.dagre.graphlib.Graph();
  const narrow = window.innerWidth < 700;
  g.setGraph({ rankdir: narrow ? "TB" : "LR", nodesep: 18, ranksep: 46, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n, { width: Math.max(130, n.length * 7.6 + 24), height: 46 });
  for (const [a, b] of edges) g.setEdge(a, b);
  window.dagre.layout(g);
  const { width, height } = g.graph();
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "dataflow graph" });
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z" }));
  defs.append(marker);
  root.append(defs);
  for (const e of g.edges()) {
    const pts = g.edge(e).points;
    root.append(svg("path", { d: "M" + pts.map((p) => `${p.x},${p.y}`).join(" L") }));
  }
  const counts = new Map();
  for (const n of g.nodes()) {
    const box = g.node(n);
    const kind = n.startsWith("source_") ? "source" : n.startsWith("sink_") ? "sink" : "op";
    const group = svg("g", { "data-node": n });
    group.append(svg("rect", { class: kind, x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height }));
    group.append(svg("text", { x: box.x, y: box.y - 5, "text-anchor": "middle" }, n));
    const c = svg("text", { class: "count", x: box.x, y: box.y + 13, "text-anchor": "middle" }, "–");
    group.append(c);
    counts.set(n, c);
    root.append(group);
  }
  return { svg: root, counts };
}

export function mount(root, parts) {
  const id = parts[0];
  const abort = new AbortController();
  const badge = el("span", { class: "badge", id: "rule-status" }, "…");
  const message = el("div", { id: "rule-message" });
  const outcome = el("div", { role: "alert" });
  const graph = el("div", { class: "graph", id: "graph" });
  const sql = el("pre", { class: "block", id: "rule-sql" });
  const metrics = el("tbody");
  const explain = el("pre", { class: "block" });
  let counts = new Map();

  async function act(verb, method, path) {
    try {
      const text = await api(method, path);
      outcome.replaceChildren(el("div", { class: "message good" }, text));
      if (verb === "delete") location.hash = "#/";
    } catch (e) {
      outcome.replaceChildren(el("div", { class: "message bad" }, e.message));
    }
  }
  const base = "/rules/" + encodeURIComponent(id);
  root.append(
    el("h1", {}, "Rule ", el("code", {}, id), " ", badge),
    el("div", { class: "toolbar" },
      el("button", { id: "start", onclick: () => act("start", "POST", base + "/start") }, "Start"),
      el("button", { id: "stop", onclick: () => act("stop", "POST", base + "/stop") }, "Stop"),
      el("button", { id: "restart", onclick: () => act("restart", "POST", base + "/restart") }, "Restart"),
      el("a", { class: "button", href: "#/editor?rule=" + encodeURIComponent(id) }, "Edit"),
      el("button", { class: "danger", id: "delete", onclick: () => {
        if (confirm(`Delete rule ${id}?`)) act("delete", "DELETE", base);
      } }, "Delete")),
    outcome,
    message,
    el("h2", {}, "Dataflow"),
    graph,
    el("h2", {}, "SQL"),
    sql,
    el("h2", {}, "Status"),
    el("div", { class: "scroll" }, el("table", {}, el("tbody", {}), metrics)),
    el("details", {}, el("summary", {}, "Plan (EXPLAIN)"), explain),
  );

  api("GET", base).then((rule) => highlight(sql, rule.sql || "", null))
    .catch((e) => { sql.textContent = e.message; });
  api("GET", base + "/topo").then((topo) => {
    if (!window.dagre) { graph.textContent = "the graph layout library did not load"; return; }
    const drawn = drawGraph(topo);
    counts = drawn.counts;
    graph.replaceChildren(drawn.svg);
  }).catch((e) => { graph.replaceChildren(el("p", { class: "error" }, e.message)); });
  api("GET", base + "/explain").then((text) => { explain.textContent = text; })
    .catch((e) => { explain.textContent = e.message; });

  function render(status) {
    if (!status) {
      badge.textContent = "not found";
      badge.className = "badge error";
      return;
    }
    badge.textContent = status.status;
    badge.className = "badge " + statusClass(status.status);
    message.replaceChildren(status.message
      ? el("div", { class: "message " + (status.status.includes("error") ? "bad" : "") }, status.message) : "");
    for (const [node, text] of counts) {
      const n = (k) => status[`${node}_0_${k}`];
      const parts = [];
      if (n("records_in_total") !== undefined) parts.push("in " + count(n("records_in_total")));
      if (n("records_out_total") !== undefined) parts.push("out " + count(n("records_out_total")));
      if (n("exceptions_total")) parts.push("⚠ " + count(n("exceptions_total")));
      text.textContent = parts.join(" · ") || "–";
    }
    const rows = [];
    for (const [k, v] of Object.entries(status)) {
      if (k === "status" || k === "message") continue;
      const shown = k.endsWith("Timestamp") || k.endsWith("_time") || k.endsWith("last_invocation")
        ? time(v) : typeof v === "number" ? count(v, k.endsWith("_us") ? "µs" : "") : String(v);
      rows.push(el("tr", {}, el("th", {}, k), el("td", { class: "num", "data-metric": k }, shown)));
    }
    metrics.replaceChildren(...rows);
  }

  const conn = document.getElementById("conn");
  events("/console/events?limit=0&rule=" + encodeURIComponent(id), (name, data) => {
    if (name === "metrics") render(JSON.parse(data).rule);
  }, abort.signal, (s) => { conn.textContent = s; });
  return () => abort.abort();
}
