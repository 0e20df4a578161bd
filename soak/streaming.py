"""(a) Many concurrent streams through the text policy under random chunking: every
stream complete, no event lost, duplicated, reordered or foreign."""

from __future__ import annotations

import asyncio
import time

from extproc.stack import Stack
from soak.load import run_streams, tally, text_streams
from soak.report import Result
from soak.stacks import TEXT_KEY, Context, percentile


def run(st: Stack, ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("a", f"{plan.streams} streams x {plan.events} events, text policy")
    streams = text_streams("a", plan.streams, plan.events, TEXT_KEY)
    started = time.monotonic()
    outcomes = asyncio.run(run_streams(st.base_url, streams, plan.stream_timeout_s))
    wall = time.monotonic() - started
    got = tally(streams, outcomes)
    latencies = [o.latency_s for o in outcomes if o.error is None]
    res.info("streams complete / total", f"{got.complete} / {got.streams}")
    res.zero("streams incomplete", got.streams - got.complete)
    res.zero("events lost", got.faults.lost)
    res.zero("events duplicated", got.faults.duplicated)
    res.zero("events reordered", got.faults.reordered)
    res.zero("events foreign (another stream's, or garbled)", got.faults.foreign)
    res.info("events carried", got.events)
    res.info("stream latency p50", percentile(latencies, 50), " s")
    res.info("stream latency p99", percentile(latencies, 99), " s")
    res.info("events / s through the gateway", got.events / wall if wall else 0.0)
    for problem in got.problems[:5]:
        res.note(problem)
    res.details = {"wall_s": wall, "timeouts": got.timeouts, "errors": got.errors}
    return res
