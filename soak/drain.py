"""(c) A drain (what SIGTERM to `llm-gateway run` does first) while streams run that
finish within its timeout: none is lost, and the drain ends with nothing left open."""

from __future__ import annotations

import asyncio
import time

import httpx

from extproc.stack import Stack
from soak.client import Outcome
from soak.load import Started, run_streams, tally, text_streams
from soak.report import Result
from soak.stacks import TEXT_KEY, Context


def _healthz(st: Stack) -> int:
    try:
        return httpx.get(f"{st.base_url}/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def run(st: Stack, ctx: Context) -> Result:
    """Drains `st`: the last scenario on a stack."""
    plan = ctx.plan
    res = Result("c", f"drain (timeout {plan.drain_timeout_s:g} s) under load")
    streams = text_streams("c", plan.streams, plan.events, TEXT_KEY, plan.paced_delay_ms)

    async def scenario() -> tuple[list[Outcome], int, float, float, int]:
        started = Started(len(streams))
        load = asyncio.ensure_future(
            run_streams(st.base_url, streams, plan.stream_timeout_s, started)
        )
        if not await started.wait(60.0):
            res.note("not every stream had started when the drain began")
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        drain = loop.run_in_executor(None, st.drain, plan.drain_timeout_s)
        health = 200
        while health == 200 and time.monotonic() - began < 2 and not drain.done():
            health = await loop.run_in_executor(None, _healthz, st)
        outcomes = await load
        left = await drain
        return outcomes, left, began, time.monotonic() - began, health

    outcomes, left, began, took, health = asyncio.run(scenario())
    got = tally(streams, outcomes)
    res.info("streams open when the drain began", sum(o.ended > began for o in outcomes))
    res.zero("streams lost (not complete and exact)", got.streams - got.complete)
    res.zero("events lost/duplicated/reordered/foreign", got.faults.total)
    res.zero("requests still open at the drain's timeout (-1: drain failed)", left)
    res.info("/healthz during the drain", health)
    res.info("drain took", took, " s")
    last = max((o.ended for o in outcomes), default=began)
    res.info("last stream ended after the drain began", last - began, " s")
    for problem in got.problems[:5]:
        res.note(problem)
    return res
