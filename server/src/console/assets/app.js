// The console's shell: a hash router over one module per page, and keyboard shortcuts.

import * as overview from "./overview.js";
import * as rule from "./rule.js";
import * as editor from "./editor.js";
import * as plugins from "./plugins.js";
import * as connections from "./connections.js";
import * as schemas from "./schemas.js";
import { el } from "./format.js";

const view = document.getElementById("view");
let unmount = null;

/** `#/rule/abc?x=1` → ["rule", "abc"], {x: "1"} */
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

function show() {
  if (unmount) unmount();
  unmount = null;
  document.getElementById("conn").textContent = "";
  view.replaceChildren();
  const { parts, params } = route();
  const page = { "": overview, rule, editor, plugins, connections, schemas }[parts[0] || ""];
  document.querySelectorAll("nav a").forEach((a) => {
    const active = a.dataset.page === (parts[0] || "overview") ||
      (parts[0] === "rule" && a.dataset.page === "overview");
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (!page) {
    view.append(el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  unmount = page.mount(view, parts.slice(1), params) || null;
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", show);
document.addEventListener("keydown", (e) => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "");
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const go = { "1": "#/", "2": "#/editor", "3": "#/plugins", "4": "#/connections", "5": "#/schemas" }[e.key];
  if (go) { location.hash = go; e.preventDefault(); }
  if (e.key === "/") {
    const filter = document.querySelector("[data-filter]");
    if (filter) { filter.focus(); e.preventDefault(); }
  }
});
show();
