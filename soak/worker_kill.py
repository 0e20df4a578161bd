"""(b) kill -9 one of the two workers while streams run, the stack supervised as
`llm-gateway run` does: only the killed worker's streams fail, none hangs, new requests
succeed again, and the restarted worker serves."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson

from extproc.stack import Stack
from soak.client import Outcome, send
from soak.load import Started, TextStream, run_streams, tally, text_streams
from soak.report import Result
from soak.stacks import TEXT_KEY, Context, request_log, wait_until
from soak.streams import ANTHROPIC_MODEL, PATHS, headers

VICTIM = "extproc-1"
SURVIVOR = "extproc"
HANG_LIMIT_S = 5.0
PROBE_STREAK = 20  # new requests in a row that must succeed
PROBE_DEADLINE_S = 20.0

PROBE_BODY = orjson.dumps(
    {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Count to 3"}],
    }
)


async def probe(url: str, rid: str) -> Outcome:
    return await send(url, PATHS["anthropic"], headers(TEXT_KEY), PROBE_BODY, rid, 10.0)


def probe_ok(outcome: Outcome) -> bool:
    return outcome.status == 200 and outcome.body.rstrip().endswith(b'{"type":"message_stop"}')


async def _probe_until_recovered(url: str, killed: float) -> list[Outcome]:
    """New requests one after another from the kill on, until PROBE_STREAK in a row
    succeeded (or the deadline)."""
    probes: list[Outcome] = []
    streak = 0
    while streak < PROBE_STREAK and time.monotonic() - killed < PROBE_DEADLINE_S:
        outcome = await probe(url, f"soak-b-probe-{len(probes)}")
        probes.append(outcome)
        streak = streak + 1 if probe_ok(outcome) else 0
    return probes


def run(st: Stack, ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("b", "kill -9 one of 2 workers under load")
    res.zero("worker restarts before the kill (crashes in earlier scenarios)", st.restarts.total)
    streams = text_streams("b", plan.streams, plan.events, TEXT_KEY, plan.paced_delay_ms)
    victim = st.procs[VICTIM]

    async def restarted(after: float) -> float | None:
        """When the supervisor had started the worker again (polled)."""
        while time.monotonic() - after < 15.0:
            if st.procs[VICTIM].pid != victim.pid:
                return time.monotonic()
            await asyncio.sleep(0.02)
        return None

    async def scenario() -> tuple[list[Outcome], list[Outcome], float, bool, float | None]:
        started = Started(len(streams))
        load = asyncio.ensure_future(
            run_streams(st.base_url, streams, plan.stream_timeout_s, started)
        )
        all_started = await started.wait(60.0)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        restart = asyncio.ensure_future(restarted(killed))
        probes = await _probe_until_recovered(st.base_url, killed)
        return await load, probes, killed, all_started, await restart

    outcomes, probes, killed, all_started, back = asyncio.run(scenario())
    if not all_started:
        res.note("not every stream had started when the worker was killed")

    served_by_survivor = request_log(st, SURVIVOR)
    failed: list[tuple[TextStream, Outcome]] = []
    completed: list[tuple[TextStream, Outcome]] = []
    for stream, outcome in zip(streams, outcomes, strict=True):
        ok = outcome.error is None and stream.check(outcome).complete
        (completed if ok else failed).append((stream, outcome))
    survivor_failed = [s.rid for s, _ in failed if s.rid in served_by_survivor]
    victim_streams = [s for s in streams if s.rid not in served_by_survivor]
    got = tally([s for s, _ in completed], [o for _, o in completed])
    res.info("streams open at the kill", sum(o.ended > killed for o in outcomes))
    res.info("streams the killed worker served", len(victim_streams))
    res.info("streams failed (the killed worker's)", len(failed) - len(survivor_failed))
    res.zero("streams failed that the surviving worker served", len(survivor_failed))
    res.zero("streams that hung (no outcome in time)", sum(o.error == "timeout" for o in outcomes))
    res.zero("events lost/duplicated/reordered/foreign in completed streams", got.faults.total)
    wait = max((o.silence_after(killed) for o in [*outcomes, *probes]), default=0.0)
    res.bound("longest wait for an outcome after the kill", wait, HANG_LIMIT_S, " s")
    bad = [p for p in probes if not probe_ok(p)]
    res.info("new requests failed after the kill", len(bad))
    recovered = max((p.ended - killed for p in bad), default=0.0)
    res.info("time until every new request succeeds", recovered, " s")
    if len(probes) < PROBE_STREAK or not probe_ok(probes[-1]):
        res.zero("new requests still failing at the deadline", 1)
    if not victim_streams:
        res.note("the killed worker served none of the streams: the kill proved nothing")
    for rid in survivor_failed[:3]:
        res.note(f"{rid} failed on the surviving worker ({served_by_survivor[rid]})")
    if back is None:
        res.zero("killed worker not started again within 15 s", 1)
    else:
        res.info("worker started again after", back - killed, " s")
        _serves_again(st, res)
    waits = sorted((o.silence_after(killed), o.rid, o.error) for o in [*outcomes, *probes])
    for p in bad[:3]:
        what = p.error or f"status {p.status}: {p.body[:160]!r}"
        res.note(f"new request {p.ended - killed:+.3f} s after the kill failed: {what}")
    res.details = {
        "failed": [(s.rid, o.error, len(o.partial)) for s, o in failed][:20],
        "longest_waits": [(round(w, 3), rid, error) for w, rid, error in waits[-5:]],
    }
    return res


def _serves_again(st: Stack, res: Result) -> None:
    """The restarted worker takes requests again."""
    sent: list[str] = []

    def served() -> bool:
        rid = f"soak-b-after-{len(sent)}"
        sent.append(rid)
        asyncio.run(probe(st.base_url, rid))
        return any(r in request_log(st, VICTIM) for r in sent)

    res.zero("restarted worker not serving within 15 s", int(wait_until(served, 15.0) is None))
