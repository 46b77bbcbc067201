// Formatting and small DOM helpers shared by the pages: numbers with units, sparklines, the
// outcome box of an action.

/** Creates an element: `el("a", {href: "#"}, "text", child)`. Text is never parsed as HTML. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** 1234 → "1.23 k", with `unit` after it. */
export function count(n, unit) {
  const u = unit ? " " + unit : "";
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  const abs = Math.abs(n);
  for (const [scale, suffix] of [[1e9, " G"], [1e6, " M"], [1e3, " k"]]) {
    if (abs >= scale) return (n / scale).toPrecision(3) + suffix + (unit || "");
  }
  return (Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + u;
}

/** Rows per second. */
export function rate(n) {
  return count(n, "rows/s");
}

/** Bytes in binary units. */
export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

/** Seconds as "3 d 4 h", "5 min 2 s". */
export function duration(s) {
  s = Math.floor(s);
  const parts = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  const out = [];
  for (const [size, name] of parts) {
    if (s >= size || (size === 1 && out.length === 0)) {
      out.push(Math.floor(s / size) + " " + name);
      s %= size;
    }
    if (out.length === 2) break;
  }
  return out.join(" ");
}

/** A millisecond timestamp as local time, or "–" for 0. */
export function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

/** A sparkline of `values` (an SVG polyline), `w`×`h` pixels. */
export function sparkline(values, w = 90, h = 22) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("aria-hidden", "true");
  if (values.length > 1) {
    const max = Math.max(...values, 1e-9);
    const step = w / (values.length - 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

/** The CSS class of a rule status. */
export function statusClass(status) {
  if (status === "running") return "running";
  if (status.includes("error")) return "error";
  return "stopped";
}

/**
 * The outcome box of a page's actions: `say(ok, text)` shows a message; `run(action)` shows
 * "working…", then the server's answer or its error as it is, reloads the page's data with
 * `reload`, and resolves to true when the action succeeded.
 */
export function outcome(box, reload) {
  function say(ok, text) {
    box.replaceChildren(el("div", { class: "message " + (ok ? "good" : "bad") }, text));
  }
  async function run(action) {
    try {
      say(true, "working…");
      say(true, await action());
      await reload();
      return true;
    } catch (e) {
      say(false, e.message);
      return false;
    }
  }
  return { say, run };
}
