"""(f) Each worker's RSS before and after many requests of the default path (noop: the
responses bypass ext_proc), against the benchmark's fast upstream."""

from __future__ import annotations

from benchmarks.load import MIN_BODY_SHARE, Target, run_load, wrk_available
from benchmarks.scenarios import anthropic
from benchmarks.upstream import FastUpstream
from soak.report import Result
from soak.stacks import WORKERS, Context, open_requests, rss_kib, wait_until, workers
from tests.helpers.stack import running_stack

CONCURRENCY = 16


def run(ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("f", f"RSS over {plan.memory_requests:,} default-path requests")
    api = anthropic()
    upstream = FastUpstream(ctx.run_dir / "f", {"anthropic": api})
    upstream.start()
    try:
        log_dir = ctx.run_dir / "f" / "stack"
        log_dir.mkdir(parents=True, exist_ok=True)
        with running_stack(
            log_dir,
            extproc_workers=WORKERS,
            upstream_anthropic_url=upstream.url,
            upstream_openai_url=upstream.url,
        ) as st:
            target = Target(
                url=st.base_url,
                path=api.path,
                headers=api.headers(),
                body=api.request,
                terminator=api.terminator,
                min_len=int(len(api.stream_body) * MIN_BODY_SHARE),
            )
            use_wrk = wrk_available()
            warm = run_load(target, CONCURRENCY, requests=plan.memory_warmup, use_wrk=use_wrk)
            wait_until(lambda: open_requests(st) == 0, 10.0)
            pids = workers(st)
            before = {name: rss_kib(pid) for name, pid in pids.items()}
            load = run_load(
                target,
                CONCURRENCY,
                requests=plan.memory_requests,
                use_wrk=use_wrk,
                max_duration_s=900,
            )
            wait_until(lambda: open_requests(st) == 0, 10.0)
            after = {name: rss_kib(pid) for name, pid in pids.items()}
            restarted = workers(st) != pids
    finally:
        upstream.stop()
    res.zero("requests failed (status, terminator, socket errors)", warm.errors + load.errors)
    res.info("requests served after the warm-up", load.ok + load.bad)
    res.info(f"req/s ({load.tool}, c={CONCURRENCY})", load.rps)
    res.zero("workers that restarted meanwhile", int(restarted))
    for name in before:
        growth = (after[name] - before[name]) / before[name] * 100
        res.info(
            f"{name} RSS before / after",
            f"{before[name] / 1024:.1f} / {after[name] / 1024:.1f} MiB",
        )
        if plan.rss_growth_limit_pct is None:
            res.info(f"{name} RSS growth (asserted in the full run)", growth, " %")
        else:
            res.bound(f"{name} RSS growth", growth, plan.rss_growth_limit_pct, " %")
    res.details = {"rss_before_kib": before, "rss_after_kib": after, "load": load.to_dict()}
    return res
