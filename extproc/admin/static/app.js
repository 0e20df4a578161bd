// The gateway's decisions, live. Plain JS, no build step, nothing loaded from elsewhere.
// Everything shown comes from the audit API and is untrusted text (tool arguments,
// judge explanations): it is only ever set as textContent, never parsed as HTML.

import { drawBars, bucketFor, fillOptions, renderCounts } from "./charts.js";
import { createApprovals } from "./approvals.js";
import { renderDecision, renderSummary } from "./detail.js";
import { $, ACTIONS, clear, el, formatProbability, formatTime, badge, modeBadge, targetSummary } from "./dom.js";

const KEY_STORE = "gateway-admin-key";
const PAGE = 100;
const MAX_ROWS = 2000; // the table keeps this many; older ones come back with "load more"
const STATS_EVERY_MS = 10000;
const RETRY_MS = 2000;
const FILTERS = ["caller", "policy", "action", "model"];

const state = {
  key: null,
  rows: [], // decisions shown, newest (highest id) first
  ids: new Set(),
  nextCursor: null,
  filters: {},
  lastEventId: null, // where the live stream resumes after a drop
  streamAbort: null,
  generation: 0, // bumped on sign-out: late answers of an older session are ignored
  statsTimer: null,
  historyLoaded: false,
  selected: null,
};

// ---- the admin API -----------------------------------------------------------------

class Unauthorized extends Error {}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, init) {
  const generation = state.generation;
  const res = await fetch(path, {
    ...init,
    cache: "no-store",
    headers: { Authorization: `Bearer ${state.key}`, ...((init && init.headers) || {}) },
  });
  if (generation !== state.generation) throw new Unauthorized("signed out");
  if (res.status === 401) {
    const body = await res.json().catch(() => null);
    signOut((body && body.error && body.error.message) || "The admin key was refused.");
    throw new Unauthorized("unauthorized");
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    const message = (body && body.error && body.error.message) || `HTTP ${res.status}`;
    throw new ApiError(message, res.status);
  }
  return res;
}

const approvals = createApprovals({ api, Unauthorized });

function showError(message) {
  const banner = $("error-banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

// ---- key handling ------------------------------------------------------------------

function takeKeyFromHash() {
  const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  if (!match) return null;
  // Out of the address bar and the history at once: the key must not linger there.
  history.replaceState(null, "", location.pathname + location.search);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

function showKeyForm(message) {
  $("main").hidden = true;
  closeDetail();
  $("forget-key").hidden = true;
  $("key-panel").hidden = false;
  $("key-message").textContent = message || "";
  $("key-message").hidden = !message;
  $("admin-key").value = "";
  $("admin-key").focus();
  setLive("off", "offline");
}

function signOut(message) {
  state.generation += 1;
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  stopStream();
  approvals.stop();
  clearInterval(state.statsTimer);
  state.statsTimer = null;
  showKeyForm(message);
}

function signIn(key) {
  // A header carries printable ASCII only; fetch would refuse anything else on every call.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    signOut("That key has characters an Authorization header cannot carry.");
    return;
  }
  state.key = key;
  state.generation += 1;
  sessionStorage.setItem(KEY_STORE, key);
  $("key-panel").hidden = true;
  $("main").hidden = false;
  $("forget-key").hidden = false;
  resetTable();
  state.lastEventId = null;
  state.historyLoaded = false;
  startStream();
  approvals.start();
  refreshStats();
  clearInterval(state.statsTimer);
  state.statsTimer = setInterval(refreshStats, STATS_EVERY_MS);
}

// ---- the decisions table -----------------------------------------------------------

function matchesFilters(row) {
  return FILTERS.every((name) => !state.filters[name] || row[name] === state.filters[name]);
}

function renderRow(row) {
  const prob = formatProbability(row.probability);
  const probCell = el("td", { cls: "col-prob" });
  if (prob) {
    const meter = el("span", { cls: "meter" }, el("span", { cls: "meter-fill" }));
    meter.firstChild.style.width = `${Math.max(0, Math.min(1, row.probability)) * 100}%`;
    probCell.append(meter, el("span", { cls: "prob", text: prob }));
  }
  const summary = targetSummary(row.target);
  const where = row.target && row.target.where ? ` in the ${row.target.where}` : "";
  const tr = el(
    "tr",
    { data: { decisionId: row.id, requestId: row.request_id, action: row.action, mode: row.mode } },
    el("td", { cls: "col-time mono", text: formatTime(row.time), title: formatTime(row.time, true) }),
    el("td", { cls: "col-caller", text: row.caller ?? "–" }),
    el("td", { cls: "col-api muted", text: row.api }),
    el("td", { cls: "col-model mono small", text: row.model ?? "–" }),
    el("td", { cls: "col-policy strong", text: row.policy, title: row.policy_type }),
    el("td", { cls: "col-action" }, badge(row.action)),
    el("td", { cls: "col-mode" }, modeBadge(row.mode)),
    el("td", { cls: "col-target target", text: summary, title: summary + where }),
    probCell,
  );
  if (row.mode === "shadow") tr.classList.add("is-shadow");
  if (state.selected === row.id) tr.classList.add("selected");
  tr.tabIndex = 0;
  return tr;
}

function resetTable() {
  state.rows = [];
  state.ids = new Set();
  state.nextCursor = null;
  clear($("decisions").tBodies[0]);
  updateTableChrome();
}

function updateTableChrome() {
  $("empty").hidden = state.rows.length > 0 || !state.historyLoaded;
  $("load-more").hidden = state.nextCursor === null;
  const active = FILTERS.filter((f) => state.filters[f]).map((f) => `${f} = ${state.filters[f]}`);
  $("table-note").textContent = active.length ? `filtered: ${active.join(", ")}` : "";
}

function appendHistory(rows) {
  const body = $("decisions").tBodies[0];
  for (const row of rows) {
    if (state.ids.has(row.id)) continue;
    state.ids.add(row.id);
    // History pages arrive newest first and older than what is shown, except when a
    // live row raced ahead of the first page: keep the table in id order regardless.
    let index = state.rows.length;
    while (index > 0 && state.rows[index - 1].id < row.id) index -= 1;
    state.rows.splice(index, 0, row);
    body.insertBefore(renderRow(row), body.rows[index] || null);
  }
}

function addLive(row) {
  if (state.ids.has(row.id) || !matchesFilters(row)) return;
  state.ids.add(row.id);
  let index = 0;
  while (index < state.rows.length && state.rows[index].id > row.id) index += 1;
  state.rows.splice(index, 0, row);
  const tr = renderRow(row);
  tr.classList.add("fresh");
  tr.addEventListener("animationend", () => tr.classList.remove("fresh"), { once: true });
  const body = $("decisions").tBodies[0];
  body.insertBefore(tr, body.rows[index] || null);
  while (state.rows.length > MAX_ROWS) {
    const dropped = state.rows.pop();
    state.ids.delete(dropped.id);
    body.deleteRow(-1);
    state.nextCursor = state.rows[state.rows.length - 1].id;
  }
  updateTableChrome();
}

function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") search.set(k, v);
  return search.toString();
}

async function loadHistory(more) {
  const generation = state.generation;
  const params = { ...state.filters, limit: PAGE };
  if (more) params.cursor = state.nextCursor;
  try {
    const res = await api(`/api/decisions?${query(params)}`);
    const page = await res.json();
    if (generation !== state.generation) return;
    if (!more) {
      // Live rows newer than this page's first survive the reload: they may have
      // arrived while the page was on its way.
      const top = page.decisions.length ? page.decisions[0].id : 0;
      const live = state.rows.filter((r) => r.id > top && matchesFilters(r));
      resetTable();
      appendHistory(live);
    }
    state.historyLoaded = true;
    appendHistory(page.decisions);
    state.nextCursor = page.next_cursor;
    updateTableChrome();
    showError("");
  } catch (err) {
    if (!(err instanceof Unauthorized)) showError(`Could not load decisions: ${err.message}`);
  }
}

function readFilters() {
  const filters = {};
  for (const name of FILTERS) {
    const value = $(`filter-${name}`).value.trim();
    if (value) filters[name] = value;
  }
  return filters;
}

// ---- the live stream (fetch + SSE parsing: EventSource cannot send a header) --------

function setLive(stateName, label) {
  const node = $("live-status");
  node.dataset.state = stateName;
  node.querySelector(".label").textContent = label;
}

function stopStream() {
  if (state.streamAbort) state.streamAbort.abort();
  state.streamAbort = null;
}

function handleFrame(frame) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (id !== null && /^\d+$/.test(id)) state.lastEventId = Number(id);
  if (event === "decision" && data.length) {
    try {
      addLive(JSON.parse(data.join("\n")));
    } catch (err) {
      console.warn("unreadable decision event", err);
    }
  }
}

async function startStream() {
  stopStream();
  const generation = state.generation;
  while (generation === state.generation) {
    const controller = new AbortController();
    state.streamAbort = controller;
    try {
      const headers = { Accept: "text/event-stream" };
      if (state.lastEventId !== null) headers["Last-Event-ID"] = String(state.lastEventId);
      const res = await api("/api/decisions/stream", { headers, signal: controller.signal });
      if (state.lastEventId === null) {
        // Where the server started this stream: a reconnect resumes from there even
        // when no decision has arrived yet.
        const start = res.headers.get("X-Stream-After");
        if (start && /^\d+$/.test(start)) state.lastEventId = Number(start);
      }
      setLive("live", "live");
      if (!state.historyLoaded) loadHistory(false);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (err) {
      if (err instanceof Unauthorized || generation !== state.generation) return;
      if (!state.historyLoaded) loadHistory(false);
    }
    if (generation !== state.generation) return;
    setLive("retry", "reconnecting");
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

// ---- request detail ----------------------------------------------------------------

// A decision can arrive before its request's summary, which is written when the
// response ends: the detail asks again for a while until the summary is there.
const SUMMARY_RETRY_MS = 1000;
const SUMMARY_RETRIES = 30;

async function openDetail(requestId, decisionId, attempt = 0) {
  const generation = state.generation;
  state.selected = decisionId;
  for (const tr of $("decisions").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.decisionId) === decisionId);
  const panel = $("detail");
  const body = $("detail-body");
  $("detail-title").textContent = requestId;
  if (attempt === 0) {
    clear(body);
    body.append(el("p", { cls: "muted", text: "Loading…" }));
  }
  panel.hidden = false;
  document.body.classList.add("with-detail");
  try {
    const res = await api(`/api/requests/${encodeURIComponent(requestId)}`);
    const found = await res.json();
    if (generation !== state.generation || state.selected !== decisionId) return;
    clear(body);
    body.append(el("h3", { text: "Summary" }), renderSummary(found.request));
    body.append(el("h3", { text: `Decisions (${found.decisions.length})` }));
    for (const d of found.decisions) body.append(renderDecision(d, state.selected));
    const chosen = body.querySelector(".decision-card.selected");
    if (chosen && chosen.scrollIntoView && attempt === 0) chosen.scrollIntoView({ block: "nearest" });
    if (!found.request && attempt < SUMMARY_RETRIES) {
      setTimeout(() => {
        if (generation === state.generation && state.selected === decisionId) {
          openDetail(requestId, decisionId, attempt + 1);
        }
      }, SUMMARY_RETRY_MS);
    }
  } catch (err) {
    if (err instanceof Unauthorized) return;
    clear(body);
    body.append(el("p", { cls: "error-text", text: `Could not load this request: ${err.message}` }));
  }
}

function closeDetail() {
  $("detail").hidden = true;
  document.body.classList.remove("with-detail");
  state.selected = null;
  for (const tr of $("decisions").tBodies[0].rows) tr.classList.remove("selected");
}

// ---- charts and counts -------------------------------------------------------------

async function refreshStats() {
  const generation = state.generation;
  const span = Number($("window").value);
  try {
    const res = await api(`/api/stats?${query({ window: span, bucket: bucketFor(span) })}`);
    const stats = await res.json();
    if (generation !== state.generation) return;
    drawBars("chart-decisions", stats.series, "decisions");
    drawBars("chart-requests", stats.series, "requests");
    renderCounts(stats);
    const models = state.rows.map((r) => r.model);
    fillOptions("models", models);
  } catch (err) {
    if (!(err instanceof Unauthorized)) showError(`Could not load the charts: ${err.message}`);
  }
}

// ---- wiring ------------------------------------------------------------------------

function init() {
  const select = $("filter-action");
  for (const action of ACTIONS) {
    const option = el("option", { text: action });
    option.value = action;
    select.append(option);
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("admin-key").value.trim();
    if (key) signIn(key);
  });
  $("forget-key").addEventListener("click", () => signOut("Key forgotten. Enter it again to continue."));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = readFilters();
    loadHistory(false);
  });
  $("filter-action").addEventListener("change", () => $("filters").requestSubmit());
  $("filter-clear").addEventListener("click", () => {
    for (const name of FILTERS) $(`filter-${name}`).value = "";
    state.filters = {};
    loadHistory(false);
  });
  $("load-more").addEventListener("click", () => loadHistory(true));
  $("window").addEventListener("change", () => state.key && refreshStats());
  const tbody = $("decisions").tBodies[0];
  const open = (event) => {
    const tr = event.target.closest("tr[data-decision-id]");
    if (tr) openDetail(tr.dataset.requestId, Number(tr.dataset.decisionId));
  };
  tbody.addEventListener("click", open);
  tbody.addEventListener("keydown", (event) => {
    if (event.key === "Enter") open(event);
  });
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("detail").hidden) closeDetail();
  });

  const key = takeKeyFromHash() || sessionStorage.getItem(KEY_STORE);
  if (key) signIn(key);
  else showKeyForm("");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
