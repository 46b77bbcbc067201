// Plugins: list with versions, install from a URL or by uploading a zip, update, delete.
// The server's messages are shown as they are.

import { api } from "./api.js";
import { el, outcome } from "./format.js";

const TYPES = ["sources", "sinks", "functions"];

export function mount(root) {
  const list = el("tbody");
  const outcomeBox = el("div", { id: "plugin-outcome", role: "alert" });
  const typeSelect = el("select", { id: "plugin-type", "aria-label": "plugin type" },
    ...TYPES.map((t) => el("option", { value: t }, t)));
  const nameInput = el("input", { id: "plugin-name", placeholder: "name (e.g. mysql)", "aria-label": "plugin name" });
  const urlInput = el("input", { id: "plugin-url", placeholder: "https://…/plugin.zip", "aria-label": "zip URL", size: 36 });
  const shaInput = el("input", { id: "plugin-sha", placeholder: "sha256 (optional)", "aria-label": "sha256", size: 20 });
  const fileInput = el("input", { id: "plugin-file", type: "file", accept: ".zip,application/zip", "aria-label": "zip file" });

  const { say, run } = outcome(outcomeBox, () => load());

  function installUrl() {
    return run(() => {
      const body = { name: nameInput.value.trim(), file: urlInput.value.trim() };
      if (shaInput.value.trim()) body.sha256 = shaInput.value.trim();
      return api("POST", "/plugins/" + typeSelect.value, body);
    });
  }

  function upload(method, type, name, file) {
    return run(() => {
      if (!file) throw new Error("choose a zip file");
      if (!name) throw new Error("give the plugin a name");
      return api(method, `/console/plugins/${type}/${encodeURIComponent(name)}`, file, "application/zip");
    });
  }

  root.append(
    el("h1", {}, "Plugins"),
    el("div", { class: "scroll" }, el("table", { id: "plugins" },
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Type"), el("th", {}, "Version"), el("th", {}, ""))),
      list)),
    el("h2", {}, "Install"),
    el("div", { class: "toolbar" }, typeSelect, nameInput),
    el("div", { class: "toolbar" }, urlInput, shaInput,
      el("button", { id: "install-url", onclick: installUrl }, "Install from URL")),
    el("div", { class: "toolbar" }, fileInput,
      el("button", { id: "install-upload", class: "primary",
        onclick: () => upload("POST", typeSelect.value, nameInput.value.trim(), fileInput.files[0]) }, "Upload and install")),
    el("p", { class: "muted" }, "A package is a zip with the library (Name@vX.Y.Z.so) and name.json; see docs/plugins.md."),
    outcomeBox,
  );

  async function load() {
    const rows = [];
    for (const type of TYPES) {
      let names = [];
      try { names = await api("GET", "/plugins/" + type); } catch (e) { say(false, e.message); }
      for (const name of names) {
        let version = "";
        try { version = (await api("GET", `/plugins/${type}/${encodeURIComponent(name)}`)).version || ""; } catch (_) { /* listed, then gone */ }
        const updateFile = el("input", { type: "file", accept: ".zip,application/zip", "aria-label": `new version of ${name}` });
        rows.push(el("tr", { "data-plugin": name },
          el("td", {}, name), el("td", {}, type), el("td", { class: "version" }, version || "–"),
          el("td", {}, el("div", { class: "toolbar" },
            updateFile,
            el("button", { onclick: () => upload("PUT", type, name, updateFile.files[0]) }, "Update"),
            el("button", { class: "danger", onclick: () => {
              if (confirm(`Delete plugin ${name}?`)) run(() => api("DELETE", `/plugins/${type}/${encodeURIComponent(name)}`));
            } }, "Delete")))));
      }
    }
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No plugins installed.")));
    list.replaceChildren(...rows);
  }
  load();
}
