// notifier's page: sign in with a token, the expiry banner, notifications, tokens, live updates.
//
// The token lives in sessionStorage (this tab only, never a URL or a cookie) and goes to the
// API in the Authorization header. The live stream is read with fetch(), because EventSource
// cannot send that header. Every value from the server is put in the page as text, never as
// HTML.
"use strict";

(() => {
  const STORAGE_KEY = "notifier.token";
  const API = "/api/v1";
  const state = {
    token: null,
    me: null,
    notifications: new Map(),
    tokens: [],
    stream: null,
    refreshTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  // --- helpers ------------------------------------------------------------------------------

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "className") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "never";
    return iso.slice(0, 16).replace("T", " ") + " UTC";
  }

  function announce(text) {
    $("live").textContent = text;
  }

  function grants(scope) {
    const scopes = (state.me && state.me.permissions) || [];
    return scopes.includes("*") || scopes.includes(scope);
  }

  class ApiFailure extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = (data && data.message) || `the server answered ${response.status}`;
      if (response.status === 401 && state.me) signOut(`Signed out: ${message}.`);
      throw new ApiFailure(response.status, message);
    }
    return data;
  }

  // --- sign in and out ----------------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    try {
      state.me = await api("GET", "/auth/whoami");
    } catch (error) {
      state.token = null;
      state.me = null;
      throw error;
    }
    sessionStorage.setItem(STORAGE_KEY, token);
    $("who-name").textContent = `Signed in as ${state.me.name || state.me.id}`;
    $("who").hidden = false;
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("notifications-section").hidden = !grants("notifications:read");
    $("tokens-section").hidden = !grants("tokens:read") && !grants("tokens:write");
    $("create").hidden = !grants("tokens:write");
    $("tokens").hidden = !grants("tokens:read");
    await Promise.all([loadNotifications(), loadTokens()]);
    if (grants("notifications:read")) listen();
    $("main").focus();
  }

  function signOut(reason) {
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.token = null;
    state.me = null;
    state.notifications.clear();
    state.tokens = [];
    sessionStorage.removeItem(STORAGE_KEY);
    $("who").hidden = true;
    $("app").hidden = true;
    $("banner").hidden = true;
    $("secret").hidden = true;
    $("secret-value").value = "";
    $("sign-in").hidden = false;
    $("token-input").value = "";
    $("sign-in-error").textContent = reason || "";
    announce(reason || "Signed out.");
    $("token-input").focus();
  }

  // --- notifications and the banner ---------------------------------------------------------

  async function loadNotifications() {
    if (!grants("notifications:read")) return;
    const found = await api("GET", "/notifications?active=true");
    state.notifications = new Map(found.map((n) => [n.id, n]));
    renderNotifications();
  }

  function activeNotifications() {
    return [...state.notifications.values()]
      .filter((n) => n.active)
      .sort((a, b) => (a.expires_at || "9999").localeCompare(b.expires_at || "9999"));
  }

  function renderNotifications() {
    const list = $("notifications");
    const active = activeNotifications();
    list.replaceChildren(
      ...active.map((n) =>
        element(
          "li",
          { className: n.level, "data-id": n.id },
          element(
            "div",
            { className: "text" },
            element("p", { className: "message" }, n.message),
            element(
              "p",
              { className: "meta" },
              `Last seen ${when(n.last_seen)} · seen ${n.occurrences} time${n.occurrences === 1 ? "" : "s"}`,
            ),
            n.hint ? element("p", { className: "meta" }, n.hint) : null,
          ),
          grants("notifications:write")
            ? element(
                "button",
                {
                  type: "button",
                  className: "secondary",
                  "aria-label": `Acknowledge: ${n.message}`,
                  onclick: () => acknowledge(n.id),
                },
                "Acknowledge",
              )
            : null,
        ),
      ),
    );
    $("notifications-empty").hidden = active.length > 0;
    renderBanner(active);
  }

  function renderBanner(active) {
    const urgent = active.filter((n) => n.kind === "expiring" || n.kind === "expired");
    const banner = $("banner");
    if (urgent.length === 0) {
      banner.hidden = true;
      return;
    }
    const first = urgent[0];
    const count = urgent.length;
    $("banner-count").textContent =
      `${count} token${count === 1 ? "" : "s"} ${count === 1 ? "needs" : "need"} attention.`;
    $("banner-urgent").textContent = `Most urgent: ${first.message.replace(/^Warn: /, "")}`;
    banner.classList.toggle("error", first.kind === "expired");
    banner.dataset.id = first.id;
    $("banner-ack").hidden = !grants("notifications:write");
    banner.hidden = false;
  }

  async function acknowledge(id) {
    try {
      const updated = await api("POST", `/notifications/${encodeURIComponent(id)}/ack`);
      state.notifications.set(updated.id, updated);
      renderNotifications();
      announce("Acknowledged.");
    } catch (error) {
      announce(`Could not acknowledge: ${error.message}`);
    }
  }

  // --- tokens -------------------------------------------------------------------------------

  async function loadTokens() {
    if (!grants("tokens:read")) return;
    state.tokens = await api("GET", "/tokens");
    renderTokens();
  }

  function scheduleTokenRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => loadTokens().catch(() => {}), 300);
  }

  function renderTokens() {
    const rows = state.tokens.map((t) => {
      const labels = Object.entries(t.labels || {}).map(([key, value]) =>
        element("span", { className: "label-chip" }, `${key}=${value}`),
      );
      const revocable = grants("tokens:write") && t.status !== "revoked" && t.status !== "expired";
      return element(
        "tr",
        { "data-id": t.id },
        element("td", { "data-label": "Name" }, t.name),
        element("td", { "data-label": "ID", className: "id" }, t.id),
        element(
          "td",
          { "data-label": "Status" },
          element("span", { className: `status status-${t.status}` }, t.status),
        ),
        element("td", { "data-label": "Days left" }, t.days_left === null ? "–" : t.days_left),
        element("td", { "data-label": "Expires" }, when(t.expires_at)),
        element("td", { "data-label": "Owner" }, t.owner || "–"),
        element("td", { "data-label": "Labels" }, ...(labels.length ? labels : ["–"])),
        element(
          "td",
          {},
          revocable
            ? element(
                "button",
                {
                  type: "button",
                  className: "danger",
                  "aria-label": `Revoke ${t.name} (${t.id})`,
                  onclick: () => revoke(t),
                },
                "Revoke",
              )
            : null,
        ),
      );
    });
    $("tokens-body").replaceChildren(...rows);
    $("tokens-empty").hidden = rows.length > 0;
  }

  async function revoke(token) {
    if (!window.confirm(`Revoke ${token.name} (${token.id})? It stops working at once.`)) return;
    try {
      await api("DELETE", `/tokens/${encodeURIComponent(token.id)}`);
      announce(`Revoked ${token.name}.`);
      await loadTokens();
    } catch (error) {
      announce(`Could not revoke: ${error.message}`);
    }
  }

  function parseLabels(text) {
    const labels = {};
    for (const part of text.split(",")) {
      const item = part.trim();
      if (!item) continue;
      const at = item.indexOf("=");
      if (at < 1) throw new ApiFailure(0, `labels: ${item} is not key=value`);
      labels[item.slice(0, at).trim()] = item.slice(at + 1).trim();
    }
    return labels;
  }

  async function create(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("create-error");
    error.textContent = "";
    try {
      // By id: a form's own .name property would hide the field called "name".
      const body = {
        name: $("create-name").value.trim(),
        permissions: [...form.querySelectorAll("input[name=permissions]:checked")].map(
          (box) => box.value,
        ),
        labels: parseLabels($("create-labels").value),
      };
      const ttl = $("create-ttl").value.trim();
      const owner = $("create-owner").value.trim();
      if (ttl) body.ttl = ttl;
      if (owner) body.owner = owner;
      const created = await api("POST", "/tokens", body);
      form.reset();
      $("create").open = false;
      showSecret(created);
      await loadTokens();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  function showSecret(created) {
    $("secret-name").textContent = `${created.name} (${created.id})`;
    $("secret-value").value = created.token;
    $("secret").hidden = false;
    $("secret-title").focus();
  }

  function hideSecret() {
    $("secret-value").value = "";
    $("secret").hidden = true;
    $("create").querySelector("summary").focus();
  }

  async function copySecret() {
    const field = $("secret-value");
    try {
      await navigator.clipboard.writeText(field.value);
    } catch {
      field.select();
      document.execCommand("copy");
    }
    announce("Secret copied to the clipboard.");
    $("secret-copy").textContent = "Copied";
    setTimeout(() => {
      $("secret-copy").textContent = "Copy";
    }, 2000);
  }

  // --- the live stream ----------------------------------------------------------------------

  function handleEvent(kind, data) {
    if (kind === "ready") {
      announce("Live: updates appear as they happen.");
      loadNotifications().catch(() => {});
      return;
    }
    if (kind === "notification") {
      const notification = JSON.parse(data);
      state.notifications.set(notification.id, notification);
      renderNotifications();
      scheduleTokenRefresh();
      return;
    }
    if (kind === "end") {
      signOut("Signed out: the token is no longer valid.");
    }
  }

  function parseBlock(block) {
    let kind = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const name = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (name === "event") kind = value;
      else if (name === "data") data.push(value);
      else if (name === "id") id = value;
    }
    return { kind, id, data: data.join("\n") };
  }

  async function listen() {
    const controller = new AbortController();
    state.stream = controller;
    let lastId = null;
    let delay = 1000;
    while (!controller.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(`${API}/notifications/stream`, {
          headers,
          cache: "no-store",
          signal: controller.signal,
        });
        if (response.status === 401) {
          signOut("Signed out: the token is no longer valid.");
          return;
        }
        if (!response.ok) throw new Error(`the stream answered ${response.status}`);
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = parseBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (event.id) lastId = event.id;
            if (event.kind !== "message" || event.data) handleEvent(event.kind, event.data);
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      if (controller.signal.aborted) return;
      announce("Live updates interrupted; reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }

  // --- wiring -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      $("sign-in-error").textContent = "";
      if (!token) {
        $("sign-in-error").textContent = "Paste a token first.";
        return;
      }
      try {
        await signIn(token);
        $("token-input").value = "";
      } catch (error) {
        $("sign-in-error").textContent = `Sign-in failed: ${error.message}.`;
      }
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("banner-ack").addEventListener("click", () => acknowledge($("banner").dataset.id));
    $("create-form").addEventListener("submit", create);
    $("secret-copy").addEventListener("click", copySecret);
    $("secret-done").addEventListener("click", hideSecret);

    const saved = sessionStorage.getItem(STORAGE_KEY);
    if (saved) {
      signIn(saved).catch(() => signOut("Your saved token was refused; sign in again."));
    } else {
      $("token-input").focus();
    }
  });
})();
