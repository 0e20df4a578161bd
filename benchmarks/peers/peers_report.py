"""The peers benchmark's markdown: one row per configuration."""

from __future__ import annotations

from typing import Any

from benchmarks.report import BASELINE, _fmt


def _find(items: list[dict[str, Any]], api: str) -> dict[str, Any] | None:
    return next((i for i in items if i.get("api") == api), None)


def _num(item: dict[str, Any] | None, key: str) -> float | None:
    value = None if item is None else item.get(key)
    return float(value) if isinstance(value, int | float) else None


def _pair(a: float | None, b: float | None, fmt: str = "") -> str:
    def one(v: float | None) -> str:
        if v is None:
            return "—"
        if fmt == "ratio":
            return f"x{v:.2f}" if v >= 0.1 else f"x{v:.2g}"
        return _fmt(v)

    return f"{one(a)} / {one(b)}"


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def burst_table(result: dict[str, Any]) -> str:
    configs: dict[str, dict[str, Any]] = result["configs"]
    base = configs.get(BASELINE, {})
    c = result["settings"]["concurrency"]
    heads = [
        "Configuration",
        f"Anthropic req/s, c={c}",
        f"OpenAI chat req/s, c={c}",
        "ratio to passthrough (Anthropic / OpenAI)",
        "TTFB p50 ms, c=1",
        "proxy CPU ms / request (A / O)",
        "proxy CPU µs / event (A / O)",
        "errors",
    ]
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for name, cfg in configs.items():
        rps = {api: _num(_find(cfg["throughput"], api), "rps") for api in ("anthropic", "openai")}
        ref = {api: _num(_find(base.get("throughput", []), api), "rps") for api in rps}
        checks = cfg.get("checks", [])
        ratios = [_ratio(rps[a], ref[a]) for a in rps]
        cpu_req = [_num(_find(checks, a), "proxy_cpu_ms_per_request") for a in rps]
        cpu_event = [_num(_find(checks, a), "proxy_cpu_us_per_event") for a in rps]
        cells = [
            name if cfg.get("valid") else f"{name} **INVALID**",
            _fmt(rps["anthropic"]),
            _fmt(rps["openai"]),
            _pair(ratios[0], ratios[1], fmt="ratio"),
            _fmt(_num(_find(cfg.get("latency", []), "anthropic"), "ttfb_p50_ms")),
            _pair(cpu_req[0], cpu_req[1]),
            _pair(cpu_event[0], cpu_event[1]),
            f"{cfg.get('errors', 0):,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paced_table(section: dict[str, Any]) -> str:
    heads = [
        "Configuration",
        "c",
        "event delay p50 / p99 ms",
        "added p50 / p99 ms",
        "TTFB p50 / p99 ms",
        "proxy CPU µs / event",
        "stream length p50 / max ms",
        "streams correct / started",
        "errors",
    ]
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for name, cfg in section["configs"].items():
        label = name if cfg.get("valid") else f"{name} **INVALID**"
        if not cfg["points"]:
            lines.append(f"| {label} |" + " — |" * (len(heads) - 2) + f" {cfg.get('errors', 0)} |")
        for point in cfg["points"]:
            delay = point.get("event_delay_ms", {})
            added = point.get("added", {})
            ttfb = point.get("ttfb_ms", {})
            length = point.get("stream_ms", {})
            streams = point.get("streams")
            cells = [
                label,
                str(point["concurrency"]),
                _pair(delay.get("p50"), delay.get("p99")),
                _pair(added.get("event_delay_p50_ms"), added.get("event_delay_p99_ms")),
                _pair(ttfb.get("p50"), ttfb.get("p99")),
                _fmt(point.get("proxy_cpu_us_per_event")),
                _pair(length.get("p50"), length.get("max")),
                f"{streams['ok']:,} / {streams['started']:,}" if streams else "—",
                f"{point.get('errors', 0):,}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _hook_line(cfg: dict[str, Any]) -> list[str]:
    proof = cfg.get("guardrail_hook")
    if not proof:
        return []
    out = []
    for kind, api in (("sse_bytes", "anthropic"), ("chunk_objects", "openai")):
        seen = proof.get("counters", {}).get(kind)
        mine = proof.get(api)
        if not seen or not mine:
            continue
        out.append(
            f"* guardrail hook, {api}: {seen['streams']:,} streams seen for "
            f"{mine.get('good_responses', 0):,} correct answers; per stream "
            f"{seen['min_text_deltas_per_stream']}..{seen['max_text_deltas_per_stream']} text "
            f"deltas inspected, {seen['min_replaced_per_stream']}.."
            f"{seen['max_replaced_per_stream']} replaced, items given to the hook "
            f"{seen['min_chunks_per_stream']}..{seen['max_chunks_per_stream']}"
        )
    return out


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    plan = s["plan"]
    lite = result["litellm"]
    out = [
        f"## Peers: the gateway and LiteLLM {lite['version'] or '-'} "
        f"({result['wall_s']:.0f} s wall)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, Envoy "
        f"{m['envoy']}, load generator {result['loadgen']}. Fast upstream: Anthropic "
        f"{result['events']['anthropic']} events, OpenAI chat {result['events']['openai']} "
        "events per response, whole bodies at once.",
        "",
        f"req/s: wrk, {plan['duration_s']:g} s per point "
        f"({max(plan['duration_s'], s['peer_duration_s']):g} s for LiteLLM). "
        f"TTFB: {s['latency_requests']} requests at c=1 (Anthropic). Proxy CPU (Envoy + "
        f"ext_proc, or LiteLLM's process): {s['check_requests']} requests per API at "
        f"c={s['concurrency']}, every body checked. Ratios: to passthrough (Envoy without "
        f"ext_proc) of the same run. LiteLLM: {lite['pin']}, one worker, no database.",
        "",
        burst_table(result) if result["configs"] else "(burst figures not measured)",
        "",
    ]
    for cfg in result["configs"].values():
        out += _hook_line(cfg)
    for name, cfg in result["configs"].items():
        out += [f"* {name}: {problem}" for problem in cfg.get("problems", [])[:5]]
    paced = result.get("paced")
    if paced:
        out += [
            "",
            f"### Paced streams ({paced['wall_s']:.0f} s wall)",
            "",
            f"{paced['events_per_stream']} Anthropic events per stream, one every "
            f"{paced['interval_ms']:g} ms; N streams kept open, measured for "
            f"{paced['hold_s']:g} s. Event delay: arrival - the upstream's scheduled send "
            "time; added: minus passthrough's at the same N; proxy CPU per upstream event.",
            "",
            paced_table(paced),
            "",
        ]
        for name, cfg in paced["configs"].items():
            out += [f"* paced {name}: {problem}" for problem in cfg.get("problems", [])[:5]]
            out += [f"* paced {name}: {line[2:]}" for line in _hook_line(cfg)]
    return "\n".join(out)
