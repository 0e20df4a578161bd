"""(d) The tool-call judge dead (a closed port), slow (stalls beyond timeout_s) or
talking garbage (prose, no verdict), with on_judge_error block and allow: the decision
each tool call gets, when, and what it added to the stream. The judge policies use the
defaults for retries and the circuit breaker: what they do shows in the figures."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import orjson

from extproc.stack import Stack
from soak.client import Outcome, send
from soak.report import Result
from soak.stacks import (
    FAIL_MODES,
    JUDGE_FAULTS,
    TEXT_KEY,
    Context,
    judge_chain,
    key_of,
    percentile,
)
from soak.streams import ANTHROPIC_MODEL, PATHS, events, headers

SLACK_S = 0.5
# The command in each tool call; the mock judge stalls 5 s on JUDGE_SLOW and answers
# prose on JUDGE_PROSE. `ls -la` is benign: a healthy judge allows it.
COMMANDS = {
    "healthy": "ls -la",
    "dead": "ls -la",
    "slow": "echo JUDGE_SLOW",
    "garbage": "echo JUDGE_PROSE",
}
TOOLS = [
    {
        "name": "bash",
        "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
]
_LOG_RE = re.compile(r"(judge-[a-z-]+): tool='bash' (?:judge_error='([^']*)'|probability)")


def tool_request(command: str) -> bytes:
    return orjson.dumps(
        {
            "model": ANTHROPIC_MODEL,
            "max_tokens": 512,
            "stream": True,
            "tools": TOOLS,
            "messages": [{"role": "user", "content": f"Use bash to run `{command}`"}],
        }
    )


def decision(outcome: Outcome) -> str:
    """allow (the tool_use block reached the client), block (a text in its place), or
    what went wrong instead."""
    if outcome.error is not None or outcome.status != 200:
        return f"failed: {outcome.error or outcome.status}"
    got = events("anthropic", outcome.body)
    if not got or got[-1].name != "message_stop":
        return "failed: no message_stop"
    for event in got:
        if event.name == "content_block_start" and b'"type":"tool_use"' in event.raw:
            return "allow"
    text = "".join(e.text for e in got if e.name is None)
    return "block" if "was blocked" in text else "neither"


async def _calls(
    st: Stack, chain: str, command: str, count: int, key: str | None = None
) -> list[Outcome]:
    """`count` tool-call streams for `chain`, one after another."""
    out = []
    hdrs = headers(key or key_of(chain))
    for i in range(count):
        rid = f"soak-d-{chain}-{i}"
        out.append(
            await send(st.base_url, PATHS["anthropic"], hdrs, tool_request(command), rid, 30.0)
        )
    return out


def _judge_log(st: Stack) -> dict[str, Counter[str]]:
    """Per chain, the reasons its judge calls failed (`verdict` for an answer)."""
    assert st.log_dir is not None
    out: dict[str, Counter[str]] = {}
    for log in st.log_dir.glob("extproc*.log"):
        for found in _LOG_RE.finditer(log.read_text(errors="replace")):
            reason = found.group(2) or "verdict"
            # "retrying in 27s": the same reason whatever the seconds left.
            reason = re.sub(r"\d+(\.\d+)?s\b", "Ns", reason)
            out.setdefault(found.group(1), Counter())[reason] += 1
    return out


def run(st: Stack, ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("d", f"tool-call judge faults (timeout_s {plan.judge_timeout_s:g})")
    chains = {judge_chain("healthy"): "healthy"}
    chains.update({judge_chain(f, m): f for f in JUDGE_FAULTS for m in FAIL_MODES})

    async def scenario() -> list[list[Outcome]]:
        runs = [
            _calls(st, chain, COMMANDS[fault], plan.judge_calls) for chain, fault in chains.items()
        ]
        return list(await asyncio.gather(*runs))

    results = dict(zip(chains, asyncio.run(scenario()), strict=True))
    # The same tool-call streams through the default chain, which does not gate them.
    plain = asyncio.run(_calls(st, "default", COMMANDS["healthy"], plan.judge_calls, TEXT_KEY))
    base = percentile([o.latency_s for o in plain], 50)
    res.info("tool-call stream p50 without a judge", base, " s")
    reasons = _judge_log(st)
    healthy = results.pop(judge_chain("healthy"))
    wrong_healthy = sum(decision(o) != "allow" for o in healthy)
    res.zero("healthy judge: benign tool calls not allowed", wrong_healthy)
    added_healthy = percentile([o.latency_s - base for o in healthy], 50)
    res.info("healthy judge: added latency p50", added_healthy, " s")
    for chain, outcomes in results.items():
        fault, mode = chain.removeprefix("judge-").rsplit("-", 1)
        label = f"{fault}, on_judge_error={mode}"
        wrong = [d for o in outcomes if (d := decision(o)) != mode]
        res.zero(f"{label}: decisions other than {mode}", len(wrong))
        added = [o.latency_s - base for o in outcomes]
        res.info(
            f"{label}: added latency p50 / max", f"{percentile(added, 50):.2f} / {max(added):.2f} s"
        )
        limit = plan.judge_timeout_s + SLACK_S
        res.bound(f"{label}: slowest decision", max(o.latency_s for o in outcomes), limit, " s")
        seen = reasons.get(chain, Counter())
        skipped = sum(n for r, n in seen.items() if "circuit open" in r)
        res.info(f"{label}: judge skipped (circuit open) / calls", f"{skipped} / {len(outcomes)}")
        res.note(f"{label}: {dict(seen)}" + (f"; wrong: {Counter(wrong)}" if wrong else ""))
    return res
