"""Tool calls and what a policy may decide about a request, a tool call or a response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extproc.core.audit import Evidence


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call the model wants to make."""

    id: str
    name: str
    arguments: dict[str, Any]  # parsed JSON object; {} when the model sent none
    raw_arguments: str  # exactly as the model wrote them
    index: int  # position among this response's tool calls, from 0


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the request: the client gets `status` (400 or 403) in the API's format."""

    status: int
    message: str
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class BlockToolCall:
    """Drop this tool call; the client sees `message` as text in its place."""

    message: str
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Stop the response here: what was already delivered stays, `message` follows as
    text, tool calls not yet delivered are dropped, and the response ends normally."""

    message: str
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    """Let it through, with what the policy found on the way (a judge's verdict, the
    matches a request rewrite made) for the record. The chain turns it into None."""

    evidence: Evidence | None = None


# What a gate decides about one tool call; None (or Allow) lets it through.
ToolDecision = BlockToolCall | BlockResponse | Allow | None
# What the chain tells the engines about one tool call; None lets it through.
ToolOutcome = BlockToolCall | BlockResponse | None
# What a policy decides about a request; None (or Allow) lets it through.
RequestDecision = Deny | Allow | None
