// A small SQL tokenizer for highlighting: keywords, strings, numbers, comments, function
// calls. It only colours text; the server's parser decides what is valid.

const KEYWORDS = new Set(`select from where group by having order asc desc limit as and or not in is null
true false case when then else end create stream table with join inner left right full cross on
distinct between like over partition filter tumblingwindow hoppingwindow slidingwindow sessionwindow
countwindow bigint float string boolean datetime bytea array struct drop describe explain show
streams tables union all exists cast`.split(/\s+/));

/** Splits `text` into `[{type, text, start}]`; types: kw, str, num, cmt, fn, id, ws, op. */
export function tokenize(text) {
  const out = [];
  let i = 0;
  const push = (type, end) => { out.push({ type, text: text.slice(i, end), start: i }); i = end; };
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j++;
      push("ws", j);
    } else if (c === "-" && text[i + 1] === "-") {
      const j = text.indexOf("\n", i);
      push("cmt", j < 0 ? text.length : j);
    } else if (c === "/" && text[i + 1] === "*") {
      const j = text.indexOf("*/", i + 2);
      push("cmt", j < 0 ? text.length : j + 2);
    } else if (c === "'" || c === '"' || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      push(c === "`" ? "id" : "str", Math.min(j + 1, text.length));
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < text.length && /[0-9._eE]/.test(text[j])) j++;
      push("num", j);
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < text.length && /[A-Za-z0-9_]/.test(text[j])) j++;
      const word = text.slice(i, j);
      let k = j;
      while (k < text.length && text[k] === " ") k++;
      const type = KEYWORDS.has(word.toLowerCase()) ? "kw" : text[k] === "(" ? "fn" : "id";
      push(type, j);
    } else {
      push("op", i + 1);
    }
  }
  return out;
}

/** The offset in `text` of 1-based `line` and `column`. */
export function offsetOf(text, line, column) {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf("\n", offset);
    if (nl < 0) return text.length;
    offset = nl + 1;
  }
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

/** Finds "at L:C" in a server message: `{line, column}` or null. */
export function position(message) {
  const m = / at (\d+):(\d+)/.exec(message) || /line:? (\d+),? column:? (\d+)/i.exec(message);
  return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
}

/**
 * Fills `pre` with the highlighted `text`; the token at `errorAt` (an offset) is marked.
 */
export function highlight(pre, text, errorAt) {
  const nodes = [];
  for (const t of tokenize(text)) {
    const span = document.createElement("span");
    const end = t.start + t.text.length;
    const isError = errorAt !== null && errorAt !== undefined && t.type !== "ws" &&
      errorAt >= t.start && (errorAt < end || (errorAt === end && end === text.length));
    span.className = (t.type === "ws" || t.type === "id" || t.type === "op" ? "" : "tok-" + t.type) + (isError ? " tok-err" : "");
    span.textContent = t.text;
    nodes.push(span.className.trim() ? span : document.createTextNode(t.text));
  }
  if (errorAt !== null && errorAt !== undefined && errorAt >= text.length) {
    const mark = document.createElement("span");
    mark.className = "tok-err";
    mark.textContent = " ";
    nodes.push(mark);
  }
  // A trailing newline needs content after it to take up a line, as the textarea shows it.
  nodes.push(document.createTextNode("\n"));
  pre.replaceChildren(...nodes);
}

/**
 * Makes a highlighted SQL editor: returns `{root, textarea, setText, markError}`.
 * `onInput(text)` runs on every change.
 */
export function sqlEditor(label, initial, onInput) {
  const pre = document.createElement("pre");
  pre.setAttribute("aria-hidden", "true");
  const textarea = document.createElement("textarea");
  textarea.spellcheck = false;
  textarea.setAttribute("aria-label", label);
  textarea.value = initial || "";
  const root = document.createElement("div");
  root.className = "sql";
  root.append(pre, textarea);
  let errorAt = null;
  const redraw = () => highlight(pre, textarea.value, errorAt);
  textarea.addEventListener("input", () => { errorAt = null; redraw(); onInput && onInput(textarea.value); });
  textarea.addEventListener("keydown", (e) => {
    // Tab indents; Escape then Tab leaves the field, as keyboard users expect.
    if (e.key === "Tab" && !e.shiftKey && !textarea.dataset.escaped) {
      e.preventDefault();
      textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
      textarea.dispatchEvent(new Event("input"));
    }
    if (e.key === "Escape") textarea.dataset.escaped = "1";
    else if (e.key !== "Tab") delete textarea.dataset.escaped;
  });
  redraw();
  return {
    root,
    textarea,
    setText(text) { textarea.value = text; errorAt = null; redraw(); },
    markError(pos) {
      errorAt = pos ? offsetOf(textarea.value, pos.line, pos.column) : null;
      redraw();
    },
  };
}
