// The REST client of the console: same-origin requests with the token, when the server asks
// for one, kept in sessionStorage (this tab only). Server errors are shown as they come.

const TOKEN_KEY = "quiver-token";

/** An error the server answered, with its status and its message as it is. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra) {
  const h = new Headers(extra || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) h.set("Authorization", "Bearer " + token);
  return h;
}

/** Asks for a token and resolves once one is stored. */
let loginWaiting = null;
function login(reason) {
  if (loginWaiting) return loginWaiting;
  const dialog = document.getElementById("login");
  const input = document.getElementById("login-token");
  document.getElementById("login-error").textContent = reason || "";
  loginWaiting = new Promise((resolve) => {
    const form = document.getElementById("login-form");
    form.onsubmit = (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      dialog.close();
      loginWaiting = null;
      resolve();
    };
  });
  dialog.showModal();
  input.focus();
  return loginWaiting;
}

async function message(response) {
  const text = await response.text();
  try {
    const json = JSON.parse(text);
    if (json && typeof json.message === "string") return json.message;
  } catch (_) { /* not JSON: the text itself */ }
  return text || response.statusText;
}

/**
 * One request. `body`: an object (sent as JSON), a string or a Blob (sent as is). Resolves to
 * the parsed JSON or the text; rejects with ApiError carrying the server's message.
 */
export async function api(method, path, body, type) {
  for (;;) {
    const init = { method, headers: headers() };
    if (body !== undefined) {
      if (typeof body === "string" || body instanceof Blob) {
        init.body = body;
        init.headers.set("Content-Type", type || "text/plain");
      } else {
        init.body = JSON.stringify(body);
        init.headers.set("Content-Type", "application/json");
      }
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      await login(await message(response));
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await message(response));
    const text = await response.text();
    const ct = response.headers.get("Content-Type") || "";
    return ct.includes("json") && text ? JSON.parse(text) : text;
  }
}

/**
 * Reads server-sent events from `path` with fetch (so the token goes in a header), calling
 * `onEvent(name, data)` per event until `signal` aborts or the server ends the stream.
 * `onState(text)` hears about connection changes. Reconnects after a drop.
 */
export async function events(path, onEvent, signal, onState) {
  const state = onState || (() => {});
  while (!signal.aborted) {
    try {
      const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
      if (response.status === 401) {
        await login(await message(response));
        continue;
      }
      if (!response.ok) throw new ApiError(response.status, await message(response));
      state("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const raw = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of raw.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) {
            if (onEvent(name, data.join("\n")) === false) return;
          }
        }
      }
      if (onEvent("end", "") === false) return;
    } catch (e) {
      if (signal.aborted) return;
      state("reconnecting: " + e.message);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
