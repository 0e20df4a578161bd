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
        f"{plan['upstream_concurrency']}; {plan['duration_s']:g} s per throughput point; "
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
    return "\n".join(out)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
