"""The machine description, the markdown table and the JSON file of a benchmark run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from extproc.stack import envoy_binary

BASELINE = "passthrough"
EXTPROC_BASELINE = "noop"
MIB = 1024.0


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy = _first_line([envoy_binary(), "--version"])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "envoy": envoy.split("version:", 1)[-1].strip(),
        "wrk": _first_line(["wrk", "--version"]) if _has("wrk") else None,
        "kernel": platform.release(),
    }


def _has(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _find(items: list[dict[str, Any]], api: str, concurrency: int) -> dict[str, Any] | None:
    return next(
        (i for i in items if i.get("api") == api and i.get("concurrency") == concurrency), None
    )


# A figure of one configuration: a number (shown with its ratio), text, or None.
Getter = Callable[[dict[str, Any]], float | str | None]


def _get(section: str, api: str, concurrency: int, key: str) -> Getter:
    def get(cfg: dict[str, Any]) -> float | None:
        item = _find(cfg.get(section, []), api, concurrency)
        value = None if item is None else item.get(key)
        return float(value) if isinstance(value, int | float) else None

    return get


def _get_in(section: str, key: str, scale: float = 1.0) -> Getter:
    def get(cfg: dict[str, Any]) -> float | None:
        item = cfg.get(section)
        value = None if not item else item.get(key)
        return float(value) / scale if isinstance(value, int | float) else None

    return get


def _cores(api: str, concurrency: int, proc: str) -> Getter:
    def get(cfg: dict[str, Any]) -> float | None:
        item = _find(cfg.get("throughput", []), api, concurrency)
        if item is None:
            return None
        cores = item.get("cores", {})
        if proc == "total":
            return float(sum(v for k, v in cores.items() if k != "other"))
        value = cores.get(proc)
        return float(value) if value is not None else None

    return get


def rows(result: dict[str, Any]) -> list[tuple[str, Getter, str]]:
    """(label, getter, baseline config) for every line of the table."""
    plan = result["plan"]
    out: list[tuple[str, Getter, str]] = []
    titles = {"anthropic": "Anthropic", "openai": "OpenAI", "responses": "Responses"}
    points = [
        ("anthropic", plan["concurrencies"]),
        ("openai", plan["openai_conc"]),
        ("responses", plan["openai_conc"]),
    ]
    for api, concs in points:
        title = titles[api]
        for c in concs:
            out.append((f"{title} req/s, c={c}", _get("throughput", api, c, "rps"), BASELINE))
        for c in concs:
            getter = _get("throughput", api, c, "events_per_s")
            out.append((f"{title} SSE events/s, c={c}", getter, BASELINE))
    for c in plan["latency_conc"]:
        for key, label in (("ttfb", "TTFB"), ("ttlb", "TTLB")):
            for q in ("p50", "p99"):
                getter = _get("latency", "anthropic", c, f"{key}_{q}_ms")
                out.append((f"{label} {q} ms, c={c} (Anthropic)", getter, BASELINE))
    cpu_points = [(api, plan["cpu_conc"] if api == "anthropic" else plan["openai_conc"][0])
                  for api, _ in points]  # fmt: skip
    for api, c in cpu_points:
        getter = _get("throughput", api, c, "extproc_cpu_s_per_1k_events")
        out.append((f"ext_proc CPU s / 1k events ({api}, c={c}) †", getter, EXTPROC_BASELINE))
    slow = plan["slow_streams"]
    out += [
        (
            f"ext_proc peak RSS MiB, {slow} slow streams †",
            _get_in("slow_streams", "peak_rss_kib", MIB),
            EXTPROC_BASELINE,
        ),
        ("ext_proc KiB per open stream †", _get_in("slow_streams", "kib_per_stream"), "noop"),
        ("ext_proc RSS MiB, leak check start †", _get_in("leak", "rss_first_kib", MIB), "noop"),
        ("ext_proc RSS MiB, leak check end †", _get_in("leak", "rss_total_kib", MIB), "noop"),
        ("leak check: requests served (start / end)", _leak_counts, ""),
        ("RSS growth bytes / request (leak) †", _get_in("leak", "growth_bytes_per_request"), ""),
    ]
    c = plan["cpu_conc"]
    for proc in ("loadgen", "upstream_envoy", "gateway_envoy", "extproc", "total", "other"):
        what = "other work on the machine" if proc == "other" else proc
        label = f"CPU cores busy, {what} (Anthropic c={c})"
        out.append((label, _cores("anthropic", c, proc), ""))
    label = "other work on the machine, max cores (throughput, latency phases)"
    out.append((label, _max_other, ""))
    out.append(("load generator CPU s, all phases", _get_in("totals", "loadgen_cpu_s"), ""))
    out.append(("errors, all phases", _get_in("totals", "errors"), ""))
    return out


def _max_other(cfg: dict[str, Any]) -> float | None:
    phases = [*cfg.get("throughput", []), *cfg.get("latency", [])]
    values = [i.get("cores", {}).get("other") for i in phases]
    found = [float(v) for v in values if v is not None]
    return max(found) if found else None


def _leak_counts(cfg: dict[str, Any]) -> str | None:
    leak = cfg.get("leak")
    return f"{leak['requests_first']:,} / {leak['requests_total']:,}" if leak else None


def table(result: dict[str, Any]) -> str:
    configs: dict[str, dict[str, Any]] = result["configs"]
    names = list(configs)
    heads = [n if configs[n].get("valid") else f"{n} **INVALID**" for n in names]
    lines = ["| Figure | " + " | ".join(heads) + " |", "|---" * (len(names) + 1) + "|"]
    for label, getter, base in rows(result):
        cells = []
        for name in names:
            value = getter(configs[name])
            if isinstance(value, str):
                cells.append(value)
                continue
            cell = _fmt(value)
            ref = getter(configs[base]) if base and base in configs else None
            if value is not None and isinstance(ref, float) and ref and name != base:
                cell += f" (x{value / ref:.2f})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    plan = result["plan"]
    out = [
        f"## Gateway benchmark ({plan['mode']} mode, {result['wall_s']:.0f} s wall)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
        f"Python {m['python']}, Envoy {m['envoy']}, load generator: {result['loadgen']}"
        + (f" ({m['wrk']})" if result["loadgen"] == "wrk" and m.get("wrk") else ""),
        f"Envoy workers: gateway {plan['envoy_concurrency']}, upstream "
        f"{plan['upstream_concurrency']}; ext_proc workers: {_counts(plan)}; "
        f"{plan['duration_s']:g} s per throughput point; "
        f"streams: Anthropic {result['events']['anthropic']} events, "
        f"OpenAI {result['events']['openai']}, "
        f"Responses {result['events'].get('responses', '-')} events per response.",
        "",
        "Ratios in parentheses: to `passthrough` (Envoy without ext_proc) of the same run; "
        "rows marked † have no passthrough figure and compare with `noop`. "
        f"Throughput points measured again because other work shared the CPUs: "
        f"{result.get('retries_used', 0)} (of {plan['retries']} allowed).",
        "",
        table(result) if result["configs"] else "(burst figures not measured: --paced-only)",
        "",
    ]
    for name, cfg in result["configs"].items():
        for problem in cfg.get("problems", [])[:5]:
            out.append(f"* {name}: {problem}")
    for name, reason in result.get("skipped", {}).items():
        out.append(f"* {name}: not measured, the gateway refuses it: {reason}")
    return "\n".join(out)


def _counts(plan: dict[str, Any]) -> str:
    counts = ", ".join(str(n) for n in plan.get("extproc_workers", [1]))
    only = plan.get("workers_configs")
    return f"{counts} ({', '.join(only)}; the others 1)" if only else counts


def _paced(key: str, concurrency: int, sub: str) -> Getter:
    """A figure of a paced point: point[key][sub] at this concurrency."""

    def get(cfg: dict[str, Any]) -> float | None:
        points = cfg.get("points", [])
        point = next((p for p in points if p.get("concurrency") == concurrency), None)
        value = None if point is None else (point.get(key) or {}).get(sub)
        return float(value) if isinstance(value, int | float) else None

    return get


def _by_workers(configs: dict[str, dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Configuration name -> ext_proc worker count -> its results, for configurations
    measured with more than one count."""
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in configs.values():
        if entry.get("workers", 0) > 0:
            groups.setdefault(entry["config"], {})[entry["workers"]] = entry
    return {name: group for name, group in groups.items() if len(group) > 1}


def workers_rows(result: dict[str, Any]) -> list[tuple[str, Getter, dict[int, dict[str, Any]]]]:
    """(label, getter, results by worker count) for every line of the scaling table."""
    plan = result["plan"]
    c, oc = plan["cpu_conc"], plan["openai_conc"][0]
    burst: list[tuple[str, Getter]] = [
        (f"Anthropic req/s, c={c}", _get("throughput", "anthropic", c, "rps")),
        (f"OpenAI req/s, c={oc}", _get("throughput", "openai", oc, "rps")),
        (f"Responses req/s, c={oc}", _get("throughput", "responses", oc, "rps")),
        (
            f"ext_proc CPU s / 1k events (anthropic, c={c})",
            _get("throughput", "anthropic", c, "extproc_cpu_s_per_1k_events"),
        ),
        (f"CPU cores busy, ext_proc (Anthropic c={c})", _cores("anthropic", c, "extproc")),
        (f"CPU cores busy, all ours (Anthropic c={c})", _cores("anthropic", c, "total")),
        # Anything above ~0.05 shared the CPUs with this point: its ratio says little.
        (f"CPU cores busy, other work (Anthropic c={c})", _cores("anthropic", c, "other")),
    ]
    paced = result.get("paced", {})
    paced_rows: list[tuple[str, Getter]] = []
    for pc in paced.get("concurrencies", []):
        paced_rows += [
            (f"paced ext_proc CPU µs / event, c={pc}", _paced("cpu_us_per_event", pc, "extproc")),
            (f"paced event delay p99 ms, c={pc}", _paced("event_delay_ms", pc, "p99")),
            (f"paced ext_proc cores busy, c={pc}", _paced("cores", pc, "extproc")),
        ]
    out: list[tuple[str, Getter, dict[int, dict[str, Any]]]] = []
    for name, group in _by_workers(result["configs"]).items():
        out += [(f"{name}: {what}", getter, group) for what, getter in burst]
    for name, group in _by_workers(paced.get("configs", {})).items():
        out += [(f"{name}: {what}", getter, group) for what, getter in paced_rows]
    return out


def render_workers(result: dict[str, Any]) -> str:
    """The scaling table: each configuration measured with several ext_proc worker
    counts, a column per count, ratios to the fewest workers; "" when none was."""
    rows_ = workers_rows(result)
    if not rows_:
        return ""
    counts = sorted({n for _, _, group in rows_ for n in group})
    heads = [f"{n} worker" + ("s" if n > 1 else "") for n in counts]
    lines = [
        "## ext_proc workers",
        "",
        "Each configuration with each EXTPROC_WORKERS count, measured one after the other "
        "in this run (burst figures above, paced below them). ext_proc's CPU time and cores "
        f"are the sum over its workers. Ratios in parentheses: to {counts[0]} "
        f"worker{'s' if counts[0] > 1 else ''}.",
        "",
        "| Configuration: figure | " + " | ".join(heads) + " |",
        "|---" * (len(counts) + 1) + "|",
    ]
    for text, getter, group in rows_:
        ref = getter(group[min(group)])
        cells = []
        for n in counts:
            value = getter(group[n]) if n in group else None
            cell = _fmt(value) if not isinstance(value, str) else value
            if isinstance(value, float) and isinstance(ref, float) and ref and n != min(group):
                cell += f" (x{value / ref:.2f})"
            cells.append(cell)
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
