"""The paced-stream benchmark's comparisons with passthrough, and its markdown table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.report import BASELINE, _fmt

# A figure of one configuration at one concurrency: a number (ratio to passthrough
# shown unless the row says otherwise), text, or None.
Getter = Callable[[dict[str, Any]], float | str | None]


def _point(cfg: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    return next((p for p in cfg.get("points", []) if p.get("concurrency") == concurrency), None)


def _added(point: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, name in (("event_delay_ms", "event_delay"), ("ttfb_ms", "ttfb")):
        for q in ("p50", "p99"):
            mine, theirs = point[key][q], base[key][q]
            out[f"{name}_{q}_ms"] = None if mine is None or theirs is None else mine - theirs
    return out


def summarize(section: dict[str, Any]) -> None:
    """Adds, in place, each point's figures minus passthrough's at the same concurrency
    (`added`), and each configuration's highest concurrency whose added p99 event delay
    stayed under the limit (`max_concurrency_within_limit`; 0: none of the points)."""
    configs: dict[str, dict[str, Any]] = section["configs"]
    base_cfg = configs.get(BASELINE)
    limit = section["added_p99_limit_ms"]
    for cfg in configs.values():
        within: list[int] = []
        for point in cfg["points"]:
            base = _point(base_cfg, point["concurrency"]) if base_cfg else None
            if base is None or "event_delay_ms" not in point or "event_delay_ms" not in base:
                continue
            point["added"] = added = _added(point, base)
            p99 = added["event_delay_p99_ms"]
            if not point["errors"] and p99 is not None and p99 < limit:
                within.append(point["concurrency"])
        measured = [p for p in cfg["points"] if "added" in p]
        cfg["max_concurrency_within_limit"] = max(within, default=0) if measured else None


def _fig(key: str, q: str, concurrency: int) -> Getter:
    def get(cfg: dict[str, Any]) -> float | None:
        point = _point(cfg, concurrency)
        value = None if point is None else point.get(key, {}).get(q)
        return float(value) if isinstance(value, int | float) else None

    return get


def _value(key: str, concurrency: int, sub: str | None = None) -> Getter:
    def get(cfg: dict[str, Any]) -> float | None:
        point = _point(cfg, concurrency)
        value = None if point is None else point.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        return float(value) if isinstance(value, int | float) else None

    return get


def _pair(key: str, a: str, b: str, concurrency: int) -> Getter:
    def get(cfg: dict[str, Any]) -> str | None:
        point = _point(cfg, concurrency)
        values = None if point is None else point.get(key)
        if not isinstance(values, dict) or values.get(a) is None or values.get(b) is None:
            return None
        return f"{_fmt(values[a])} / {_fmt(values[b])}"

    return get


def _late(concurrency: int) -> Getter:
    def get(cfg: dict[str, Any]) -> str | None:
        point = _point(cfg, concurrency)
        late = None if point is None else point.get("upstream_late_us")
        if not late:
            return None
        return f"{_fmt(late['p50'] / 1000)} / {_fmt(late['p99'] / 1000)}"

    return get


def _cores(concurrency: int) -> Getter:
    def get(cfg: dict[str, Any]) -> str | None:
        point = _point(cfg, concurrency)
        if point is None or "cores" not in point:
            return None
        cores = point["cores"]
        names = ("extproc", "gateway_envoy", "upstream", "client", "other")
        return " / ".join("-" if n not in cores else f"{cores[n]:.2f}" for n in names)

    return get


def _streams(concurrency: int) -> Getter:
    def get(cfg: dict[str, Any]) -> str | None:
        point = _point(cfg, concurrency)
        if point is None or "streams" not in point:
            return None
        s = point["streams"]
        return f"{s['ok']:,} / {s['started']:,}"

    return get


def _within(cfg: dict[str, Any]) -> str | None:
    value = cfg.get("max_concurrency_within_limit")
    if value is None:
        return None
    return f"{value:,}" if value else "none measured"


def rows(section: dict[str, Any]) -> list[tuple[str, Getter, bool]]:
    """(label, getter, show the ratio to passthrough) for every line of the table."""
    concs: list[int] = section["concurrencies"]
    nominal = section["stream_s"] * 1000
    out: list[tuple[str, Getter, bool]] = []
    for key, label in (("event_delay_ms", "Event delay"), ("ttfb_ms", "TTFB")):
        for q in ("p50", "p99"):
            out += [(f"{label} {q} ms, c={c}", _fig(key, q, c), True) for c in concs]
        for c in concs:
            name = "event_delay" if key == "event_delay_ms" else "ttfb"
            pair = _pair("added", f"{name}_p50_ms", f"{name}_p99_ms", c)
            out.append((f"{label} added p50 / p99 ms, c={c}", pair, False))
    for c in concs:
        pair = _pair("stream_ms", "p50", "max", c)
        out.append((f"stream length p50 / max ms (nominal {nominal:,.0f}), c={c}", pair, False))
    for c in concs:
        getter = _fig("event_delay_from_write_ms", "p99", c)
        out.append((f"Event delay from the upstream's write p99 ms, c={c}", getter, True))
    for c in concs:
        getter = _late(c)
        out.append((f"upstream writes late p50 / p99 ms, c={c}", getter, False))
    for c in concs:
        getter = _value("cpu_us_per_event", c, "extproc")
        out.append((f"ext_proc CPU µs / event, c={c} †", getter, False))
    for c in concs:
        getter = _value("extproc_cpu_us_per_message", c)
        out.append((f"ext_proc CPU µs / gRPC message, c={c} †", getter, False))
    for c in concs:
        getter = _value("cpu_us_per_event", c, "gateway_envoy")
        out.append((f"Envoy CPU µs / event, c={c}", getter, True))
    c = concs[0]
    pair = _pair("extproc_messages_per_response", "received", "sent", c)
    out.append((f"ext_proc messages received / sent per response, c={c} †", pair, False))
    for c in concs:
        label = f"CPU cores busy: ext_proc / Envoy / upstream / client / other, c={c}"
        out.append((label, _cores(c), False))
    for c in concs:
        out.append((f"streams correct / started, c={c}", _streams(c), False))
    limit = section["added_p99_limit_ms"]
    out.append((f"highest c with added p99 event delay < {limit:g} ms", _within, False))
    return out


def table(section: dict[str, Any]) -> str:
    configs: dict[str, dict[str, Any]] = section["configs"]
    names = list(configs)
    heads = [n if configs[n].get("valid") else f"{n} **INVALID**" for n in names]
    lines = ["| Figure | " + " | ".join(heads) + " |", "|---" * (len(names) + 1) + "|"]
    base = configs.get(BASELINE)
    for label, getter, ratio in rows(section):
        cells = []
        for name in names:
            value = getter(configs[name])
            if value is None or isinstance(value, str):
                cells.append(value or "—")
                continue
            cell = _fmt(value)
            ref = getter(base) if ratio and base is not None and name != BASELINE else None
            if isinstance(ref, float) and ref > 0:
                cell += f" (x{value / ref:.2f})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(section: dict[str, Any]) -> str:
    out = [
        f"## Paced streams ({section['wall_s']:.0f} s wall)",
        "",
        f"Each stream: {section['events_per_stream']} Anthropic events, one every "
        f"{section['interval_ms']:g} ms, each its own HTTP chunk ({section['stream_s']:.1f} s); "
        f"N streams kept open, measured for {section['hold_s']:g} s once all N are open. "
        f"Event delay: arrival at the client - the upstream's scheduled send time. "
        f"Added: minus passthrough at the same N. ext_proc admits "
        f"{section['extproc_max_streams']:,} streams (EXTPROC_MAX_STREAMS). Ratios to "
        "`passthrough`; rows marked † are ext_proc only.",
        "",
        table(section) if section["configs"] else "(nothing measured)",
        "",
    ]
    out += [f"* paced: {problem}" for problem in section.get("problems", [])]
    for name, cfg in section["configs"].items():
        for problem in cfg.get("problems", [])[:5]:
            out.append(f"* paced {name}: {problem}")
    return "\n".join(out)
