// Schemas: the protobuf and custom registries, a protobuf schema's text, create one from pasted
// .proto text, delete. The server's messages (parse errors, "in use") are shown as they are.

import { api } from "./api.js";
import { el, outcome } from "./format.js";

const TYPES = ["protobuf", "custom"];

export function mount(root) {
  const lists = Object.fromEntries(TYPES.map((t) => [t, el("tbody", { id: `schemas-${t}` })]));
  const outcomeBox = el("div", { id: "schema-outcome", role: "alert" });
  const viewer = el("div", { id: "schema-view" });
  const nameInput = el("input", { id: "schema-name", placeholder: "name (e.g. readings)", "aria-label": "schema name" });
  const contentInput = el("textarea", { id: "schema-content", class: "code", rows: 8, cols: 70, spellcheck: "false",
    "aria-label": ".proto text", placeholder: 'syntax = "proto3";\nmessage Reading { string device = 1; double temperature = 2; }' });

  const { run } = outcome(outcomeBox, () => load());

  async function show(type, name) {
    try {
      const schema = await api("GET", `/schemas/${type}/${encodeURIComponent(name)}`);
      viewer.dataset.shown = `${type}.${name}`;
      viewer.replaceChildren(el("h2", {}, `${type}.${name}`),
        schema.content ? el("pre", { class: "block", id: "schema-text" }, schema.content)
          : el("p", { class: "muted" }, schema.soFile || schema.file || "no text to show"));
    } catch (e) {
      viewer.replaceChildren(el("div", { class: "message bad" }, e.message));
    }
  }

  function table(type) {
    return el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, ""))), lists[type]));
  }

  root.append(
    el("h1", {}, "Schemas"),
    el("div", { class: "grid2" },
      el("div", {}, el("h2", {}, "Protobuf"), table("protobuf")),
      el("div", {}, el("h2", {}, "Custom"), table("custom"))),
    viewer,
    el("h2", {}, "New protobuf schema"),
    el("div", { class: "toolbar" }, nameInput,
      el("button", { id: "schema-create", class: "primary", onclick: () => run(() =>
        api("POST", "/schemas/protobuf", { name: nameInput.value.trim(), content: contentInput.value })) }, "Create")),
    contentInput,
    el("p", { class: "muted" }, "Custom converters are registered with soFile over the REST API; see docs/schemas.md."),
    outcomeBox,
  );

  async function load() {
    for (const type of TYPES) {
      let names;
      try {
        names = await api("GET", "/schemas/" + type);
      } catch (e) {
        lists[type].replaceChildren(el("tr", {}, el("td", { colspan: 2, class: "error" }, e.message)));
        continue;
      }
      const rows = names.map((name) => el("tr", { "data-schema": name },
        el("td", {}, el("code", {}, name)),
        el("td", {}, el("div", { class: "toolbar" },
          el("button", { class: "view", onclick: () => show(type, name) }, "View"),
          el("button", { class: "danger", onclick: () => {
            if (confirm(`Delete schema ${type}.${name}?`)) {
              run(() => api("DELETE", `/schemas/${type}/${encodeURIComponent(name)}`))
                .then((done) => { if (done && viewer.dataset.shown === `${type}.${name}`) viewer.replaceChildren(); });
            }
          } }, "Delete")))));
      if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 2, class: "muted" }, "None.")));
      lists[type].replaceChildren(...rows);
    }
  }
  load();
}
