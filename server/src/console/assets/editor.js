// Editor: create or change a rule, stream or table, with SQL highlighting, validation as you
// type, EXPLAIN, and a "try it" pane that runs the rule as a rule test.

import { api, events } from "./api.js";
import { el } from "./format.js";
import { sqlEditor, position } from "./sql.js";

const TEMPLATES = {
  rule: "SELECT *\nFROM demo\nWHERE temperature > 20",
  stream: 'CREATE STREAM demo (temperature FLOAT, humidity BIGINT)\nWITH (TYPE="httppush", DATASOURCE="/demo", FORMAT="json")',
  table: 'CREATE TABLE lookup (id BIGINT, name STRING)\nWITH (TYPE="file", DATASOURCE="lookup.json", FORMAT="json")',
};

/** How long "try it" runs on the live stream. */
const LIVE_SECONDS = 10;

export function mount(root, _parts, params) {
  const abort = new AbortController();
  const editing = params.get("rule");
  let kind = editing ? "rule" : (params.get("kind") || "rule");
  if (!TEMPLATES[kind]) kind = "rule";

  const kindSelect = el("select", { "aria-label": "what to create", disabled: !!editing,
    onchange: () => { location.hash = "#/editor?kind=" + kindSelect.value; } },
  ...["rule", "stream", "table"].map((k) => el("option", { value: k, selected: k === kind }, k[0].toUpperCase() + k.slice(1))));
  const idInput = el("input", { id: "rule-id", placeholder: "rule id", "aria-label": "rule id", value: editing || "",
    disabled: !!editing, oninput: () => schedule() });
  const actions = el("textarea", { id: "rule-actions", rows: 3, "aria-label": "actions (JSON)", spellcheck: "false",
    oninput: () => schedule() });
  actions.value = '[{"log": {}}]';
  const options = el("textarea", { id: "rule-options", rows: 2, "aria-label": "options (JSON)", spellcheck: "false",
    oninput: () => schedule() });
  options.value = "{}";
  const status = el("div", { id: "validation", class: "message", role: "status", "aria-live": "polite" }, "");
  const outcome = el("div", { id: "outcome", role: "alert" });
  const explainOut = el("pre", { class: "block", id: "explain", hidden: true });
  const editor = sqlEditor("SQL", params.get("name") ? "" : TEMPLATES[kind], () => schedule());
  editor.textarea.id = "sql";

  const create = el("button", { class: "primary", id: "create", onclick: () => submit() }, editing ? "Save" : "Create " + kind);
  const explainButton = el("button", { id: "explain-button", onclick: () => explain() }, "Explain");

  root.append(
    el("h1", {}, editing ? `Edit rule ${editing}` : "Editor"),
    el("div", { class: "toolbar" }, el("label", {}, "Create", kindSelect), kind === "rule" ? el("label", {}, "ID", idInput) : ""),
    editor.root,
    kind === "rule" ? el("div", { class: "grid2" },
      el("label", { style: "display:block" }, el("div", { class: "muted" }, "Actions (JSON)"), actions),
      el("label", { style: "display:block" }, el("div", { class: "muted" }, "Options (JSON)"), options)) : "",
    status,
    el("div", { class: "toolbar" }, create, kind === "rule" ? explainButton : "",
      el("span", { class: "kbd" }, "Ctrl+Enter creates")),
    outcome,
    explainOut,
  );
  for (const t of [actions, options]) { t.style.width = "100%"; t.style.fontFamily = "ui-monospace, monospace"; }
  root.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
  });

  if (params.get("name")) showExisting(params.get("name"));
  if (editing) loadRule(editing);
  if (kind === "rule") root.append(tryPane());

  function body() {
    const rule = { id: idInput.value.trim() || "draft", sql: editor.textarea.value };
    rule.actions = JSON.parse(actions.value || "[]");
    const opts = JSON.parse(options.value || "{}");
    if (Object.keys(opts).length) rule.options = opts;
    return rule;
  }

  function show(box, ok, text) {
    box.className = "message " + (ok ? "good" : "bad");
    box.textContent = text;
  }

  // Validation as you type: the latest answer wins; older ones are dropped.
  let timer = null;
  let seq = 0;
  function schedule() {
    if (kind !== "rule") return;
    clearTimeout(timer);
    timer = setTimeout(validate, 350);
  }
  async function validate() {
    const mine = ++seq;
    let rule;
    try { rule = body(); } catch (e) { show(status, false, "actions or options: " + e.message); return; }
    try {
      await api("POST", "/rules/validate", rule);
      if (mine !== seq) return;
      show(status, true, "valid");
      editor.markError(null);
    } catch (e) {
      if (mine !== seq) return;
      const pos = position(e.message);
      show(status, false, e.message + (pos ? `  (line ${pos.line}, column ${pos.column})` : ""));
      editor.markError(pos);
    }
  }

  async function submit() {
    outcome.replaceChildren();
    try {
      if (kind === "rule") {
        const rule = body();
        if (!idInput.value.trim()) throw new Error("give the rule an id");
        const text = editing
          ? await api("PUT", "/rules/" + encodeURIComponent(editing), rule)
          : await api("POST", "/rules", rule);
        show(outcome, true, text);
        location.hash = "#/rule/" + encodeURIComponent(rule.id);
      } else {
        const text = await api("POST", kind === "stream" ? "/streams" : "/tables", { sql: editor.textarea.value });
        show(outcome, true, text);
      }
    } catch (e) {
      show(outcome, false, e.message);
      editor.markError(position(e.message));
    }
  }

  async function explain() {
    explainOut.hidden = false;
    try {
      explainOut.textContent = await api("POST", "/console/explain", editor.textarea.value);
    } catch (e) {
      explainOut.textContent = e.message;
      editor.markError(position(e.message));
    }
  }

  async function loadRule(id) {
    try {
      const rule = await api("GET", "/rules/" + encodeURIComponent(id));
      editor.setText(rule.sql || "");
      actions.value = JSON.stringify(rule.actions || [], null, 1);
      options.value = JSON.stringify(rule.options || {}, null, 1);
      schedule();
    } catch (e) {
      show(outcome, false, e.message);
    }
  }

  async function showExisting(name) {
    const path = (kind === "table" ? "/tables/" : "/streams/") + encodeURIComponent(name);
    try {
      const described = await api("GET", path);
      outcome.replaceChildren(
        el("h2", {}, `${kind} ${name}`),
        el("pre", { class: "block" }, JSON.stringify(described, null, 2)),
        el("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete ${kind} ${name}?`)) return;
          try { show(status, true, await api("DELETE", path)); } catch (e) { show(status, false, e.message); }
        } }, `Delete ${kind}`),
      );
    } catch (e) {
      show(outcome, false, e.message);
    }
  }

  function tryPane() {
    const rows = el("textarea", { id: "try-rows", rows: 4, spellcheck: "false", "aria-label": "rows to try (JSON array)" });
    rows.value = '[{"temperature": 25, "humidity": 40}, {"temperature": 10, "humidity": 80}]';
    rows.style.width = "100%";
    rows.style.fontFamily = "ui-monospace, monospace";
    const results = el("pre", { class: "block results", id: "try-results", "aria-live": "polite" });
    const note = el("div", { class: "muted" });
    let current = null;
    async function run(live) {
      if (current) await current.stop();
      results.textContent = "";
      const sql = editor.textarea.value;
      const id = "console-" + Math.random().toString(36).slice(2, 10);
      const test = { id, sql };
      if (!live) {
        const stream = (/\bfrom\s+([A-Za-z_][A-Za-z0-9_]*)/i.exec(sql) || [])[1];
        let data;
        try { data = JSON.parse(rows.value); } catch (e) { note.textContent = "rows: " + e.message; return; }
        test.mockSource = { [stream]: { data: Array.isArray(data) ? data : [data], interval: 10, loop: false } };
      }
      const stop = new AbortController();
      abort.signal.addEventListener("abort", () => stop.abort());
      current = {
        async stop() {
          stop.abort();
          current = null;
          try { await api("DELETE", "/ruletest/" + id); } catch (_) { /* already gone */ }
        },
      };
      try {
        await api("POST", "/ruletest", test);
      } catch (e) {
        note.textContent = e.message;
        current = null;
        return;
      }
      let started = false;
      note.textContent = live ? `Running on the live stream for ${LIVE_SECONDS} s…` : "Running…";
      events("/console/ruletest/" + encodeURIComponent(id) + "/events", (name, data) => {
        if (name === "result") results.textContent += data + "\n";
        if (name === "closed" || name === "end") { note.textContent = "Done."; return false; }
        return true;
      }, stop.signal, async (state) => {
        if (state === "live" && !started) {
          started = true;
          try { await api("POST", `/ruletest/${id}/start`); } catch (e) { note.textContent = e.message; }
          const mine = current;
          setTimeout(() => { if (current === mine && current) { current.stop(); note.textContent = "Done."; } },
            (live ? LIVE_SECONDS : 5) * 1000);
        }
      });
    }
    return el("section", { id: "try" },
      el("h2", {}, "Try it"),
      el("p", { class: "muted" }, "Runs the SQL as a rule test: on the rows below (for the stream after FROM), or on the live stream for a few seconds. Nothing is saved."),
      rows,
      el("div", { class: "toolbar" },
        el("button", { id: "try-rows-button", onclick: () => run(false) }, "Run on these rows"),
        el("button", { onclick: () => run(true) }, `Run on the live stream (${LIVE_SECONDS} s)`),
        el("button", { onclick: () => current && current.stop() }, "Stop")),
      note,
      results);
  }

  schedule();
  return () => { abort.abort(); clearTimeout(timer); };
}
