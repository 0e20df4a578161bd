"""The paced-stream benchmark: every SSE event sent on its own, at a provider's pace.

A C upstream (`native/paced_upstream.c`) writes each event of an Anthropic stream as its
own HTTP chunk, one every `interval` ms, stamped with its scheduled send time (a `: t=`
comment line in front of the event). A C client (`native/paced_client.c`) keeps N
streams open through a configuration and times every event on arrival. Python starts
the processes, reads CPU time and Envoy's ext_proc counters at the edges of the
measured window, and turns the client's figures into the JSON (`paced_report.py` adds
the comparisons with passthrough and the table).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gateway import BenchTarget, Config, label, refusal, worker_counts
from benchmarks.paced_tools import PacedStream, PacedUpstream, build_tools
from benchmarks.plans import Plan
from benchmarks.procs import Pids, cpu_seconds, machine_busy_seconds, memory_kib, pids_of
from extproc.contract import DEFAULT_MAX_STREAMS

# Envoy's ext_proc counters (http.<stat prefix>.ext_proc.*): messages Envoy sent to
# ext_proc (what ext_proc received) and the replies it got back.
TO_EXTPROC = "stream_msgs_sent"
FROM_EXTPROC = "stream_msgs_received"
ADDED_P99_LIMIT_MS = 5.0

Log = Callable[[str], None]


def extproc_counters(admin_url: str) -> dict[str, int]:
    """Envoy's `http.*.ext_proc.*` counters, by their last name part; {} without admin."""
    if not admin_url:
        return {}
    with urllib.request.urlopen(f"{admin_url}/stats?filter=ext_proc", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and ".ext_proc." in name and value.strip().isdigit():
            short = name.rsplit(".ext_proc.", 1)[1]
            out[short] = out.get(short, 0) + int(value)
    return out


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    busy: float
    counters: dict[str, int]


def _cpu_one(pid: int) -> float:
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):  # a thread just ended
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        total = 0
    return total / 1e9 if total else cpu_seconds(pid)


def cpu_s(pids: Pids) -> float:
    """CPU time of a process's threads with ns resolution (/proc/<pid>/task/*/schedstat;
    /proc/<pid>/stat counts 10 ms ticks, coarse for a few seconds of light load); of
    several processes (ext_proc workers), their sum."""
    return sum(_cpu_one(pid) for pid in pids_of(pids))


def _snapshot(watch: dict[str, Pids], admin_url: str) -> Snapshot:
    cpu = {name: cpu_s(pid) for name, pid in watch.items()}
    return Snapshot(time.monotonic(), cpu, machine_busy_seconds(), extproc_counters(admin_url))


def _ms(figures: dict[str, Any]) -> dict[str, float | None]:
    """Client figures in us -> ms; None without samples (e.g. no stream started in a
    window where the gateway could not keep up)."""
    count = figures["count"]
    return {k: v / 1000 if count else None for k, v in figures.items() if k != "count"} | {
        "count": count
    }


def _per(value: float, count: int, scale: float = 1e6) -> float | None:
    return value * scale / count if count else None


def measure_point(
    client: Path,
    stream: PacedStream,
    upstream: PacedUpstream,
    gw: BenchTarget,
    concurrency: int,
    plan: Plan,
    files: dict[str, str],
    out_dir: Path,
) -> dict[str, Any]:
    """N streams through one running configuration; the figures of the window. With
    several ext_proc workers, its CPU time and RSS are their sums."""
    watch: dict[str, Pids] = {"upstream": upstream.pid}
    if gw.envoy_pid is not None:
        watch["gateway_envoy"] = gw.envoy_pid
    if gw.extproc:
        watch["extproc"] = gw.extproc
    result_file = out_dir / f"client-c{concurrency}.json"
    argv = [str(client), "--port", str(int(gw.url.rsplit(":", 1)[1]))]
    argv += ["--streams", str(concurrency), "--out", str(result_file)]
    argv += ["--ramp-s", f"{stream.duration_s:.3f}", "--hold-s", str(plan.paced_hold_s)]
    argv += ["--timeout-s", str(plan.paced_timeout_s)]
    for key, value in files.items():
        argv += [key, value]
    before = extproc_counters(gw.admin_url)
    problems: list[str] = []
    marks: dict[str, Snapshot] = {}
    late: dict[str, Any] = {}
    rss_kib = None
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        watch["client"] = proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        for raw in proc.stdout:
            line = raw.decode().strip()
            if line == "ramped":
                upstream.stats(reset=True)
                marks["ramped"] = _snapshot(watch, gw.admin_url)
            elif line == "held":
                marks["held"] = _snapshot(watch, gw.admin_url)
                late = upstream.stats(reset=True)["late_us"]
                if gw.extproc:
                    rss_kib = memory_kib(gw.extproc)["VmRSS"]
            elif line == "done":
                break
        try:
            proc.wait(timeout=plan.paced_timeout_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            problems.append("client did not finish")
        stderr = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0 or len(marks) < 2 or not result_file.exists():
        problems.append(f"client failed (exit {proc.returncode}): {stderr[-500:]}")
        return {"concurrency": concurrency, "problems": problems, "errors": 1}
    figures = json.loads(result_file.read_text())
    after = extproc_counters(gw.admin_url)
    a, b = marks["ramped"], marks["held"]
    window_s = b.at - a.at
    win = figures["window"]
    events = int(win["upstream_events"])
    cpu = {name: b.cpu[name] - a.cpu[name] for name in a.cpu}
    cores = {name: value / window_s for name, value in cpu.items()}
    cores["other"] = max(0.0, (b.busy - a.busy - sum(cpu.values())) / window_s)
    responses = int(figures["ok"]) + int(figures["bad"])
    point: dict[str, Any] = {
        "concurrency": concurrency,
        "window_s": window_s,
        "streams": {k: figures[k] for k in ("started", "ok", "bad")},
        "streams_in_window": win["streams"],
        "errors": int(figures["bad"]) + sum(figures["errors"].values()),
        "error_kinds": {k: v for k, v in figures["errors"].items() if v},
        "error_samples": figures["error_samples"],
        "events_in_window": events,
        "received_events_in_window": win["events"],
        "delay_measured": {k: win[k] for k in ("stamped", "by_text", "unmeasured")},
        "event_delay_ms": _ms(win["delay_us"]),
        "event_delay_from_write_ms": _ms(win["from_write_us"]),
        "ttfb_ms": _ms(win["ttfb_us"]),
        # Every correct stream of the point, ramp and drain included: request -> last byte.
        "stream_ms": _ms(figures["stream_us"]),
        "cpu_s": cpu,
        "cores": cores,
        "cpu_us_per_event": {name: _per(value, events) for name, value in cpu.items()},
        "upstream_late_us": late,
        "client_cpu_s_total": figures["cpu_s"],
        "extproc_rss_kib": rss_kib,
        "problems": problems,
    }
    if gw.extproc:
        to_ext = b.counters.get(TO_EXTPROC, 0) - a.counters.get(TO_EXTPROC, 0)
        from_ext = b.counters.get(FROM_EXTPROC, 0) - a.counters.get(FROM_EXTPROC, 0)
        point["extproc_messages_in_window"] = {"received": to_ext, "sent": from_ext}
        point["extproc_cpu_us_per_message"] = _per(cpu["extproc"], to_ext + from_ext)
        counters = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        point["envoy_ext_proc_counters"] = {k: v for k, v in counters.items() if v}
        point["extproc_messages_per_response"] = {
            "received": counters.get(TO_EXTPROC, 0) / responses if responses else None,
            "sent": counters.get(FROM_EXTPROC, 0) / responses if responses else None,
        }
    if point["errors"]:
        kinds = ", ".join(f"{v} {k}" for k, v in point["error_kinds"].items())
        problems.append(f"{point['errors']} errors ({kinds}): " + "; ".join(point["error_samples"]))
    if not win["delay_us"]["count"]:
        problems.append("no event timed in the window")
    elif win["unmeasured"] > 0.01 * win["events"]:
        problems.append(f"{win['unmeasured']} of {win['events']} events could not be timed")
    return point


def paced_section(plan: Plan) -> tuple[PacedStream, int, dict[str, Any]]:
    """The stream every paced point sends, the stream limit ext_proc gets, and the head
    of the JSON section `paced` (its `configs` still empty)."""
    stream = PacedStream.make(plan.paced_chunks, plan.paced_interval_ms)
    max_streams = max(DEFAULT_MAX_STREAMS, 2 * max(plan.paced_conc))
    section: dict[str, Any] = {
        "concurrencies": list(plan.paced_conc),
        "events_per_stream": stream.events,
        "interval_ms": stream.interval_ms,
        "stream_s": stream.duration_s,
        "ramp_s": stream.duration_s,
        "hold_s": plan.paced_hold_s,
        "extproc_max_streams": max_streams,
        "added_p99_limit_ms": ADDED_P99_LIMIT_MS,
        "configs": {},
    }
    return stream, max_streams, section


def _paced_config(
    cfg: Config,
    workers: int,
    plan: Plan,
    run_dir: Path,
    stream: PacedStream,
    upstream: PacedUpstream,
    tools: dict[str, Path],
    max_streams: int,
    log: Log,
) -> dict[str, Any]:
    """One configuration with `workers` ext_proc processes (0: none) at every
    concurrency; `skipped` when the gateway refuses that combination."""
    name = label(cfg.name, workers)
    out: dict[str, Any] = {"description": cfg.description, "config": cfg.name}
    out.update(workers=workers, points=[], problems=[])
    gw = BenchTarget(
        cfg, upstream, run_dir / "paced", plan.envoy_concurrency, max_streams, max(1, workers)
    )
    # Stream files and client results per label: `noop x2` must not overwrite `noop`'s.
    out_dir = run_dir / "paced" / (cfg.name if workers <= 1 else f"{cfg.name}-x{workers}")
    try:
        gw.start()
        files = stream.client_files(out_dir, gw.url, cfg.name)
        for c in plan.paced_conc:
            point = measure_point(
                tools["paced_client"], stream, upstream, gw, c, plan, files, out_dir
            )
            out["points"].append(point)
            out["problems"] += [f"c={c}: {p}" for p in point["problems"]]
            if "event_delay_ms" in point:
                d, t = point["event_delay_ms"], point["ttfb_ms"]
                log(
                    f"paced {name} c={c}: event delay p50 {d['p50']} ms, "
                    f"p99 {d['p99']} ms; TTFB p99 {t['p99']} ms; "
                    f"{point['errors']} errors"
                )
        gw.check_alive()
    except Exception as exc:  # one broken configuration must not hide the others
        reason = refusal(exc, gw)
        if reason is not None:
            return {**out, "skipped": reason}
        out["problems"].append(f"{type(exc).__name__}: {exc}")
    finally:
        gw.stop()
    out["errors"] = sum(p.get("errors", 0) for p in out["points"])
    out["valid"] = not out["problems"]
    return out


def bench_paced(plan: Plan, run_dir: Path, configs: list[Config], log: Log) -> dict[str, Any]:
    """Every configuration (with each ext_proc worker count) at every concurrency; the
    JSON section `paced`."""
    started = time.monotonic()
    stream, max_streams, section = paced_section(plan)
    section["problems"] = []
    # Configuration x worker count the gateway refuses (label -> why): not measured.
    section["skipped"] = {}
    try:
        tools = build_tools()
    except (OSError, RuntimeError) as exc:  # no compiler: the burst figures still count
        section["problems"].append(f"the C tools could not be built: {exc}")
        section["wall_s"] = time.monotonic() - started
        return section
    upstream = PacedUpstream(run_dir, tools["paced_upstream"], stream)
    upstream.start()
    try:
        for cfg in configs:
            for workers in worker_counts(cfg, plan.extproc_workers, plan.workers_configs):
                name = label(cfg.name, workers)
                log(f"paced {name}: {cfg.description}")
                out = _paced_config(
                    cfg, workers, plan, run_dir, stream, upstream, tools, max_streams, log
                )
                if "skipped" in out:
                    log(f"paced {name}: not measured: {out['skipped']}")
                    section["skipped"][name] = out["skipped"]
                else:
                    section["configs"][name] = out
    finally:
        upstream.stop()
    section["wall_s"] = time.monotonic() - started
    return section
