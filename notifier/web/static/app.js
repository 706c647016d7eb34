// notifier's page: sign in with a token; the expiry banner, counts and a chart of expiries;
// tokens, notifications, every watched credential and the audit trail, each paged by the
// server; live updates.
//
// The token lives in sessionStorage (this tab only, never a URL or a cookie) and goes to the
// API in the Authorization header. The live stream is read with fetch(), because EventSource
// cannot send that header. Every value from the server is put in the page as text, never as
// HTML.
//
// Lists are never loaded whole: each shows one page, and a Pager keeps the way back as a stack
// of the page addresses it came through (the server's Link rel="next" gives the way forward).
"use strict";

(() => {
  const STORAGE_KEY = "notifier.token";
  const API = "/api/v1";
  const TOKEN_PAGE = 50;
  const NOTIFICATION_PAGE = 10;
  const AUDIT_PAGE = 50;
  const CREDENTIAL_PAGE = 50;
  const BANNER_PAGE = 100; // the most urgent active notifications, for the banner
  const SEARCH_DELAY = 300; // ms of quiet typing before a search is sent
  const SUMMARY_GAP = 3000; // ms: live updates refresh the counts at most this often
  const HOUR = 3600 * 1000;
  const DAY = 24 * HOUR;
  const STATUSES = ["active", "expiring", "expired", "revoked", "superseded"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const SORT_NAMES = { expires_at: "expiry", name: "name", created_at: "creation" };

  const state = {
    token: null,
    me: null,
    stream: null,
    banner: new Map(), // id -> the active notifications of the banner's page
    bannerMore: false,
    bannerSeq: 0,
    summary: null,
    clockOffset: 0, // server time minus this browser's, from the summary
    filters: emptyFilters(),
    applied: "",
    timers: {},
    ticker: null,
    summaryLoadedAt: 0,
    summarySeq: 0,
  };

  const $ = (id) => document.getElementById(id);
  const numbers = new Intl.NumberFormat("en-US");
  let SVG_NS = null; // taken from the page's own <svg>, so no address is written here

  function emptyFilters() {
    return { q: "", owner: "", labels: [], source: "", statuses: [], day: null, sort: "expires_at" };
  }

  // --- helpers ------------------------------------------------------------------------------

  function build(node, attributes, children) {
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.setAttribute("class", value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function element(tag, attributes = {}, ...children) {
    return build(document.createElement(tag), attributes, children);
  }

  function svg(tag, attributes = {}, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attributes, children);
  }

  function when(iso) {
    if (!iso) return "never";
    return iso.slice(0, 16).replace("T", " ") + " UTC";
  }

  function plural(count, word) {
    return `${numbers.format(count)} ${word}${count === 1 ? "" : "s"}`;
  }

  function now() {
    return Date.now() + state.clockOffset;
  }

  function announce(text) {
    $("live").textContent = text;
  }

  function grants(scope) {
    const scopes = (state.me && state.me.permissions) || [];
    return scopes.includes("*") || scopes.includes(scope);
  }

  function later(name, delay, action) {
    clearTimeout(state.timers[name]);
    state.timers[name] = setTimeout(action, delay);
  }

  class ApiFailure extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(method, path, { body, signal } = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = (data && data.message) || `the server answered ${response.status}`;
      if (response.status === 401 && state.me) signOut(`Signed out: ${message}.`);
      throw new ApiFailure(response.status, message, data && data.error);
    }
    return { data, response };
  }

  async function api(method, path, body) {
    return (await request(method, path, { body })).data;
  }

  // The next page's address from an RFC 8288 Link header, as a path under the API; only this
  // origin's API is followed.
  function nextLink(header) {
    if (!header) return null;
    for (const match of header.matchAll(/<([^>]*)>([^<]*)/g)) {
      if (!/;\s*rel="?([^"]*\s)?next(\s[^"]*)?"?(\s*[;,]|\s*$)/.test(match[2])) continue;
      const url = new URL(match[1], window.location.href);
      if (url.origin !== window.location.origin || !url.pathname.startsWith(API + "/")) return null;
      return url.pathname.slice(API.length) + url.search;
    }
    return null;
  }

  // --- paging -------------------------------------------------------------------------------

  // One list shown a page at a time. `first()` is the first page's path; the way back is the
  // stack of paths already visited, so Previous needs no cursor from the server.
  class Pager {
    constructor(name, { first, render, busy }) {
      this.name = name;
      this.first = first;
      this.render = render;
      this.busy = busy || (() => {});
      this.nav = $(`${name}-pager`);
      this.error = $(`${name}-error`);
      this.back = [];
      this.current = null;
      this.next = null;
      this.items = [];
      this.seq = 0;
      this.controller = null;
      this.nav.querySelector("[data-page=prev]").addEventListener("click", () => this.previous());
      this.nav.querySelector("[data-page=next]").addEventListener("click", () => this.forward());
    }

    start() {
      this.back = [];
      this.current = this.first();
      return this.load();
    }

    refresh() {
      return this.current === null ? this.start() : this.load();
    }

    forward() {
      if (!this.next) return Promise.resolve();
      this.back.push(this.current);
      this.current = this.next;
      return this.load();
    }

    previous() {
      if (this.back.length === 0) return Promise.resolve();
      this.current = this.back.pop();
      return this.load();
    }

    clear() {
      if (this.controller) this.controller.abort();
      this.seq += 1;
      this.back = [];
      this.current = null;
      this.next = null;
      this.items = [];
      this.error.textContent = "";
      this.nav.hidden = true;
      this.busy(false);
    }

    async load() {
      const seq = ++this.seq;
      if (this.controller) this.controller.abort();
      const controller = new AbortController();
      this.controller = controller;
      this.busy(true);
      try {
        const { data, response } = await request("GET", this.current, { signal: controller.signal });
        if (seq !== this.seq) return;
        this.items = data;
        this.next = nextLink(response.headers.get("Link"));
        this.error.textContent = "";
        this.render(this.items);
        this.controls();
      } catch (failure) {
        if (seq !== this.seq || controller.signal.aborted) return;
        if (failure.code === "invalid_cursor" && this.back.length > 0) {
          // The list changed shape under a kept cursor: start again from the top.
          this.error.textContent = "That page is no longer available; showing the first page.";
          await this.start();
          return;
        }
        this.error.textContent = `Could not load the ${this.name}: ${failure.message}.`;
      } finally {
        if (seq === this.seq) this.busy(false);
      }
    }

    controls() {
      const page = this.back.length + 1;
      const size = this.items.length;
      const [prev, next] = this.nav.querySelectorAll("button");
      prev.disabled = this.back.length === 0;
      next.disabled = !this.next;
      this.nav.querySelector(".pager-status").textContent =
        size === 0 ? `Page ${numbers.format(page)}: empty` : `Page ${numbers.format(page)}`;
      this.nav.hidden = page === 1 && !this.next;
    }
  }

  let tokensPager = null;
  let notificationsPager = null;
  let auditPager = null;
  let credentialsPager = null;

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
    const reads = grants("tokens:read");
    $("notifications-section").hidden = !grants("notifications:read");
    $("tokens-section").hidden = !reads && !grants("tokens:write");
    $("summary-section").hidden = !reads;
    $("audit-section").hidden = !reads;
    $("credentials-section").hidden = !reads;
    $("create").hidden = !grants("tokens:write");
    $("tokens").hidden = !reads;
    $("filters").hidden = !reads;
    state.applied = filterKey(state.filters);
    renderSort();
    // The counts may take longest on a big table: the rows do not wait for them.
    if (reads) loadSummary();
    await Promise.all([
      reads ? tokensPager.start() : null,
      grants("notifications:read") ? notificationsPager.start() : null,
      loadBanner(),
    ]);
    if (grants("notifications:read")) listen();
    // Urgency moves with time even when nothing else does: a row crossing into "under a
    // day" is drawn again (the others are kept: their version is the same).
    state.ticker = setInterval(() => {
      if (tokensPager.current !== null) renderTokens(tokensPager.items);
    }, 60 * 1000);
    $("main").focus();
  }

  function signOut(reason) {
    if (state.stream) state.stream.abort();
    for (const timer of Object.values(state.timers)) clearTimeout(timer);
    clearInterval(state.ticker);
    state.stream = null;
    state.token = null;
    state.me = null;
    state.banner.clear();
    state.summary = null;
    state.summarySeq += 1;
    state.bannerSeq += 1;
    state.filters = emptyFilters();
    state.applied = "";
    for (const pager of [tokensPager, notificationsPager, auditPager, credentialsPager]) pager.clear();
    sessionStorage.removeItem(STORAGE_KEY);
    $("filters").reset();
    $("filter-day").hidden = true;
    $("tokens-body").replaceChildren();
    $("notifications").replaceChildren();
    $("audit-body").replaceChildren();
    $("counts").replaceChildren();
    $("chart-svg").replaceChildren();
    $("audit").open = false;
    $("credentials").open = false;
    $("credentials-filters").reset();
    $("credentials-body").replaceChildren();
    if ($("self-revoke").open) $("self-revoke").close("cancel");
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

  // --- the banner ---------------------------------------------------------------------------

  async function loadBanner() {
    if (!grants("notifications:read")) return;
    const seq = ++state.bannerSeq;
    try {
      const { data, response } = await request(
        "GET",
        `/notifications?active=true&limit=${BANNER_PAGE}`,
      );
      if (seq !== state.bannerSeq) return; // signed out, or a newer one asked for
      state.banner = new Map(data.map((n) => [n.id, n]));
      state.bannerMore = nextLink(response.headers.get("Link")) !== null;
      renderBanner();
    } catch (failure) {
      if (seq !== state.bannerSeq) return;
      $("notifications-error").textContent = `Could not load notifications: ${failure.message}.`;
    }
  }

  function byExpiry(a, b) {
    return (a.expires_at || "9999").localeCompare(b.expires_at || "9999");
  }

  function renderBanner() {
    const urgent = [...state.banner.values()]
      .filter((n) => n.active && (n.kind === "expiring" || n.kind === "expired"))
      .sort(byExpiry);
    const banner = $("banner");
    if (urgent.length === 0) {
      banner.hidden = true;
      return;
    }
    const first = urgent[0];
    const count = urgent.length;
    const more = state.bannerMore ? " or more" : "";
    $("banner-count").textContent =
      `${count}${more} token${count === 1 && !more ? "" : "s"} ` +
      `${count === 1 && !more ? "needs" : "need"} attention.`;
    $("banner-urgent").textContent = `Most urgent: ${first.message.replace(/^Warn: /, "")}`;
    banner.classList.toggle("error", first.kind === "expired");
    banner.dataset.id = first.id;
    $("banner-ack").hidden = !grants("notifications:write");
    banner.hidden = false;
  }

  // --- notifications ------------------------------------------------------------------------

  function renderNotifications(found) {
    const active = found.filter((n) => n.active);
    $("notifications").replaceChildren(
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
  }

  // A notification changed (acknowledged here, or from the stream): the banner and the visible
  // page take it in place; one that is new to the visible page reloads that page only.
  function takeNotification(notification) {
    if (notification.active) state.banner.set(notification.id, notification);
    else state.banner.delete(notification.id);
    renderBanner();
    const items = notificationsPager.items;
    const at = items.findIndex((n) => n.id === notification.id);
    if (at >= 0) {
      items[at] = notification;
      renderNotifications(items);
    } else if (notification.active && notificationsPager.current !== null) {
      later("notifications", 300, () => notificationsPager.refresh());
    }
  }

  async function acknowledge(id) {
    try {
      const updated = await api("POST", `/notifications/${encodeURIComponent(id)}/ack`);
      takeNotification(updated);
      announce("Acknowledged.");
    } catch (error) {
      announce(`Could not acknowledge: ${error.message}`);
    }
  }

  // --- the summary: counts and the chart ----------------------------------------------------

  function narrowing(params, filters) {
    if (filters.q.length >= 3) params.set("q", filters.q);
    if (filters.owner) params.set("owner", filters.owner);
    for (const [key, value] of filters.labels) params.append("label", `${key}=${value}`);
    if (filters.source) params.set("source", filters.source);
    return params;
  }

  function narrowed(filters) {
    return filters.q.length >= 3 || filters.owner || filters.labels.length || filters.source;
  }

  async function loadSummary() {
    if (!grants("tokens:read")) return;
    const seq = ++state.summarySeq;
    state.summaryLoadedAt = Date.now();
    const filters = state.filters;
    const query = narrowing(new URLSearchParams(), filters).toString();
    try {
      const summary = await api("GET", `/tokens/summary${query ? "?" + query : ""}`);
      if (seq !== state.summarySeq) return;
      state.summary = summary;
      state.clockOffset = Date.parse(summary.now) - Date.now();
      $("summary-error").textContent = "";
      const scope = $("summary-scope");
      scope.hidden = !narrowed(filters);
      scope.textContent = "Counts and chart for the tokens matching the search, owner, labels and source below.";
      renderCounts();
      renderChart();
      // Urgency is reckoned on the server's clock, now known: rows drawn before take it.
      if (tokensPager.current !== null) renderTokens(tokensPager.items);
    } catch (failure) {
      if (seq !== state.summarySeq) return;
      $("summary-error").textContent = `Could not load the counts: ${failure.message}.`;
    }
  }

  // Live updates refresh the counts, but not more often than SUMMARY_GAP.
  function scheduleSummary() {
    const wait = Math.max(300, state.summaryLoadedAt + SUMMARY_GAP - Date.now());
    later("summary", wait, () => loadSummary());
  }

  function onlyStatus() {
    const chosen = state.filters.statuses;
    return chosen.length === 1 && !state.filters.day ? chosen[0] : null;
  }

  function renderCounts() {
    const summary = state.summary;
    const selected = onlyStatus();
    const items = STATUSES.map((status) => {
      const count = summary.by_status[status] || 0;
      return element(
        "li",
        {},
        element(
          "button",
          {
            type: "button",
            className: `count status-${status}`,
            "data-status": status,
            "aria-pressed": selected === status ? "true" : "false",
            title: `List the ${status} tokens`,
            onclick: () => showStatus(status),
          },
          // The space makes the button's name "3 expiring"; a flex box does not draw it.
          element("span", { className: "count-number" }, numbers.format(count)),
          " ",
          element("span", { className: "count-name" }, status),
        ),
      );
    });
    items.push(
      element(
        "li",
        { className: "total" },
        element("span", { className: "count-number" }, numbers.format(summary.total)),
        " ",
        element("span", { className: "count-name" }, "total"),
      ),
    );
    $("counts").replaceChildren(...items);
  }

  function dayLabel(date) {
    return `${MONTHS[Number(date.slice(5, 7)) - 1]} ${Number(date.slice(8, 10))}`;
  }

  function renderChart() {
    const days = state.summary.days || [];
    const root = $("chart-svg");
    $("chart").hidden = days.length === 0;
    if (days.length === 0) return;
    const today = state.summary.now.slice(0, 10);
    const todayAt = Math.max(0, days.findIndex((d) => d.date === today));
    const left = 40; // room for the scale
    const width = 8;
    const top = 14;
    const height = 128;
    const base = top + height;
    const most = Math.max(1, ...days.map((d) => d.expiring));
    const chosen = state.filters.day && state.filters.day.date;
    const parts = [
      svg("line", { className: "grid", x1: left, x2: left + days.length * width, y1: top, y2: top }),
      svg("text", { className: "scale", x: left - 4, y: top + 4, "text-anchor": "end" }, numbers.format(most)),
      svg("text", { className: "scale", x: left - 4, y: base, "text-anchor": "end" }, "0"),
    ];
    days.forEach((day, index) => {
      const x = left + index * width;
      const offset = index - todayAt;
      if (offset % 30 === 0) {
        parts.push(
          svg("line", { className: offset === 0 ? "today" : "tick", x1: x + width / 2, x2: x + width / 2, y1: top, y2: base + 4 }),
          svg(
            "text",
            {
              className: "axis",
              x: x + width / 2,
              y: base + 18,
              "text-anchor": index === 0 ? "start" : index === days.length - 1 ? "end" : "middle",
            },
            offset === 0 ? "today" : dayLabel(day.date),
          ),
        );
      }
      const count = day.expiring;
      if (count === 0) return;
      const past = offset < 0;
      const kind = past ? "past" : offset < 7 ? "soon" : "later";
      const label = `${day.date}: ${plural(count, "token")} ${past ? "expired" : offset === 0 ? "expiring today" : "expiring"}`;
      const tall = Math.max(2, Math.round((count / most) * height));
      parts.push(
        svg(
          "g",
          {
            className: `day ${kind}`,
            "data-date": day.date,
            "data-count": count,
            role: "button",
            tabindex: "-1",
            "aria-label": label,
            "aria-pressed": chosen === day.date ? "true" : "false",
          },
          svg("title", {}, label),
          svg("rect", { className: "hit", x, y: top, width, height }),
          svg("rect", { className: "bar", x: x + 1, y: base - tall, width: width - 2, height: tall }),
        ),
      );
    });
    parts.push(svg("line", { className: "axis-line", x1: left, x2: left + days.length * width, y1: base, y2: base }));
    root.setAttribute("viewBox", `0 0 ${left + days.length * width + 8} ${base + 24}`);
    root.replaceChildren(...parts);
    // One bar is in the tab order (the chosen day, else the first from today on); the arrow
    // keys move between bars, so the chart is one stop for Tab, not 121.
    const bars = [...root.querySelectorAll("g.day")];
    const rover =
      bars.find((bar) => bar.dataset.date === chosen) ||
      bars.find((bar) => bar.dataset.date >= today) ||
      bars[0];
    if (rover) rover.setAttribute("tabindex", "0");
  }

  function chooseDay(date) {
    if (state.filters.day && state.filters.day.date === date) {
      clearDay();
      return;
    }
    const today = state.summary.now.slice(0, 10);
    const statuses =
      date < today ? ["expired"] : date === today ? ["active", "expiring", "expired"] : ["active", "expiring"];
    setStatuses(statuses);
    state.filters.day = { date, statuses };
    applyFilters();
    reveal($("filters"));
  }

  // Scroll *target* to just below the pinned header and banner (the scroll padding).
  function reveal(target) {
    target.scrollIntoView({ block: "start" });
  }

  function clearDay() {
    state.filters.day = null;
    setStatuses([]);
    applyFilters();
  }

  function showStatus(status) {
    state.filters.day = null;
    setStatuses(onlyStatus() === status ? [] : [status]);
    applyFilters();
  }

  function setStatuses(statuses) {
    for (const box of $("filter-status").querySelectorAll("input")) {
      box.checked = statuses.includes(box.value);
    }
  }

  // --- filters, search and sort -------------------------------------------------------------

  function readFilters() {
    const filters = {
      q: $("filter-q").value.trim(),
      owner: $("filter-owner").value.trim(),
      labels: Object.entries(parseLabels($("filter-label").value)),
      source: $("filter-source").value,
      statuses: [...$("filter-status").querySelectorAll("input:checked")].map((box) => box.value),
      day: state.filters.day,
      sort: state.filters.sort,
    };
    // Changing the statuses by hand keeps the day, but no longer as the chart's bar chose it.
    if (filters.day && filters.statuses.join() !== filters.day.statuses.join()) {
      filters.day = { ...filters.day, statuses: filters.statuses };
    }
    return filters;
  }

  function tokenPath() {
    const filters = state.filters;
    const params = new URLSearchParams({ limit: String(TOKEN_PAGE) });
    if (filters.sort !== "expires_at") params.set("sort", filters.sort);
    for (const status of filters.statuses) params.append("status", status);
    narrowing(params, filters);
    if (filters.day) {
      const start = Date.parse(`${filters.day.date}T00:00:00Z`);
      params.set("expires_after", new Date(start).toISOString().replace(".000Z", "Z"));
      params.set("expires_before", new Date(start + DAY).toISOString().replace(".000Z", "Z"));
    }
    return `/tokens?${params}`;
  }

  // Take the form's values; reload the tokens (and the counts, when they narrow) if they changed.
  function applyFilters() {
    clearTimeout(state.timers.search);
    let filters;
    try {
      filters = readFilters();
    } catch (failure) {
      $("tokens-error").textContent = failure.message;
      return;
    }
    if (!$("tokens-error").textContent.startsWith("Could not load")) $("tokens-error").textContent = "";
    const short = filters.q.length > 0 && filters.q.length < 3;
    $("filter-q-hint").classList.toggle("warn", short);
    const key = filterKey(filters);
    if (key === state.applied) return;
    const countsChange = countsKey(filters) !== countsKey(state.filters);
    state.filters = filters;
    state.applied = key;
    renderDay();
    renderSort();
    if (state.summary) renderCounts();
    if (state.summary) renderChart();
    if (countsChange) loadSummary();
    tokensPager.start();
  }

  function filterKey(filters) {
    return JSON.stringify({ ...filters, q: filters.q.length >= 3 ? filters.q : "" });
  }

  function countsKey(filters) {
    return narrowing(new URLSearchParams(), filters).toString();
  }

  function renderDay() {
    const day = state.filters.day;
    $("filter-day").hidden = !day;
    if (!day) return;
    $("filter-day-text").textContent = `Expiring on ${day.date} (UTC)`;
  }

  function sortBy(column) {
    const current = state.filters.sort;
    const descending = current === column;
    state.filters.sort = descending ? `-${column}` : column;
    state.applied = "";
    applyFilters();
  }

  function renderSort() {
    const sort = state.filters.sort;
    const column = sort.replace(/^-/, "");
    const direction = sort.startsWith("-") ? "descending" : "ascending";
    for (const th of document.querySelectorAll("#tokens th[data-sort]")) {
      if (th.dataset.sort === column) th.setAttribute("aria-sort", direction);
      else th.removeAttribute("aria-sort");
    }
    $("tokens-caption").textContent = `Tokens by ${SORT_NAMES[column]}, ${direction}`;
  }

  function clearFilters() {
    $("filters").reset();
    state.filters.day = null;
    applyFilters();
  }

  // --- tokens -------------------------------------------------------------------------------

  function urgency(token) {
    if (!token.expires_at || (token.status !== "active" && token.status !== "expiring")) return null;
    const left = Date.parse(token.expires_at) - now();
    if (left < DAY) return { level: "day", text: "under a day" };
    if (left < 7 * DAY) return { level: "week", text: "under a week" };
    return { level: "later", text: "later" };
  }

  function tokenRow(t) {
    const labels = Object.entries(t.labels || {}).map(([key, value]) =>
      element("span", { className: "label-chip" }, `${key}=${value}`),
    );
    const revocable = grants("tokens:write") && t.status !== "revoked" && t.status !== "expired";
    const mine = state.me && t.id === state.me.id;
    const soon = urgency(t);
    return element(
      "tr",
      { "data-id": t.id, className: soon ? `urgent-${soon.level}` : null },
      element(
        "td",
        { "data-label": "Name" },
        t.name,
        mine ? element("span", { className: "mine" }, "this session") : null,
      ),
      element("td", { "data-label": "ID", className: "id" }, t.id),
      element(
        "td",
        { "data-label": "Status" },
        element("span", { className: `status status-${t.status}` }, t.status),
      ),
      element(
        "td",
        { "data-label": "Days left" },
        element("span", { className: "days" }, t.days_left === null ? "–" : t.days_left),
        soon ? element("span", { className: `urgency urgency-${soon.level}` }, soon.text) : null,
      ),
      element("td", { "data-label": "Expires" }, when(t.expires_at)),
      element("td", { "data-label": "Created" }, when(t.created_at)),
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
                "aria-label": mine
                  ? `Revoke ${t.name} (${t.id}), the token this page is signed in with`
                  : `Revoke ${t.name} (${t.id})`,
                onclick: () => revoke(t),
              },
              "Revoke",
            )
          : null,
      ),
    );
  }

  // Rows whose token did not change are kept as they are, so a live refresh of the page does
  // not take the focus from a button the user is on.
  function renderTokens(tokens) {
    const kept = new Map([...$("tokens-body").children].map((row) => [row.dataset.id, row]));
    const rows = tokens.map((t) => {
      const version = JSON.stringify([t, state.me && state.me.id, urgency(t)]);
      const old = kept.get(t.id);
      if (old && drawn.get(old) === version) return old;
      const row = tokenRow(t);
      drawn.set(row, version);
      return row;
    });
    const body = $("tokens-body");
    rows.forEach((row, index) => {
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    });
    while (body.children.length > rows.length) body.lastElementChild.remove();
    $("tokens-empty").hidden = rows.length > 0;
    $("tokens-empty").textContent =
      tokensPager.back.length > 0 ? "No more tokens." : "No tokens match.";
  }

  const drawn = new WeakMap(); // a token row -> what it was drawn from

  function tokensBusy(busy) {
    $("tokens-loading").hidden = !busy;
    $("tokens").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function scheduleTokenRefresh() {
    if (!grants("tokens:read")) return;
    later("tokens", 300, () => tokensPager.refresh());
    scheduleSummary();
  }

  function askSelfRevoke(token) {
    const dialog = $("self-revoke");
    $("self-revoke-text").textContent = `${token.name} (${token.id}) is the token this page is signed in with.`;
    return new Promise((resolve) => {
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "revoke"), { once: true });
      dialog.showModal();
      $("self-revoke-cancel").focus();
    });
  }

  async function revoke(token) {
    const mine = state.me && token.id === state.me.id;
    const opener = document.activeElement;
    if (mine) {
      const sure = await askSelfRevoke(token);
      if (!sure) {
        if (opener && opener.isConnected) opener.focus();
        return;
      }
    } else if (!window.confirm(`Revoke ${token.name} (${token.id})? It stops working at once.`)) {
      return;
    }
    try {
      await api("DELETE", `/tokens/${encodeURIComponent(token.id)}`);
    } catch (error) {
      announce(`Could not revoke: ${error.message}`);
      return;
    }
    if (mine) {
      signOut("Signed out: you revoked the token this page was signed in with.");
      return;
    }
    announce(`Revoked ${token.name}.`);
    await Promise.all([tokensPager.refresh(), loadSummary(), auditAfterChange()]);
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
      await Promise.all([tokensPager.refresh(), loadSummary(), auditAfterChange()]);
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

  // --- the audit trail ----------------------------------------------------------------------

  function renderAudit(events) {
    $("audit-body").replaceChildren(
      ...events.map((e) =>
        element(
          "tr",
          { "data-id": e.id },
          element("td", { "data-label": "When" }, when(e.at)),
          element("td", { "data-label": "Actor" }, e.actor),
          element("td", { "data-label": "Action" }, e.action),
          element(
            "td",
            { "data-label": "Token", className: "id" },
            e.token_name ? `${e.token_name} (${e.token_id})` : e.token_id || "–",
          ),
          element(
            "td",
            { "data-label": "Details", className: "details" },
            e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : "–",
          ),
        ),
      ),
    );
    $("audit-empty").hidden = events.length > 0;
  }

  function auditAfterChange() {
    // Only the first page changes when something happens; a later page stays where it is.
    if ($("audit").open && auditPager.back.length === 0) return auditPager.start();
    return null;
  }

  // --- every watched credential -------------------------------------------------------------

  function credentialsPath() {
    const query = new URLSearchParams({ limit: String(CREDENTIAL_PAGE) });
    const kind = $("credentials-kind").value;
    const q = $("credentials-q").value.trim();
    if (kind) query.append("kind", kind);
    if (q) query.append("q", q);
    return `/credentials?${query}`;
  }

  function renderCredentials(credentials) {
    $("credentials-body").replaceChildren(
      ...credentials.map((c) => {
        const soon = urgency(c);
        return element(
          "tr",
          { "data-id": `${c.source}/${c.id}`, className: soon ? `urgent-${soon.level}` : null },
          element("td", { "data-label": "Name" }, c.name),
          element("td", { "data-label": "Kind" }, c.kind),
          element("td", { "data-label": "Source" }, c.source),
          // A certificate's id is its 64-digit fingerprint: its start, as the warn line has it.
          element(
            "td",
            { "data-label": "ID", className: "id", title: c.id.length > 20 ? c.id : null },
            c.id.length > 20 ? `${c.id.slice(0, 16)}…` : c.id,
          ),
          element(
            "td",
            { "data-label": "Days left" },
            element("span", { className: "days" }, c.days_left === null ? "–" : c.days_left),
            soon ? element("span", { className: `urgency urgency-${soon.level}` }, soon.text) : null,
          ),
          element("td", { "data-label": "Expires" }, when(c.expires_at)),
          element(
            "td",
            { "data-label": "Status" },
            element("span", { className: `status status-${c.status}` }, c.status),
          ),
          element("td", { "data-label": "Last read" }, c.seen_at ? when(c.seen_at) : "live"),
        );
      }),
    );
    $("credentials-empty").hidden = credentials.length > 0;
    $("credentials-empty").textContent =
      credentialsPager.back.length > 0 ? "No more credentials." : "No watched credentials match.";
  }

  function wireCredentials() {
    const restart = () => {
      if ($("credentials").open && state.me) credentialsPager.start();
    };
    $("credentials").addEventListener("toggle", () => {
      if ($("credentials").open && credentialsPager.current === null && state.me) restart();
    });
    $("credentials-kind").addEventListener("change", restart);
    $("credentials-q").addEventListener("input", () => later("credentials", 300, restart));
    $("credentials-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      restart();
    });
  }

  // --- the live stream ----------------------------------------------------------------------

  function handleEvent(kind, data, reconnected) {
    if (kind === "ready") {
      announce("Live: updates appear as they happen.");
      // What changed while the stream was not watching: the banner and the visible pages.
      loadBanner();
      notificationsPager.refresh();
      if (reconnected) scheduleTokenRefresh();
      return;
    }
    if (kind === "notification") {
      takeNotification(JSON.parse(data));
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
    let connections = 0;
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
        connections += 1;
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
            if (event.kind !== "message" || event.data) {
              handleEvent(event.kind, event.data, connections > 1);
            }
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

  function wireFilters() {
    const form = $("filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      applyFilters();
    });
    for (const id of ["filter-q", "filter-owner", "filter-label"]) {
      $(id).addEventListener("input", () => later("search", SEARCH_DELAY, applyFilters));
      $(id).addEventListener("change", applyFilters);
    }
    $("filter-source").addEventListener("change", applyFilters);
    $("filter-status").addEventListener("change", applyFilters);
    $("filter-day-clear").addEventListener("click", clearDay);
    $("filters-clear").addEventListener("click", clearFilters);
    for (const th of document.querySelectorAll("#tokens th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.sort));
    }
    const chart = $("chart-svg");
    chart.addEventListener("click", (event) => {
      const bar = event.target.closest("g.day");
      if (bar) chooseDay(bar.dataset.date);
    });
    chart.addEventListener("keydown", (event) => {
      const bar = event.target.closest("g.day");
      if (!bar) return;
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        chooseDay(bar.dataset.date);
      } else if (["ArrowRight", "ArrowLeft", "Home", "End"].includes(event.key)) {
        event.preventDefault();
        const bars = [...chart.querySelectorAll("g.day")];
        const moves = { ArrowRight: bars.indexOf(bar) + 1, ArrowLeft: bars.indexOf(bar) - 1 };
        const at = event.key === "Home" ? 0 : event.key === "End" ? bars.length - 1 : moves[event.key];
        if (!bars[at]) return;
        bar.setAttribute("tabindex", "-1");
        bars[at].setAttribute("tabindex", "0");
        bars[at].focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    SVG_NS = $("chart-svg").namespaceURI;
    tokensPager = new Pager("tokens", { first: tokenPath, render: renderTokens, busy: tokensBusy });
    notificationsPager = new Pager("notifications", {
      first: () => `/notifications?active=true&limit=${NOTIFICATION_PAGE}`,
      render: renderNotifications,
    });
    auditPager = new Pager("audit", { first: () => `/audit?limit=${AUDIT_PAGE}`, render: renderAudit });
    credentialsPager = new Pager("credentials", { first: credentialsPath, render: renderCredentials });

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
    $("self-revoke-cancel").addEventListener("click", () => $("self-revoke").close("cancel"));
    $("self-revoke-confirm").addEventListener("click", () => $("self-revoke").close("revoke"));
    $("audit").addEventListener("toggle", () => {
      if ($("audit").open && auditPager.current === null && state.me) auditPager.start();
    });
    wireFilters();
    wireCredentials();
    // What the keyboard focuses, or a link scrolls to, lands below the pinned header and
    // banner, however tall they are. On a phone only the banner stays (the header scrolls
    // away: the sticky block's top is minus the header's height), so that the two do not
    // cover half the screen.
    const phone = window.matchMedia("(max-width: 40rem)");
    const pin = () => {
      const root = document.documentElement.style;
      const header = document.querySelector("header.top").offsetHeight;
      root.setProperty("--header-height", `${header}px`);
      const covered = $("pinned").offsetHeight - (phone.matches ? header : 0);
      root.scrollPaddingTop = `${covered + 8}px`;
    };
    new ResizeObserver(pin).observe($("pinned"));
    phone.addEventListener("change", pin);

    const saved = sessionStorage.getItem(STORAGE_KEY);
    if (saved) {
      signIn(saved).catch(() => signOut("Your saved token was refused; sign in again."));
    } else {
      $("token-input").focus();
    }
  });
})();
