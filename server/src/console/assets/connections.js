// Connections: the named MQTT connections with their live status, create and delete. The
// status is asked for every few seconds, only while this page is shown and the tab visible.
// The server's messages are shown as they are.

import { api } from "./api.js";
import { el, outcome } from "./format.js";

/** How often the statuses are refreshed while the page is open. */
const REFRESH_MS = 3000;

/** The badge class of a connection status. */
function statusClass(status) {
  if (status === "connected") return "running";
  if (status === "disconnected") return "error";
  return "stopped";
}

export function mount(root) {
  const list = el("tbody");
  const outcomeBox = el("div", { id: "connection-outcome", role: "alert" });
  const idInput = el("input", { id: "connection-id", placeholder: "id (e.g. edge)", "aria-label": "connection id" });
  const serverInput = el("input", { id: "connection-server", placeholder: "tcp://host:1883", "aria-label": "server", size: 28 });
  const userInput = el("input", { id: "connection-username", placeholder: "username (optional)", "aria-label": "username", autocomplete: "off" });
  const passInput = el("input", { id: "connection-password", type: "password", placeholder: "password (optional)", "aria-label": "password", autocomplete: "new-password" });

  const { run } = outcome(outcomeBox, () => load());

  function create() {
    return run(() => {
      const props = { server: serverInput.value.trim() };
      if (userInput.value.trim()) props.username = userInput.value.trim();
      if (passInput.value) props.password = passInput.value;
      return api("POST", "/connections", { id: idInput.value.trim(), typ: "mqtt", props })
        .then((text) => { passInput.value = ""; return text; });
    });
  }

  root.append(
    el("h1", {}, "Connections"),
    el("div", { class: "scroll" }, el("table", { id: "connections" },
      el("thead", {}, el("tr", {}, el("th", {}, "Id"), el("th", {}, "Type"), el("th", {}, "Status"),
        el("th", { title: "running sources and sinks holding it" }, "Running users"), el("th", {}, "Server"), el("th", {}, ""))),
      list)),
    el("h2", {}, "New MQTT connection"),
    el("div", { class: "toolbar" }, idInput, serverInput, userInput, passInput,
      el("button", { id: "connection-create", class: "primary", onclick: create }, "Create")),
    el("p", { class: "muted" }, "Streams and sinks use it with connectionSelector; see docs/connections.md."),
    outcomeBox,
  );

  async function load() {
    let all;
    try {
      all = await api("GET", "/connections");
    } catch (e) {
      list.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error" }, e.message)));
      return;
    }
    const rows = all.map((c) => el("tr", { "data-connection": c.id },
      el("td", {}, el("code", {}, c.id)),
      el("td", {}, c.typ),
      el("td", { class: "status" },
        el("span", { class: "badge " + statusClass(c.status) }, c.status),
        c.err ? el("span", { class: "error" }, " " + c.err) : ""),
      el("td", { class: "num refs" }, String(c.refCount || 0)),
      el("td", {}, el("code", {}, (c.props && c.props.server) || "–")),
      el("td", {}, el("button", { class: "danger", onclick: () => {
        if (confirm(`Delete connection ${c.id}?`)) run(() => api("DELETE", "/connections/" + encodeURIComponent(c.id)));
      } }, "Delete"))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No connections yet.")));
    list.replaceChildren(...rows);
  }

  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
