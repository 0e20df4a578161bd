// A request's detail: its summary and each decision with the judge's reasons, the
// tool call's arguments and, for rewrites, the before/after examples.

import { badge, el, formatMs, formatNumber, formatProbability, formatTime, modeBadge, targetSummary } from "./dom.js";

function pair(label, value, cls) {
  return [el("dt", { text: label }), el("dd", { cls: cls || "", text: value ?? "–" })];
}

export function renderSummary(summary) {
  if (!summary) {
    return el("p", { cls: "muted", text: "No summary recorded for this request (yet): it may still be running." });
  }
  const tokens = [
    summary.input_tokens !== null ? `${formatNumber(summary.input_tokens)} in` : null,
    summary.output_tokens !== null ? `${formatNumber(summary.output_tokens)} out` : null,
    summary.cache_read_tokens ? `${formatNumber(summary.cache_read_tokens)} cache read` : null,
    summary.cache_write_tokens ? `${formatNumber(summary.cache_write_tokens)} cache write` : null,
  ].filter(Boolean);
  const status = el("dd", null, el("span", { cls: `status status-${String(summary.status)[0]}xx`, text: summary.status }), ` ${summary.outcome}`);
  const dl = el("dl", { cls: "summary", data: { testid: "detail-summary" } });
  dl.append(el("dt", { text: "status" }), status);
  dl.append(
    ...pair("time", formatTime(summary.time, true)),
    ...pair("call", `${summary.method} ${summary.path}`, "mono small"),
    ...pair("caller", summary.caller),
    ...pair("API · model", `${summary.api} · ${summary.model ?? "–"}`),
    ...pair("provider", summary.provider),
    ...pair("stream", summary.stream === null ? "–" : summary.stream ? "yes" : "no"),
    ...pair("tokens", tokens.length ? tokens.join(" · ") : "–"),
    ...pair("TTFB", formatMs(summary.ttfb_ms)),
    ...pair("duration", formatMs(summary.duration_ms)),
    ...pair("policies acted", (summary.policies_acted || []).join(", ") || "none"),
    ...pair("trace id", summary.trace_id, "mono small"),
  );
  return dl;
}

function renderExamples(examples) {
  const table = el("table", { cls: "examples", data: { testid: "examples" } });
  table.append(el("thead", null, el("tr", null, el("th", { text: "before" }), el("th", { text: "after" }))));
  const body = el("tbody");
  for (const ex of examples) {
    if (!ex || typeof ex !== "object") continue;
    body.append(el("tr", null, el("td", { cls: "before mono", text: ex.before ?? "" }), el("td", { cls: "after mono", text: ex.after ?? "" })));
  }
  table.append(body);
  return table;
}

export function renderDecision(d, selectedId) {
  const card = el("div", { cls: "decision-card", data: { decisionId: d.id } });
  if (d.mode === "shadow") card.classList.add("is-shadow");
  if (selectedId === d.id) card.classList.add("selected");
  card.append(
    el("div", { cls: "decision-head" }, badge(d.action), modeBadge(d.mode),
      el("span", { cls: "strong", text: d.policy }), el("span", { cls: "muted small", text: d.policy_type }),
      el("span", { cls: "muted small push", text: formatTime(d.time, true) })),
  );
  if (d.mode === "shadow") card.append(el("p", { cls: "shadow-note small", text: "Shadow mode: recorded only, the traffic passed unchanged." }));
  if (d.message) card.append(el("p", { cls: "message", text: d.message, data: { testid: "decision-message" } }));
  if (d.probability !== null && d.probability !== undefined) {
    const judge = el("div", { cls: "judge" }, el("span", { cls: "muted", text: "judge probability " }), el("span", { cls: "strong", text: formatProbability(d.probability) }));
    if (d.judge_ms !== null && d.judge_ms !== undefined) judge.append(el("span", { cls: "muted small", text: ` · ${formatMs(d.judge_ms)}` }));
    card.append(judge);
  }
  if (d.explanation) card.append(el("blockquote", { cls: "explanation", text: d.explanation, data: { testid: "decision-explanation" } }));
  const target = d.target || {};
  if (typeof target.tool === "string") {
    card.append(el("div", { cls: "label", text: `tool ${target.tool} · arguments` }));
    card.append(el("pre", { cls: "json", text: JSON.stringify(target.arguments ?? {}, null, 2), data: { testid: "decision-arguments" } }));
  } else if (target.kind !== undefined) {
    const where = target.where ? ` in the ${target.where}` : "";
    card.append(el("div", { cls: "label", text: `${targetSummary(target)}${where}` }));
  }
  if (Array.isArray(target.examples) && target.examples.length) card.append(renderExamples(target.examples));
  const rest = Object.fromEntries(Object.entries(target).filter(([k]) => !["tool", "arguments", "examples", "kind", "count", "where"].includes(k)));
  if (Object.keys(rest).length) card.append(el("pre", { cls: "json", text: JSON.stringify(rest, null, 2) }));
  return card;
}
