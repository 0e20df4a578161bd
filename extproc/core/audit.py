"""What a policy decided, as the gateway records it.

Policies return decisions (`core/decisions.py`) and may attach `Evidence` (a judge's
verdict, how many matches a request rewrite made); the chain turns each outcome into a
`Decision` and hands it to the request's `DecisionLog`, which passes it on to whatever
records decisions (the observe layer) the moment it is made. Text rewrites of a response
are counted per policy and kind, and logged as one decision each when the response ends,
so a long redacted stream makes a few records, not one per match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK_TOOL_CALL = "block_tool_call"
    REDACT = "redact"
    REPLACE = "replace"
    REJECT_REQUEST = "reject_request"
    BLOCK_RESPONSE = "block_response"
    # The policy could not decide (its judge failed) and its fail mode picked the outcome.
    ERROR_FAIL_CLOSED = "error_fail_closed"
    ERROR_FAIL_OPEN = "error_fail_open"
    # A caller's limit refused the request (the gateway's, not a policy's).
    RATE_LIMITED = "rate_limited"


class Mode(StrEnum):
    ENFORCE = "enforce"  # the decision is applied
    SHADOW = "shadow"  # the decision is only recorded; traffic passes as it came


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """One call to a judge model, as its policy saw it."""

    probability: float | None  # None when the judge failed
    explanation: str
    started: float  # wall-clock seconds (time.time()) when the call began
    seconds: float  # how long it took
    error: str | None = None  # why the judge failed, without secrets


@dataclass(frozen=True, slots=True)
class ApprovalVerdict:
    """A person's answer to a held tool call (or its timeout), as its policy saw it."""

    status: str  # approved, denied, timed_out
    by: str | None  # the approver's name
    reason: str | None
    seconds: float  # how long the call waited

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "by": self.by,
            "reason": self.reason,
            "waited_s": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a policy adds to its decision for the record."""

    judge: JudgeVerdict | None = None
    # Matches a rewrite made, per kind of text (`email`, `secret`...).
    matches: Mapping[str, int] | None = None
    # The policy could not decide; its fail mode chose the outcome.
    failed: bool = False
    # Before/after pairs of rewritten text, only when originals may be stored.
    examples: tuple[tuple[str, str], ...] = ()
    # A person was asked about a tool call: their answer.
    approval: ApprovalVerdict | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy action on one request (the request's own facts are added by whoever
    records it)."""

    policy: str
    policy_type: str
    action: Action
    mode: Mode
    # What it acted on: {"tool": name, "arguments": {...}} for a tool call; {"kind":
    # "email", "count": 2, "where": "response"} for a rewrite; {"status": 403} for a
    # rejected request.
    target: Mapping[str, Any]
    message: str | None = None
    judge: JudgeVerdict | None = None
    at: float = field(default_factory=time.time)


DecisionSink = Callable[[Decision], None]
# Outcomes that leave the traffic as it was.
_NO_CHANGE = frozenset({Action.ALLOW, Action.ERROR_FAIL_OPEN})

# Examples kept per policy and kind when originals are stored: enough for a
# before/after view, bounded so one chatty response cannot grow a record without end.
MAX_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 512


@dataclass(slots=True)
class _Tally:
    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)


class DecisionLog:
    """Where one request's decisions go as they are made. Without a sink (auditing off,
    unit tests) it only remembers which policies acted."""

    __slots__ = ("_sink", "_tallies", "acted", "keep_originals")

    def __init__(self, sink: DecisionSink | None = None, keep_originals: bool = False) -> None:
        self._sink = sink
        self.keep_originals = keep_originals
        self._tallies: dict[tuple[str, str, Action, Mode, str, str], _Tally] = {}
        # Names of the policies that changed something (not shadow, not allow, not a
        # failure let through), in order, once each.
        self.acted: list[str] = []

    @property
    def recording(self) -> bool:
        return self._sink is not None

    def _acted(self, policy: str, action: Action, mode: Mode) -> None:
        changed = mode is Mode.ENFORCE and action not in _NO_CHANGE
        if changed and policy not in self.acted:
            self.acted.append(policy)

    def add(self, decision: Decision) -> None:
        self._acted(decision.policy, decision.action, decision.mode)
        if self._sink is not None:
            self._sink(decision)

    def count_rewrite(
        self,
        policy: str,
        policy_type: str,
        action: Action,
        mode: Mode,
        kind: str,
        where: str,
        before: str = "",
        after: str = "",
    ) -> None:
        """One match a text rewrite made (or, in shadow mode, would have made)."""
        key = (policy, policy_type, action, mode, kind, where)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
            self._acted(policy, action, mode)
        tally.count += 1
        if self.keep_originals and len(tally.examples) < MAX_EXAMPLES:
            tally.examples.append((before[:MAX_EXAMPLE_CHARS], after[:MAX_EXAMPLE_CHARS]))

    def flush(self) -> None:
        """Log the counted rewrites, one decision per policy, kind and place."""
        tallies, self._tallies = self._tallies, {}
        if self._sink is None:
            return
        for (policy, policy_type, action, mode, kind, where), tally in tallies.items():
            target: dict[str, Any] = {"kind": kind, "count": tally.count, "where": where}
            if tally.examples:
                target["examples"] = [{"before": b, "after": a} for b, a in tally.examples]
            self._sink(Decision(policy, policy_type, action, mode, target))
