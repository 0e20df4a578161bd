"""The gateway next to LiteLLM, in one run: `python -m benchmarks.peers` (`make bench-peers`).

Rows: Envoy without ext_proc (passthrough), the gateway's noop, noop_streamed and
string_replacement configurations, and the LiteLLM proxy without and with a streaming
output guardrail doing string_replacement's work. Each is started in turn in front of
the harness's fast upstream and measured with the harness's own phases: wrk (its Lua
checks) at c=16 on the Anthropic and OpenAI chat streams, TTFB at c=1 and a c=16 phase
of the async client that checks every body (event count, text, terminator), during
which the proxy's CPU time is read. Then the paced streams (`paced.py`'s C upstream and
client) through each. One markdown table to stdout, every raw figure to
benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import paced_report, report, scenarios
from benchmarks.checks import stream_text
from benchmarks.gateway import BenchTarget, Config, Upstream, configurations
from benchmarks.load import run_load, wrk_available
from benchmarks.measure import Running, latency, target
from benchmarks.paced import (
    PacedUpstream,
    build_tools,
    measure_point,
    paced_section,
)
from benchmarks.peers import litellm_proxy, peers_report
from benchmarks.peers.litellm_proxy import LiteLLMTarget
from benchmarks.plans import MODES, Plan
from benchmarks.procs import CLK_TCK, Pids, pids_of
from benchmarks.run import Budget, _phase_problems, _point
from benchmarks.upstream import FastUpstream

RESULTS = Path(__file__).resolve().parent.parent / "results"
OURS = ("passthrough", "noop", "noop_streamed", "string_replacement")
PEERS = ("litellm", "litellm_guardrail")
# How each row's answers are checked (benchmarks.checks, by configuration name): the
# LiteLLM guardrail rewrites the text as string_replacement does (and may re-split it);
# plain LiteLLM must deliver every event and the text unchanged.
CHECK_AS = {"litellm": "passthrough", "litellm_guardrail": "string_replacement"}
APIS = ("anthropic", "openai")
PEER_WARMUP = 20  # warm-up requests per API for LiteLLM (its first ones import code)


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    plan: Plan
    concurrency: int
    latency_requests: int  # TTFB at c=1 (Anthropic)
    # Requests per API at c=concurrency, every body checked, the proxy's CPU read around
    # them: ours, and LiteLLM's (fewer: it serves a few per second; CPU is read in 10 ms
    # ticks, so ours need many).
    check_requests: int
    peer_check_requests: int
    # wrk seconds per point for LiteLLM: at a few req/s and c=16 a request takes seconds,
    # and a short point would count mostly the first, synchronized round.
    peer_duration_s: float
    configs: tuple[str, ...]
    burst: bool
    paced: bool
    output: Path
    keep_logs: bool

    @property
    def use_wrk(self) -> bool:
        return self.plan.wrk_threads > 0 and wrk_available()


def proxy_watch(tgt: BenchTarget) -> dict[str, int]:
    """The processes that make up the proxy under test (their CPU is the proxy's)."""
    if isinstance(tgt, LiteLLMTarget):
        return tgt.watch()
    out: dict[str, int] = {}
    if tgt.envoy_pid is not None:
        out["gateway_envoy"] = tgt.envoy_pid
    if tgt.extproc_pid is not None:
        out["extproc"] = tgt.extproc_pid
    return out


def is_proxy(name: str) -> bool:
    return name in ("gateway_envoy", "extproc") or name.startswith("litellm")


def process_cpu(pids: Pids) -> float:
    """CPU seconds of a process: every thread, those that ended included (utime + stime
    of /proc/<pid>/stat), and its waited-for children (cutime + cstime). LiteLLM's worker
    threads (anyio's) end after 10 s idle: a sum over live threads would lose their time.
    Of several processes (ext_proc workers), the sum."""
    total = 0
    for pid in pids_of(pids):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def settled_cpu(
    pids: Mapping[str, Pids], step_s: float = 0.3, max_s: float = 10.0
) -> dict[str, float]:
    """process_cpu of each process once they are idle (less than 2 ticks in `step_s`):
    work a proxy defers past its last response (logging, accounting) is counted."""
    last = {k: process_cpu(pid) for k, pid in pids.items()}
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        time.sleep(step_s)
        now = {k: process_cpu(pid) for k, pid in pids.items()}
        if sum(now.values()) - sum(last.values()) < 2 / CLK_TCK:
            return now
        last = now
    return last


def _checked(run: Running, api: scenarios.Api, conc: int, count: int) -> dict[str, Any]:
    """`count` requests with the async client, every body checked; the proxy's CPU time
    for them (read while it is idle before and after), per request and per upstream
    event."""
    proxy = {k: pid for k, pid in run.watch.items() if is_proxy(k)}
    before = settled_cpu(proxy)
    item = latency(run, api, conc, count)
    after = settled_cpu(proxy)
    used = {k: after[k] - before[k] for k in proxy}
    done = item["completed"]
    total = sum(used.values())
    item["proxy_cpu_s"] = used
    item["proxy_cpu_ms_per_request"] = total * 1e3 / done if done else None
    item["proxy_cpu_us_per_event"] = total * 1e6 / (done * api.events) if done else None
    item["events_per_response"] = api.events
    return item


def _text_deltas(api: scenarios.Api) -> int:
    return sum(1 for event in api.stream_events if stream_text(api.name, event))


# What the guardrail's hook is given: LiteLLM's parsed chunks on the OpenAI chat route,
# the upstream's raw SSE bytes on the Anthropic one.
HOOK_KINDS = {"anthropic": "sse_bytes", "openai": "chunk_objects"}


def hook_proof(
    stats: dict[str, Any], good: dict[str, int], apis: dict[str, scenarios.Api]
) -> tuple[dict[str, Any], list[str]]:
    """Did the guardrail's hook see every stream (at least as many as were answered
    correctly: `good` per API), and every text delta of each, replacing every match?"""
    proof: dict[str, Any] = {"counters": stats.get("kinds", {})}
    problems: list[str] = []
    for name, count in good.items():
        api = apis[name]
        want_deltas = _text_deltas(api)
        want_replaced = api.text.count(scenarios.MATCH_WORD)
        seen = proof["counters"].get(HOOK_KINDS[name])
        proof[name] = {"good_responses": count, "text_deltas_per_stream": want_deltas,
                       "replacements_per_stream": want_replaced}  # fmt: skip
        if not seen:
            problems.append(f"guardrail hook: no {name} stream counted")
            continue
        proof[name]["hook_streams"] = seen["streams"]
        if seen["streams"] < count:
            problems.append(f"guardrail hook: {seen['streams']} {name} streams, {count} answered")
        for key, want in (("text_deltas", want_deltas), ("replaced", want_replaced)):
            low, high = seen[f"min_{key}_per_stream"], seen[f"max_{key}_per_stream"]
            if low != want or high != want:
                problems.append(
                    f"guardrail hook: {name} {key} per stream {low}..{high}, not {want}"
                )
    return proof, problems


def _good(out: dict[str, Any], api: str) -> int:
    """Correct answers the clients received in the burst phases of one configuration."""
    count = sum(i["ok"] for i in out["warmup"] + out["throughput"] + out["discarded"]
                if i["api"] == api)  # fmt: skip
    count += sum(i["completed"] - i["errors"] for i in out["latency"] + out["checks"]
                 if i["api"] == api)  # fmt: skip
    return count


def bench_burst(
    tgt: BenchTarget,
    check_as: str,
    apis: dict[str, scenarios.Api],
    settings: Settings,
    budget: Budget,
    upstream: FastUpstream,
) -> dict[str, Any]:
    plan = settings.plan
    out: dict[str, Any] = {"description": tgt.config.description, "check_as": check_as}
    out.update(warmup=[], throughput=[], discarded=[], latency=[], checks=[], problems=[])
    name = tgt.config.name
    try:
        tgt.start()
        watch = {**proxy_watch(tgt), "upstream_envoy": upstream.envoy_pid}
        out["processes"] = sorted(watch)
        peer = isinstance(tgt, LiteLLMTarget)
        if peer:
            out["litellm_version"] = litellm_proxy.installed_version()
            # Longer points, fewer warm-up requests: it serves a few per second.
            plan = replace(
                plan,
                duration_s=max(plan.duration_s, settings.peer_duration_s),
                warmup_requests=min(plan.warmup_requests, PEER_WARMUP),
            )
        run = Running(check_as, tgt.url, watch, settings.use_wrk, max(1, plan.wrk_threads))
        for api in apis.values():  # warm-up: connections, lazy imports, caches
            warm = run_load(
                target(run, api), 4, requests=plan.warmup_requests, use_wrk=settings.use_wrk
            )
            out["warmup"].append({"api": api.name, **warm.to_dict()})
        c = settings.concurrency
        for api in apis.values():
            settled_cpu(proxy_watch(tgt))  # nothing left over from the phase before
            item = _point(run, api, c, plan, None, out["discarded"], budget)
            out["throughput"].append(item)
            log(f"{name}: {api.name} c={c}: {item['rps']:.0f} req/s, {item['errors']} errors")
        item = latency(run, apis["anthropic"], 1, settings.latency_requests)
        out["latency"].append(item)
        log(f"{name}: TTFB p50 c=1 {item['ttfb_p50_ms']:.2f} ms")
        for api in apis.values():
            count = settings.peer_check_requests if peer else settings.check_requests
            item = _checked(run, api, c, count)
            out["checks"].append(item)
            log(
                f"{name}: {api.name} {item['completed']} checked at c={c}: "
                f"{item['errors']} errors, {item['proxy_cpu_ms_per_request'] or 0:.2f} "
                "ms proxy CPU / request"
            )
        tgt.check_alive()
        if isinstance(tgt, LiteLLMTarget) and tgt.guardrail:
            good = {name: _good(out, name) for name in apis}
            out["guardrail_hook"], problems = hook_proof(tgt.guardrail_stats(), good, apis)
            out["problems"] += problems
    except Exception as exc:  # one broken configuration must not hide the others
        out["problems"].append(f"{type(exc).__name__}: {exc}")
    finally:
        tgt.stop()
    _summarize(out)
    return out


def _summarize(out: dict[str, Any]) -> None:
    phases = [*out["warmup"], *out["throughput"], *out["discarded"], *out["latency"]]
    phases += out["checks"]
    for item in phases:
        where = f"{item['api']} c={item['concurrency']}"
        out["problems"] += _phase_problems(where, item)
    for item in out["throughput"]:
        proxy = sum(v for k, v in item.get("cpu_s", {}).items() if is_proxy(k))
        ok, events = item["ok"], item["ok"] * item["events_per_response"]
        # wrk's figure: includes the work on requests still open when wrk stopped.
        item["proxy_cpu_ms_per_request"] = proxy * 1e3 / ok if ok else None
        item["proxy_cpu_us_per_event"] = proxy * 1e6 / events if events else None
    out["errors"] = sum(i["errors"] for i in phases)
    out["valid"] = not out["problems"]


def make_target(
    cfg: Config,
    upstream: Upstream,
    run_dir: Path,
    apis: dict[str, scenarios.Api],
    max_streams: int | None = None,
) -> BenchTarget:
    if cfg.name in PEERS:
        return LiteLLMTarget(
            cfg,
            upstream,
            run_dir,
            guardrail=cfg.name == "litellm_guardrail",
            anthropic=apis["anthropic"],
            openai=apis.get("openai"),
        )
    return BenchTarget(cfg, upstream, run_dir, max_streams=max_streams)


def _rename_proxy(point: dict[str, Any]) -> None:
    """measure_point records the process in Envoy's place as gateway_envoy: for LiteLLM
    that is LiteLLM."""
    for key in ("cpu_s", "cores", "cpu_us_per_event"):
        values = point.get(key)
        if isinstance(values, dict) and "gateway_envoy" in values:
            values["litellm"] = values.pop("gateway_envoy")


def bench_paced(
    settings: Settings, run_dir: Path, configs: list[Config], say: Callable[[str], None]
) -> dict[str, Any]:
    """Every configuration at every paced concurrency, in paced.py's JSON shape."""
    plan = settings.plan
    started = time.monotonic()
    tools = build_tools()
    stream, max_streams, section = paced_section(plan)
    upstream = PacedUpstream(run_dir, tools["paced_upstream"], stream)
    upstream.start()
    try:
        for cfg in configs:
            check_as = CHECK_AS.get(cfg.name, cfg.name)
            out: dict[str, Any] = {"description": cfg.description, "check_as": check_as}
            out.update(points=[], problems=[])
            work = run_dir / "paced"
            tgt = make_target(cfg, upstream, work, {"anthropic": stream.api}, max_streams)
            try:
                tgt.start()
                files = stream.client_files(work / cfg.name, tgt.url, check_as)
                proxy = proxy_watch(tgt)
                for c in plan.paced_conc:
                    cpu0, events0 = settled_cpu(proxy), upstream.stats()["events"]
                    point = measure_point(
                        tools["paced_client"], stream, upstream, tgt, c, plan, files,
                        work / cfg.name,
                    )  # fmt: skip
                    cpu1, events1 = settled_cpu(proxy), upstream.stats()["events"]
                    if isinstance(tgt, LiteLLMTarget):
                        _rename_proxy(point)
                    # The whole point (ramp, hold, drain): measure_point's window figures
                    # sum the CPU of live threads, and LiteLLM's worker threads come and go.
                    events = events1 - events0
                    used = {k: cpu1[k] - cpu0[k] for k in proxy}
                    point["proxy_cpu_s_whole_point"] = used
                    point["upstream_events_whole_point"] = events
                    point["proxy_cpu_us_per_event"] = (
                        sum(used.values()) * 1e6 / events if events else None
                    )
                    out["points"].append(point)
                    out["problems"] += [f"c={c}: {p}" for p in point["problems"]]
                    if "event_delay_ms" in point:
                        d = point["event_delay_ms"]
                        say(
                            f"paced {cfg.name} c={c}: event delay p50 {d['p50']} ms, p99 "
                            f"{d['p99']} ms; {point['errors']} errors"
                        )
                tgt.check_alive()
                if isinstance(tgt, LiteLLMTarget) and tgt.guardrail:
                    good = {
                        "anthropic": sum(p.get("streams", {}).get("ok", 0) for p in out["points"])
                    }
                    apis = {"anthropic": stream.api}
                    out["guardrail_hook"], problems = hook_proof(tgt.guardrail_stats(), good, apis)
                    out["problems"] += problems
            except Exception as exc:  # one broken configuration must not hide the others
                out["problems"].append(f"{type(exc).__name__}: {exc}")
            finally:
                tgt.stop()
            out["errors"] = sum(p.get("errors", 0) for p in out["points"])
            out["valid"] = not out["problems"]
            section["configs"][cfg.name] = out
    finally:
        upstream.stop()
    section["wall_s"] = time.monotonic() - started
    paced_report.summarize(section)
    return section


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 s points, fewer requests")
    parser.add_argument("--duration", type=float, help="seconds per wrk point (5; quick 2)")
    parser.add_argument(
        "--peer-duration", type=float, help="seconds per wrk point for LiteLLM (15; quick 6)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="throughput connections")
    parser.add_argument("--latency-requests", type=int, help="TTFB requests at c=1 (200)")
    parser.add_argument(
        "--check-requests", type=int, help="checked requests per API, ours (2000; quick 500)"
    )
    parser.add_argument(
        "--peer-check-requests", type=int, help="checked requests per API, LiteLLM (160; quick 48)"
    )
    parser.add_argument("--warmup", type=int, help="warm-up requests per API (100)")
    parser.add_argument("--configs", help=f"comma-separated subset of {','.join(OURS + PEERS)}")
    paced = parser.add_mutually_exclusive_group()
    paced.add_argument("--no-paced", action="store_true", help="skip the paced streams")
    paced.add_argument("--paced-only", action="store_true", help="only the paced streams")
    parser.add_argument("--paced-conc", help="comma-separated paced concurrencies (64)")
    parser.add_argument("--paced-hold", type=float, help="seconds measured per paced point")
    parser.add_argument("--paced-events", type=int, help="text deltas per paced stream (200)")
    parser.add_argument("--paced-interval", type=float, help="ms between paced events (20)")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--retries", type=int, help="re-measured disturbed points (6)")
    parser.add_argument("--output", type=Path, default=RESULTS / "peers.json")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    plan = MODES["quick" if args.quick else "full"]
    plan = replace(
        plan,
        duration_s=args.duration or plan.duration_s,
        wrk_threads=0 if args.no_wrk else args.wrk_threads,
        warmup_requests=args.warmup or plan.warmup_requests,
        retries=plan.retries if args.retries is None else args.retries,
        paced_conc=tuple(int(c) for c in (args.paced_conc or "64").split(",")),
        paced_hold_s=args.paced_hold or plan.paced_hold_s,
        paced_chunks=args.paced_events or plan.paced_chunks,
        paced_interval_ms=args.paced_interval or plan.paced_interval_ms,
    )
    configs = tuple(args.configs.split(",")) if args.configs else OURS + PEERS
    unknown = set(configs) - set(OURS + PEERS)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    return Settings(
        plan=plan,
        concurrency=args.concurrency,
        latency_requests=args.latency_requests or (50 if args.quick else 200),
        check_requests=args.check_requests or (500 if args.quick else 2000),
        peer_check_requests=args.peer_check_requests or (48 if args.quick else 160),
        peer_duration_s=args.peer_duration or (6.0 if args.quick else 15.0),
        configs=configs,
        burst=not args.paced_only,
        paced=not args.no_paced,
        output=args.output,
        keep_logs=args.keep_logs,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    plan = settings.plan
    version = None
    if any(c in PEERS for c in settings.configs):
        version = litellm_proxy.check_venv()
    started = time.monotonic()
    all_apis = scenarios.apis()
    apis = {name: all_apis[name] for name in APIS}
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-peers-"))
    ours = configurations(scenarios.write_policy_files(run_dir / "policies"))
    by_name = {c.name: c for c in [*ours, *litellm_proxy.litellm_configs()]}
    configs = [by_name[name] for name in OURS + PEERS if name in settings.configs]
    loadgen = "wrk" if settings.use_wrk else "python"
    log(f"load generator {loadgen}, LiteLLM {version or '-'}, logs in {run_dir}")
    result: dict[str, Any] = {
        "settings": {**asdict(settings), "output": str(settings.output)},
        "machine": report.machine(),
        "loadgen": loadgen,
        "litellm": {
            "version": version,
            "pin": litellm_proxy.pinned(),
            "workers": 1,
            "environment": litellm_proxy.environment_note(),
        },
        "events": {name: api.events for name, api in apis.items()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "configs": {},
    }
    budget = Budget(plan.retries)
    if settings.burst:
        upstream = FastUpstream(run_dir, apis, concurrency=plan.upstream_concurrency)
        upstream.start()
        try:
            for cfg in configs:
                log(f"{cfg.name}: {cfg.description}")
                tgt = make_target(cfg, upstream, run_dir, apis)
                check_as = CHECK_AS.get(cfg.name, cfg.name)
                result["configs"][cfg.name] = bench_burst(
                    tgt, check_as, apis, settings, budget, upstream
                )
        finally:
            upstream.stop()
    if settings.paced:
        result["paced"] = bench_paced(settings, run_dir, configs, log)
    result["wall_s"] = time.monotonic() - started
    result["retries_used"] = plan.retries - budget.retries
    report.write_json(result, settings.output)
    print(peers_report.render(result))
    print(f"\nraw figures: {settings.output}")
    valid = all(c["valid"] for c in result["configs"].values())
    valid = valid and all(c["valid"] for c in result.get("paced", {}).get("configs", {}).values())
    if valid and not settings.keep_logs:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"logs: {run_dir}")
    return 0 if valid else 1
