// Bar charts of decisions and requests over time (inline SVG drawn here), the tiles
// and the counts per policy and action, all from /api/stats.

import { $, BLOCKING, badge, clear, el, formatNumber, formatTime } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

export function drawBars(containerId, series, field) {
  const container = $(containerId);
  clear(container);
  const width = 600;
  const height = 100;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "bars");
  const max = Math.max(0, ...series.map((p) => p[field]));
  const step = series.length ? width / series.length : width;
  series.forEach((point, i) => {
    const value = point[field];
    if (!value) return;
    const h = Math.max(2, (value / max) * (height - 4));
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", (i * step + step * 0.12).toFixed(2));
    rect.setAttribute("width", Math.max(1, step * 0.76).toFixed(2));
    rect.setAttribute("y", (height - h).toFixed(2));
    rect.setAttribute("height", h.toFixed(2));
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${formatTime(point.t)}: ${value}`;
    rect.append(title);
    svg.append(rect);
  });
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", "0");
  base.setAttribute("x2", String(width));
  base.setAttribute("y1", String(height - 0.5));
  base.setAttribute("y2", String(height - 0.5));
  base.setAttribute("class", "baseline");
  svg.append(base);
  container.append(svg);
  container.dataset.bars = String(series.filter((p) => p[field]).length);
  $(`${containerId}-max`).textContent = max ? `peak ${max} per ${bucketLabel()}` : "none yet";
  $(`${containerId}-from`).textContent = series.length ? formatTime(series[0].t) : "";
  $(`${containerId}-to`).textContent = "now";
}

// Sixty bars whatever the window.
export function bucketFor(span) {
  return Math.max(1, Math.round(span / 60));
}

function bucketLabel() {
  const bucket = bucketFor(Number($("window").value));
  return bucket % 60 === 0 ? `${bucket / 60} min` : `${bucket} s`;
}

export function renderCounts(stats) {
  const byPolicy = new Map();
  let decisions = 0;
  let blocked = 0;
  let shadow = 0;
  for (const g of stats.decisions) {
    decisions += g.count;
    if (g.mode === "shadow") shadow += g.count;
    else if (BLOCKING.has(g.action)) blocked += g.count;
    const key = `${g.policy}\u0000${g.action}`;
    const entry = byPolicy.get(key) || { policy: g.policy, action: g.action, count: 0, shadow: 0 };
    entry.count += g.count;
    if (g.mode === "shadow") entry.shadow += g.count;
    byPolicy.set(key, entry);
  }
  const requests = stats.requests.reduce((sum, g) => sum + g.count, 0);
  $("tile-requests").textContent = formatNumber(requests);
  $("tile-decisions").textContent = formatNumber(decisions);
  $("tile-blocked").textContent = formatNumber(blocked);
  $("tile-shadow").textContent = formatNumber(shadow);

  const body = $("counts").tBodies[0];
  clear(body);
  const entries = [...byPolicy.values()].sort((a, b) => b.count - a.count || a.policy.localeCompare(b.policy));
  if (!entries.length) body.append(el("tr", null, el("td", { cls: "muted", text: "No decisions in this window." })));
  for (const e of entries) {
    const count = el("td", { cls: "num", text: formatNumber(e.count) });
    if (e.shadow) count.append(el("span", { cls: "muted small", text: ` (${e.shadow} shadow)` }));
    body.append(el("tr", { data: { policy: e.policy, action: e.action } }, el("td", { cls: "strong", text: e.policy }), el("td", null, badge(e.action)), count));
  }
  fillOptions("policies", stats.decisions.map((g) => g.policy));
  fillOptions("callers", [...stats.decisions, ...stats.requests].map((g) => g.caller));
}

export function fillOptions(id, values) {
  const list = $(id);
  clear(list);
  for (const v of [...new Set(values.filter((x) => typeof x === "string"))].sort()) list.append(el("option", { text: v }));
}
