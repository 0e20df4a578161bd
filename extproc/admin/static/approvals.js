// Pending approvals: the tool calls a policy holds until a person answers. The list is
// polled every second while a key is set; each call is a card with what the model
// wrote before it, its arguments, why it was held and the time it has left, and the
// Approve and Deny buttons that answer it (in the name of the key's holder).
// Everything on a card comes from the API and is untrusted text: textContent only.

import { $, clear, el, formatTime } from "./dom.js";

const POLL_MS = 1000;
const TICK_MS = 500;
// A card whose answer came too late (409) keeps showing why for this long.
const LINGER_MS = 8000;
const URGENT_S = 30;
// A pending row its holder has not refreshed for this long is gone (approvals/model.py,
// STALE_AFTER_S): the listing leaves it out.
const STALE_S = 10;
const STATUS_TEXT = { pending: "waiting", sending: "sending…", conflict: "ended" };

function prettyArguments(text) {
  if (typeof text !== "string") return JSON.stringify(text ?? {}, null, 2);
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === "object") return JSON.stringify(value, null, 2);
  } catch {
    // Not JSON (cut short, or a custom tool's free text): shown as it came.
  }
  return text;
}

function formatLeft(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export function createApprovals({ api, Unauthorized }) {
  const baseTitle = document.title;
  const cards = new Map(); // id -> card (see build)
  const answered = new Set(); // answered here: a listing sent before the answer must not revive it
  let session = 0; // bumped by start and stop: late answers of an older session are ignored
  let pollTimer = null;
  let ticker = null;
  let skewMs = 0; // the server's clock minus this browser's, when they differ by seconds

  // ---- the panel's chrome ----

  function pendingCount() {
    let n = 0;
    for (const card of cards.values()) if (card.state !== "conflict") n += 1;
    return n;
  }

  function renderChrome() {
    const n = pendingCount();
    const panel = $("approvals");
    panel.dataset.count = String(n);
    panel.classList.toggle("has-pending", cards.size > 0);
    $("approvals-count").textContent = n ? String(n) : "";
    $("approvals-count").hidden = !n;
    $("approvals-empty").hidden = cards.size > 0;
    document.title = n ? `(${n}) ${baseTitle}` : baseTitle;
  }

  function showError(message) {
    const node = $("approvals-error");
    node.textContent = message || "";
    node.hidden = !message;
  }

  function note(message) {
    $("approvals-note").textContent = message;
  }

  // ---- one card ----

  function field(label, value, testid, cls) {
    return el("div", { cls: "approval-field" },
      el("div", { cls: "label", text: label }),
      el(cls === "json" ? "pre" : "div", { cls: cls || "", text: value, data: { testid } }));
  }

  function build(row) {
    const caller = row.caller ?? "–";
    const node = el("article", { cls: "approval-card card", data: { testid: "approval-card", approvalId: row.id, state: "pending" } });
    node.setAttribute("aria-label", `Tool call ${row.tool} from ${caller}`);

    const status = el("span", { cls: "badge waiting", text: "waiting", data: { testid: "approval-status" } });
    const left = el("span", { cls: "approval-left mono", data: { testid: "approval-time-left" } });
    const bar = el("span", { cls: "approval-bar" }, el("span", { cls: "approval-bar-fill" }));
    node.append(
      el("div", { cls: "approval-head" },
        status,
        el("span", { cls: "approval-tool mono strong", text: row.tool, data: { testid: "approval-tool" } }),
        el("span", { cls: "muted", text: "from" }),
        el("span", { cls: "strong", text: caller, data: { testid: "approval-caller" } }),
        el("span", { cls: "approval-timer push", title: `asked at ${formatTime(row.created_at, true)}` }, bar, left)),
      el("div", { cls: "approval-meta small" },
        el("span", null, el("span", { cls: "muted", text: "model " }), el("span", { cls: "mono", text: row.model ?? "–", data: { testid: "approval-model" } })),
        el("span", null, el("span", { cls: "muted", text: "API " }), el("span", { text: row.api, data: { testid: "approval-api" } })),
        el("span", null, el("span", { cls: "muted", text: "policy " }), el("span", { cls: "strong", text: row.policy, data: { testid: "approval-policy" } })),
        el("span", { cls: "muted mono", text: row.request_id, title: "request id", data: { testid: "approval-request" } })),
    );

    const preceding = row.preceding_text
      ? el("blockquote", { cls: "explanation approval-text", text: row.preceding_text, data: { testid: "approval-preceding" } })
      : el("p", { cls: "muted small approval-text", text: "The model wrote nothing before this call.", data: { testid: "approval-preceding" } });
    node.append(
      el("div", { cls: "approval-body" },
        el("div", { cls: "approval-context" },
          el("div", { cls: "approval-field" }, el("div", { cls: "label", text: "The model wrote" }), preceding),
          field("Why it waits", row.why, "approval-why", "approval-why")),
        field(`${row.tool} · arguments`, prettyArguments(row.arguments), "approval-arguments", "json")),
    );

    const reason = el("input", { cls: "approval-reason", data: { testid: "approval-reason" } });
    reason.type = "text";
    reason.maxLength = 1000;
    reason.placeholder = "reason (optional)";
    reason.autocomplete = "off";
    reason.setAttribute("aria-label", "Reason");
    const deny = el("button", { cls: "deny", text: "Deny", data: { testid: "approval-deny" } });
    const approve = el("button", { cls: "approve", text: "Approve", data: { testid: "approval-approve" } });
    const dismiss = el("button", { cls: "ghost dismiss", text: "Dismiss", data: { testid: "approval-dismiss" } });
    for (const b of [deny, approve, dismiss]) b.type = "button";
    dismiss.hidden = true;
    const message = el("p", { cls: "approval-message", data: { testid: "approval-message" } });
    message.setAttribute("role", "alert");
    message.hidden = true;
    node.append(el("div", { cls: "approval-actions" }, reason, deny, approve, dismiss), message);

    const card = { id: row.id, row, node, state: "pending", status, left, bar: bar.firstChild, reason, buttons: [deny, approve], dismiss, message, lingerTimer: null };
    approve.addEventListener("click", () => answer(card, "approve"));
    deny.addEventListener("click", () => answer(card, "deny"));
    dismiss.addEventListener("click", () => removeCard(card));
    return card;
  }

  function setState(card, state) {
    card.state = state;
    card.node.dataset.state = state;
    card.status.textContent = STATUS_TEXT[state];
    for (const b of card.buttons) b.disabled = state !== "pending";
    card.reason.disabled = state !== "pending";
    card.dismiss.hidden = state !== "conflict";
    renderChrome();
  }

  function setMessage(card, text) {
    card.message.textContent = text || "";
    card.message.hidden = !text;
  }

  function removeCard(card) {
    clearTimeout(card.lingerTimer);
    card.node.remove();
    if (cards.get(card.id) === card) cards.delete(card.id);
    renderChrome();
  }

  function tick() {
    const now = Date.now() + skewMs;
    for (const card of cards.values()) {
      if (card.state === "conflict") continue;
      const { created_at: created, expires_at: expires } = card.row;
      const left = expires - now / 1000;
      card.left.textContent = left > 0 ? `${formatLeft(left)} left` : "timing out…";
      card.bar.style.width = `${Math.max(0, Math.min(1, left / Math.max(1, expires - created))) * 100}%`;
      card.node.classList.toggle("urgent", left < URGENT_S);
    }
  }

  // ---- the answer ----

  async function answer(card, decision) {
    if (card.state !== "pending") return;
    const mine = session;
    const body = { decision };
    const reason = card.reason.value.trim();
    if (reason) body.reason = reason;
    setMessage(card, "");
    setState(card, "sending");
    try {
      const res = await api(`/api/approvals/${encodeURIComponent(card.id)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const done = await res.json().catch(() => null);
      if (mine !== session) return;
      answered.add(card.id);
      removeCard(card);
      const by = done && done.approval && done.approval.decided_by ? ` as ${done.approval.decided_by}` : "";
      note(`${decision === "approve" ? "Approved" : "Denied"} ${card.row.tool} for ${card.row.caller ?? "an unnamed caller"}${by}.`);
    } catch (err) {
      if (err instanceof Unauthorized || mine !== session) return;
      if (err.status === 409 || err.status === 404) {
        // Answered elsewhere, timed out, or its client is gone: the server says which.
        // Rarely the call is still open (the answer lost a race): then it stays answerable.
        const open = err.status === 409 && (await stillOpen(card.id));
        if (mine !== session) return;
        setState(card, open ? "pending" : "conflict");
        setMessage(card, err.message);
      } else {
        setState(card, "pending");
        setMessage(card, `Could not send the answer: ${err.message}`);
      }
    }
  }

  async function stillOpen(id) {
    try {
      const res = await api(`/api/approvals/${encodeURIComponent(id)}`);
      const row = (await res.json()).approval;
      const now = (Date.now() + skewMs) / 1000;
      return Boolean(row) && row.status === "pending" && row.expires_at > now && row.seen_at > now - STALE_S;
    } catch {
      return false;
    }
  }

  // ---- the list ----

  function update(rows) {
    const live = new Set(rows.map((r) => r.id));
    for (const card of [...cards.values()]) {
      if (live.has(card.id)) continue;
      if (card.state === "sending") continue; // its answer's reply decides
      if (card.state === "conflict") {
        if (card.lingerTimer === null) card.lingerTimer = setTimeout(() => removeCard(card), LINGER_MS);
        continue;
      }
      removeCard(card); // answered elsewhere, timed out, or its client went away
    }
    const container = $("approval-cards");
    let previous = null;
    for (const row of rows) {
      if (answered.has(row.id)) continue;
      let card = cards.get(row.id);
      if (!card) {
        card = build(row);
        cards.set(row.id, card);
      } else {
        card.row = row;
      }
      // Oldest first, as listed; a card already in place is not moved (it would lose
      // the focus of a reason being typed).
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (expected !== card.node) container.insertBefore(card.node, expected);
      previous = card.node;
    }
    renderChrome();
    tick();
  }

  function readSkew(res) {
    const date = Date.parse(res.headers.get("Date") || "");
    if (Number.isNaN(date)) return;
    // The header has whole seconds: only a difference of several is a real one.
    const skew = date - Date.now();
    skewMs = Math.abs(skew) > 2000 ? skew : 0;
  }

  async function poll(mine) {
    try {
      const res = await api("/api/approvals");
      const body = await res.json();
      if (mine !== session) return;
      readSkew(res);
      update(Array.isArray(body.approvals) ? body.approvals : []);
      showError("");
    } catch (err) {
      // Refused (401): the view signed out, which stopped this loop.
      if (err instanceof Unauthorized || mine !== session) return;
      showError(`Could not load pending approvals: ${err.message}`);
    }
    if (mine === session) pollTimer = setTimeout(() => poll(mine), POLL_MS);
  }

  function stop() {
    session += 1;
    clearTimeout(pollTimer);
    clearInterval(ticker);
    pollTimer = null;
    ticker = null;
    for (const card of cards.values()) clearTimeout(card.lingerTimer);
    cards.clear();
    answered.clear();
    clear($("approval-cards"));
    showError("");
    note("");
    renderChrome();
  }

  function start() {
    stop();
    const mine = session;
    ticker = setInterval(tick, TICK_MS);
    poll(mine);
  }

  return { start, stop };
}
