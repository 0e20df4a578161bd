"""The measurements taken on one running configuration; each returns a JSON-ready dict."""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.checks import REWRITING, slow_problem, stream_problem
from benchmarks.client import build_request, run_requests
from benchmarks.load import MIN_BODY_SHARE, LoadResult, Target, run_load
from benchmarks.procs import (
    Pids,
    cpu_seconds,
    machine_busy_seconds,
    memory_each_kib,
    memory_kib,
    pids_of,
    reset_peak_rss,
)
from benchmarks.scenarios import Api, slow_request


@dataclass
class Running:
    """A configuration under load: where to send, which processes to watch."""

    config: str  # the configuration's name (checks.py knows rewriting ones by it)
    url: str
    # name -> pid(s): extproc (every worker), gateway_envoy, upstream_envoy
    watch: Mapping[str, Pids]
    use_wrk: bool = True
    wrk_threads: int = 1

    @property
    def extproc(self) -> Pids | None:
        """ext_proc's workers: their CPU time and memory are summed."""
        return self.watch.get("extproc")

    @property
    def extproc_pid(self) -> int | None:
        """The first ext_proc worker (py-spy follows one process)."""
        pids = self.extproc
        return None if pids is None else pids_of(pids)[0]


def target(run: Running, api: Api) -> Target:
    return Target(
        url=run.url,
        path=api.path,
        headers=api.headers(),
        body=api.request,
        terminator=api.terminator,
        # A rewriting policy may merge deltas (fewer SSE envelopes, fewer bytes); the
        # latency client checks its text exactly.
        min_len=int(len(api.stream_body) * (0.2 if run.config in REWRITING else MIN_BODY_SHARE)),
    )


def _py_spy(pid: int, duration_s: float, output: Path) -> subprocess.Popen[bytes] | None:
    """Sample ext_proc's Python stacks during a phase into a flame graph (SVG)."""
    beside = Path(sys.executable).parent / "py-spy"
    binary = str(beside) if beside.exists() else shutil.which("py-spy")
    if binary is None:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s)))]
    argv += ["--rate", "100", "--nonblocking", "--format", "flamegraph", "-o", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput(
    run: Running, api: Api, concurrency: int, duration_s: float, profile: Path | None = None
) -> dict[str, Any]:
    """req/s and SSE events/s for `duration_s` at `concurrency` (wrk or the fallback);
    with `profile`, py-spy samples ext_proc meanwhile and writes a flame graph there."""
    spy = None
    if profile is not None and run.extproc_pid is not None:
        spy = _py_spy(run.extproc_pid, duration_s, profile)
    res = run_load(
        target(run, api),
        concurrency,
        duration_s=duration_s,
        threads=run.wrk_threads,
        use_wrk=run.use_wrk,
        watch=run.watch,
    )
    if spy is not None:
        # Waited for only now, so its CPU time is not counted as the load generator's.
        spy.wait()
    events = res.ok * api.events
    out: dict[str, Any] = {
        "api": api.name,
        **res.to_dict(),
        "events_per_response": api.events,
        "events_per_s": events / res.duration_s if res.duration_s else 0.0,
        # CPU cores each process kept busy on average (cpu seconds / wall seconds).
        "cores": {k: v / res.duration_s for k, v in res.cpu_s.items()} if res.duration_s else {},
    }
    if res.duration_s:
        cores = out["cores"]
        cores["loadgen"] = res.loadgen_cpu_s / res.duration_s
        # Everything else the machine did meanwhile (other users, the harness itself).
        others = res.machine_busy_s - res.loadgen_cpu_s - sum(res.cpu_s.values())
        cores["other"] = max(0.0, others / res.duration_s)
    if "extproc" in res.cpu_s and events:
        out["extproc_cpu_s_per_1k_events"] = res.cpu_s["extproc"] / events * 1000
    if spy is not None and profile is not None and profile.exists():
        out["profile"] = str(profile)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency(run: Running, api: Api, concurrency: int, count: int) -> dict[str, Any]:
    """TTFB / TTLB percentiles of `count` requests with an async client; every body checked."""
    raw = build_request(run.url, api.path, api.headers(), api.request)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    ours0 = sum(cpu_seconds(pid) for pid in run.watch.values())
    busy0 = machine_busy_seconds()
    started = time.monotonic()
    responses, errors = asyncio.run(run_requests(run.url, raw, count, concurrency))
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = usage1.ru_utime - usage0.ru_utime + usage1.ru_stime - usage0.ru_stime
    ours = sum(cpu_seconds(pid) for pid in run.watch.values()) - ours0 + client_cpu
    other = max(0.0, machine_busy_seconds() - busy0 - ours) / wall if wall else 0.0
    problems = list(errors)
    for resp in responses:
        problem = stream_problem(api, resp.status, resp.body, run.config)
        if problem is not None:
            problems.append(problem)
    ttfb = [r.ttfb * 1000 for r in responses]
    ttlb = [r.ttlb * 1000 for r in responses]
    return {
        "api": api.name,
        "concurrency": concurrency,
        "requests": count,
        "completed": len(responses),
        "errors": len(problems),
        "error_samples": sorted(set(problems))[:5],
        "ttfb_p50_ms": _pct(ttfb, 50),
        "ttfb_p99_ms": _pct(ttfb, 99),
        "ttlb_p50_ms": _pct(ttlb, 50),
        "ttlb_p99_ms": _pct(ttlb, 99),
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "cores": {"other": other},
    }


async def _slow(url: str, raw: bytes, count: int, pid: Pids) -> tuple[Any, ...]:
    peak = 0
    done = False

    async def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, memory_kib(pid)["VmRSS"])
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        responses, errors = await run_requests(url, raw, count, count, per_request_s=120)
    finally:
        done = True
        await sampler
    return responses, errors, peak


def slow_streams(run: Running, count: int, delay_ms: int) -> dict[str, Any]:
    """Peak RSS of ext_proc while `count` slow streams (mock LLM, one event every
    `delay_ms`) are open at the same time; of several workers, the sums (sampled: of
    simultaneous readings) and each worker's figures under `per_worker`."""
    pid = run.extproc
    assert pid is not None
    headers = {
        "content-type": "application/json",
        "x-api-key": "sk-luthien-dev-key",
        "x-gateway-upstream": "anthropic",
        "x-mock-chunk-delay-ms": str(delay_ms),
    }
    raw = build_request(run.url, "/v1/messages", headers, slow_request())
    before = memory_kib(pid)
    hwm_reset = reset_peak_rss(pid)
    responses, errors, peak = asyncio.run(_slow(run.url, raw, count, pid))
    after = memory_kib(pid)
    each = memory_each_kib(pid)
    problems = list(errors)
    for resp in responses:
        problem = slow_problem(resp.status, resp.body)
        if problem is not None:
            problems.append(problem)
    # All open at once: the last stream started before the first one ended.
    overlap = bool(responses) and max(r.started for r in responses) < min(
        r.ended for r in responses
    )
    peak_kib = max(peak, after["VmHWM"]) if hwm_reset else peak
    return {
        "streams": count,
        "chunk_delay_ms": delay_ms,
        "completed": len(responses),
        "errors": len(problems),
        "error_samples": sorted(set(problems))[:5],
        "all_open_at_once": overlap,
        "stream_s_p50": _pct([r.ttlb for r in responses], 50),
        "rss_before_kib": before["VmRSS"],
        "peak_rss_kib": peak_kib,
        "peak_rss_sampled_kib": peak,
        "vmhwm_after_kib": after["VmHWM"],
        "vmhwm_was_reset": hwm_reset,
        "rss_after_kib": after["VmRSS"],
        "kib_per_stream": (peak_kib - before["VmRSS"]) / count if count else 0.0,
        "per_worker": [{"rss_after_kib": m["VmRSS"], "vmhwm_after_kib": m["VmHWM"]} for m in each],
    }


def _settled_rss(pid: Pids) -> int:
    time.sleep(0.3)  # let the last streams finish and their frames go
    return memory_kib(pid)["VmRSS"]


def leak(
    run: Running, api: Api, first: int, total: int, budget_s: float, concurrency: int = 16
) -> dict[str, Any]:
    """RSS after `first` requests and after `total` (the second part capped at `budget_s`);
    of several workers, the sum."""
    pid = run.extproc
    assert pid is not None
    tgt = target(run, api)

    def load(requests: int, max_duration_s: float) -> LoadResult:
        return run_load(
            tgt,
            concurrency,
            requests=requests,
            max_duration_s=max_duration_s,
            threads=run.wrk_threads,
            use_wrk=run.use_wrk,
            watch=run.watch,
        )

    one = load(first, 3600)
    rss_first = _settled_rss(pid)
    two = load(max(1, total - one.ok - one.bad), budget_s)
    rss_total = _settled_rss(pid)
    done_first = one.ok + one.bad
    done_total = done_first + two.ok + two.bad
    growth = rss_total - rss_first
    return {
        "api": api.name,
        "concurrency": concurrency,
        "requests_first": done_first,
        "requests_total": done_total,
        "target_total": total,
        "budget_s": budget_s,
        "rss_first_kib": rss_first,
        "rss_total_kib": rss_total,
        "growth_kib": growth,
        "growth_bytes_per_request": growth * 1024 / max(1, done_total - done_first),
        "errors": one.errors + two.errors,
        "bad": one.bad + two.bad,
        "socket_errors": {
            k: one.socket_errors.get(k, 0) + two.socket_errors.get(k, 0)
            for k in {*one.socket_errors, *two.socket_errors}
        },
        "phases": [one.to_dict(), two.to_dict()],
    }
