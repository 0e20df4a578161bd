"""The two kinds of audit record, as they are stored and served.

A `DecisionRecord` is one policy action with the facts of the request it acted on; a
`RequestRecord` is one request's summary. Both are plain data: nothing here knows a
database, a metric or a span. Neither ever holds a key: callers appear by name, tool
arguments with secrets and personal data redacted (`redact_arguments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from extproc.core.usage import Usage

# Bumped when a record's shape changes; stores migrate their schema to match.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What every record of one request shares."""

    request_id: str
    caller: str | None
    api: str
    model: str | None
    provider: str | None


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


__all__ = ["SCHEMA_VERSION", "DecisionRecord", "RequestFacts", "RequestRecord", "Usage"]
