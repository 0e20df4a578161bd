"""The two kinds of audit record, as they are stored and served.

A `DecisionRecord` is one policy action with the facts of the request it acted on; a
`RequestRecord` is one request's summary. Both are plain data: nothing here knows a
database, a metric or a span. Neither ever holds a key: callers appear by name, and a
decision's target, message and explanation are redacted of secrets and personal data
(`redact.redact_decision`) by the recorder's thread before they are stored.

What a client sent can be of any size, so a record's share of it is bounded first, on
the event loop, where it is cheap (`bound_target`, `clip_text`): every string to
`MAX_STRING_CHARS`, a target to about `MAX_TARGET_BYTES` of JSON. A clipped string keeps
`REDACTION_CONTEXT_CHARS` more for now, so the redaction still sees whole any secret
that begins before the cut; the cut itself is made after redacting (`redact.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from extproc.core.usage import Usage

# Bumped when a record's shape changes; stores migrate their schema to match.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    time: float  # unix seconds
    request_id: str
    caller: str | None
    api: str
    model: str | None
    provider: str | None
    policy: str
    policy_type: str
    action: str  # core.audit.Action's value
    mode: str  # enforce | shadow
    target: Mapping[str, Any] = field(default_factory=dict)
    message: str | None = None
    probability: float | None = None
    explanation: str | None = None
    judge_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    time: float  # unix seconds when the request arrived
    request_id: str
    caller: str | None
    api: str
    model: str | None
    provider: str | None
    method: str
    path: str
    # 0: not seen, because no policy reads responses and Envoy sent the response
    # straight to the client (then duration and tokens are not known either).
    status: int
    stream: bool | None
    # ok | rejected | incomplete | cancelled | error
    outcome: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    ttfb_ms: float | None = None  # first response byte the gateway passed on
    duration_ms: float = 0.0
    events: int = 0
    policies_acted: tuple[str, ...] = ()
    trace_id: str | None = None  # the OpenTelemetry trace, when tracing is on

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["policies_acted"] = list(self.policies_acted)
        return out


# Bounds on what a record keeps of what a client sent.
MAX_STRING_CHARS = 4096  # each string in a target
MAX_TEXT_CHARS = 4096  # a decision's message and explanation
MAX_TARGET_BYTES = 16_384  # a target's JSON, about; past it only a summary is kept
MAX_FIELD_CHARS = 256  # model names, paths
MAX_REQUEST_ID_CHARS = 128
# A clipped string keeps this much beyond its cut until it is redacted: more than the
# longest match a pii detector makes (a PEM private key, up to ~8 KB), so a secret that
# begins before the cut is redacted whole, never left half there.
REDACTION_CONTEXT_CHARS = 8192
# Nested deeper than any real tool call; past it a value is replaced, not walked.
MAX_DEPTH = 32
TOO_DEEP = "[too deep]"
# What a record costs in memory besides its strings, about (the recorder's queue bound).
RECORD_OVERHEAD_BYTES = 512


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` for a record, before redaction: whole up to `limit`, else cut with the
    redaction's context kept (`redact.py` makes the cut at `limit`)."""
    return text if len(text) <= limit else text[: limit + REDACTION_CONTEXT_CHARS]


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A decision's target bounded for the record: `value` as it is queued, `held` its
    size in memory (about, in characters)."""

    value: dict[str, Any]
    held: int


class _OverBudget(Exception):
    pass


class _Bounder:
    """One walk over a JSON-like value: strings clipped, sizes summed, abandoned as soon
    as the stored JSON would pass the budget."""

    __slots__ = ("budget", "context", "held", "stored")

    def __init__(self, budget: int, context: int) -> None:
        self.budget = budget
        self.context = context
        self.stored = 0  # JSON bytes once redacted and cut, about
        self.held = 0  # characters held until then

    def text(self, value: str) -> str:
        self.stored += min(len(value), MAX_STRING_CHARS) + 3
        if self.stored > self.budget:
            raise _OverBudget
        out = value if len(value) <= MAX_STRING_CHARS else value[: MAX_STRING_CHARS + self.context]
        self.held += len(out)
        return out

    def value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            self.stored += 8
            self.held += 8
            if self.stored > self.budget:
                raise _OverBudget
            return value
        if depth >= MAX_DEPTH:
            return self.text(TOO_DEEP)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, depth + 1) for v in value]
        return self.text(str(value))


def bound_target(
    target: Mapping[str, Any],
    budget: int = MAX_TARGET_BYTES,
    context: int = REDACTION_CONTEXT_CHARS,
) -> BoundTarget:
    """`target` with every string clipped (keeping `context` characters past the cut for
    the redaction; 0 for what is never redacted, cut then and there); when its JSON would
    pass `budget`, only its top-level scalars (the tool's name, the kind and count of a
    rewrite, a status) and a note saying what was left out. Stops walking at the budget:
    a huge target costs no more than one that just fits."""
    walk = _Bounder(budget, context)
    try:
        return BoundTarget(walk.value(target, 0), walk.held)
    except _OverBudget:
        pass
    summary: dict[str, Any] = {}
    walk = _Bounder(budget // 2, context)
    for key, value in target.items():
        if not (value is None or isinstance(value, str | bool | int | float)):
            continue
        try:
            summary[walk.text(str(key))] = walk.value(value, 1)
        except _OverBudget:
            break
    summary["truncated"] = f"over {budget} bytes: only the summary of what was acted on is kept"
    return BoundTarget(summary, walk.held + 100)


__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_STRING_CHARS",
    "MAX_TARGET_BYTES",
    "MAX_TEXT_CHARS",
    "REDACTION_CONTEXT_CHARS",
    "SCHEMA_VERSION",
    "BoundTarget",
    "DecisionRecord",
    "RequestRecord",
    "Usage",
    "bound_target",
    "clip_text",
]
