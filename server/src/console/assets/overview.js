// Overview: the server, every rule with live rates, and the streams and tables.

import { api, events } from "./api.js";
import { el, count, rate, bytes, duration, sparkline, statusClass } from "./format.js";

/** Samples kept per rule for the sparklines: 5 minutes at one message a second. */
const HISTORY = 300;
/** Rules per page. */
const PAGE = 50;

export function mount(root) {
  const abort = new AbortController();
  const history = new Map(); // id → [{t, in, out}]
  let offset = 0;
  let filter = "";
  let stream = null;

  const cards = el("div", { class: "cards" });
  const body = el("tbody");
  const pager = el("div", { class: "toolbar" });
  const filterInput = el("input", {
    type: "search", placeholder: "Filter rules (press /)", "aria-label": "filter rules", "data-filter": true,
    oninput: () => { filter = filterInput.value; offset = 0; restart(); },
  });
  const sources = el("div");
  root.append(
    el("h1", {}, "Overview"),
    cards,
    el("h2", {}, "Rules"),
    el("div", { class: "toolbar" }, filterInput, el("a", { href: "#/editor?kind=rule", class: "button" }, "New rule")),
    el("div", { class: "scroll" }, el("table", { id: "rules" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Rule"), el("th", {}, "Status"),
        el("th", {}, "In"), el("th", { class: "hide-narrow" }, ""),
        el("th", {}, "Out"), el("th", { class: "hide-narrow" }, ""),
        el("th", {}, "Exceptions"), el("th", {}, "Last error"))),
      body)),
    pager,
    sources,
  );

  function card(label, value) {
    return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  }

  // Kept across renders, so the version shows as soon as it is known.
  const version = el("div", { class: "value" }, "–");
  api("GET", "/").then((info) => { version.textContent = info.version; }).catch(() => {});

  function render(snap) {
    cards.replaceChildren(
      el("div", { class: "card" }, el("div", { class: "label" }, "Version"), version),
      card("Up", duration(snap.upTimeSeconds)),
      card("Workers", String(snap.workers)),
      card("Memory", bytes(snap.memoryBytes)),
      card("Rules", count(snap.rulesTotal)),
    );
    const rows = [];
    for (const r of snap.rules) {
      const h = history.get(r.id) || [];
      h.push({ t: snap.time, in: r.recordsIn, out: r.recordsOut });
      if (h.length > HISTORY) h.shift();
      history.set(r.id, h);
      const rates = (key) => h.slice(1).map((s, i) => Math.max(0, (s[key] - h[i][key]) / Math.max(0.001, (s.t - h[i].t) / 1000)));
      const inRates = rates("in");
      const outRates = rates("out");
      const last = (xs) => (xs.length ? xs[xs.length - 1] : 0);
      const error = r.message || r.lastException;
      rows.push(el("tr", { "data-rule": r.id },
        el("td", {}, el("a", { href: "#/rule/" + encodeURIComponent(r.id) }, r.id)),
        el("td", {}, el("span", { class: "badge " + statusClass(r.status) }, r.status)),
        el("td", { class: "num", title: count(r.recordsIn, "rows") + " read" },
          el("span", { class: "in-total" }, count(r.recordsIn)), el("br"), el("span", { class: "muted" }, rate(last(inRates)))),
        el("td", { class: "hide-narrow" }, sparkline(inRates)),
        el("td", { class: "num", title: count(r.recordsOut, "rows") + " written" },
          el("span", { class: "out-total" }, count(r.recordsOut)), el("br"), el("span", { class: "muted" }, rate(last(outRates)))),
        el("td", { class: "hide-narrow" }, sparkline(outRates)),
        el("td", { class: "num" }, count(r.exceptions)),
        el("td", { class: error ? "error" : "muted" }, error || "–"),
      ));
    }
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" },
        filter ? "No rule matches." : "No rules yet. ", filter ? "" : el("a", { href: "#/editor?kind=rule" }, "Create one"))));
    }
    body.replaceChildren(...rows);
    pager.replaceChildren();
    if (snap.rulesTotal > PAGE) {
      pager.append(
        el("button", { disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); restart(); } }, "Previous"),
        el("span", { class: "muted" }, `${offset + 1}–${Math.min(offset + PAGE, snap.rulesTotal)} of ${snap.rulesTotal}`),
        el("button", { disabled: offset + PAGE >= snap.rulesTotal, onclick: () => { offset += PAGE; restart(); } }, "Next"),
      );
    }
  }

  function restart() {
    if (stream) stream.abort();
    stream = new AbortController();
    abort.signal.addEventListener("abort", () => stream.abort());
    const q = new URLSearchParams({ offset, limit: PAGE });
    if (filter) q.set("filter", filter);
    const conn = document.getElementById("conn");
    events("/console/events?" + q, (name, data) => {
      if (name === "metrics") render(JSON.parse(data));
    }, stream.signal, (s) => { conn.textContent = s; });
  }

  async function loadSources() {
    const list = (items, kind) => items.length
      ? el("ul", {}, items.map((s) => el("li", {}, el("a", { href: `#/editor?kind=${kind}&name=${encodeURIComponent(s.name)}` }, s.name),
          s.type ? el("span", { class: "muted" }, " · " + s.type) : "")))
      : el("p", { class: "muted" }, `No ${kind}s.`);
    try {
      const [streams, tables] = await Promise.all([api("GET", "/streamdetails"), api("GET", "/tabledetails")]);
      sources.replaceChildren(
        el("div", { class: "grid2" },
          el("div", {}, el("h2", {}, "Streams"), list(streams, "stream"), el("a", { href: "#/editor?kind=stream" }, "New stream")),
          el("div", {}, el("h2", {}, "Tables"), list(tables, "table"), el("a", { href: "#/editor?kind=table" }, "New table"))),
      );
    } catch (e) {
      sources.replaceChildren(el("p", { class: "error" }, e.message));
    }
  }

  restart();
  loadSources();
  return () => abort.abort();
}
