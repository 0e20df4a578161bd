// Building and formatting what the view shows. Every value from the API goes in as
// text (textContent, a text node), never as markup.

export const ACTIONS = [
  "allow", "block_tool_call", "redact", "replace", "reject_request",
  "block_response", "error_fail_closed", "error_fail_open", "rate_limited",
];
export const BLOCKING = new Set([
  "block_tool_call", "reject_request", "block_response", "error_fail_closed", "rate_limited",
]);

export const $ = (id) => document.getElementById(id);

export function el(tag, opts, ...children) {
  const node = document.createElement(tag);
  if (opts) {
    if (opts.cls) node.className = opts.cls;
    if (opts.title) node.title = opts.title;
    if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
    if (opts.data) for (const [k, v] of Object.entries(opts.data)) node.dataset[k] = String(v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export const pad = (n) => String(n).padStart(2, "0");

export function formatTime(seconds, withDate) {
  const d = new Date(seconds * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date();
  if (!withDate && d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function formatNumber(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function formatProbability(p) {
  return p === null || p === undefined ? "" : Number(p).toFixed(2);
}

export function badge(action) {
  return el("span", { cls: `badge action-${ACTIONS.includes(action) ? action : "other"}`, text: action });
}

export function modeBadge(mode) {
  return el("span", { cls: `mode mode-${mode === "shadow" ? "shadow" : "enforce"}`, text: mode });
}

export function targetSummary(target) {
  if (!target || typeof target !== "object") return "";
  if (typeof target.tool === "string") return target.tool;
  if (target.kind !== undefined) {
    const count = target.count !== undefined ? `${target.count} × ` : "";
    return `${count}${target.kind}`;
  }
  if (target.status !== undefined) return `HTTP ${target.status}`;
  const text = JSON.stringify(target);
  return text === "{}" ? "" : text.length > 60 ? text.slice(0, 57) + "…" : text;
}
