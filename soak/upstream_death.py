"""(e) The upstream dies mid-stream (`x-mock-die-after`: the connection closed inside
the chunked body) or ends early but cleanly (`x-mock-truncate-after`). A clean early
end must give every client the API's error event and a valid terminator within a
second; a reset cannot (Envoy resets the client itself), so it is reported only.

The streams go through a chain whose responses pass through ext_proc but whose text is
not held back (the judge gate: text-only streams pass at once), so the last data a
client got is what the upstream sent last, and the time from it to the outcome is the
gateway's."""

from __future__ import annotations

import asyncio
from collections import Counter

from extproc.stack import Stack
from soak.client import Outcome, send
from soak.load import text_streams
from soak.report import Result
from soak.stacks import Context, judge_chain, key_of
from soak.streams import PATHS, ends_in_format

DELTAS = 60  # the mock would send this many text deltas...
AFTER = 20  # ...but stops after this many events
DELAY_MS = 5
OUTCOME_LIMIT_S = 1.0
FAULTS = {"die": "x-mock-die-after", "truncate": "x-mock-truncate-after"}


def _kind(api: str, outcome: Outcome) -> str:
    if outcome.error is not None:
        return "timeout" if outcome.error == "timeout" else "connection closed, no error event"
    if outcome.status != 200:
        return f"status {outcome.status}"
    return "in-format error event" if ends_in_format(api, outcome.body) else "other ending"


def run(st: Stack, ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("e", "upstream killed mid-stream (responses through ext_proc)")
    cases = []
    for fault, header in FAULTS.items():
        more = {header: str(AFTER)}
        key = key_of(judge_chain("healthy"))
        streams = text_streams(f"e-{fault}", 2 * plan.deaths, DELTAS, key, DELAY_MS, more)
        cases += [(fault, s) for s in streams]

    async def scenario() -> list[Outcome]:
        return list(
            await asyncio.gather(
                *(send(st.base_url, PATHS[s.api], s.headers, s.body, s.rid, 10.0) for _, s in cases)
            )
        )

    outcomes = asyncio.run(scenario())
    for fault in FAULTS:
        for api in ("anthropic", "openai"):
            got = [
                (s, o)
                for (f, s), o in zip(cases, outcomes, strict=True)
                if f == fault and s.api == api
            ]
            kinds = Counter(_kind(api, o) for _, o in got)
            label = f"{fault} ({FAULTS[fault]}: {AFTER}), {api}"
            missing = len(got) - kinds["in-format error event"]
            slowest = max((o.outcome_delay_s for _, o in got), default=0.0)
            name = f"{label}: clients without an in-format error + terminator"
            delay = f"{label}: slowest outcome after the last data"
            if fault == "die":
                # An upstream reset after the response started: Envoy resets the client
                # and closes the ext_proc stream in the same moment, so no event can be
                # added (README, "Crashes, restarts and rolling updates"). Reported.
                res.info(name, missing)
                res.info(delay, round(slowest, 3), " s")
            else:
                res.zero(name, missing)
                res.bound(delay, slowest, OUTCOME_LIMIT_S, " s")
            res.note(f"{label}: {dict(kinds)}")
    return res
