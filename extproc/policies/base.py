"""The seam every policy plugs into.

A policy never sees SSE frames, JSON events or gRPC messages. It sees a normalized view:
the parsed request, response text as it streams (through a `TextRewriter`), each tool call
once complete with parsed arguments, and may return decisions. The engine
(`extproc/engine/`) turns those decisions into a valid stream or body for the API at hand,
so no policy can break a stream's invariants.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from extproc.apis.kind import ApiKind


@dataclass(slots=True)
class ApiRequest:
    """The parsed request a response belongs to."""

    api: ApiKind
    path: str
    model: str
    stream: bool
    body: dict[str, Any]
    # Per-request scratch space for policies.
    state: dict[str, Any] = field(default_factory=dict)
    body_changed: bool = False

    def replace_body(self, body: dict[str, Any]) -> None:
        """The only way to change the request: the engine then re-serializes it."""
        self.body = body
        self.body_changed = True


# -- decisions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the request: the client gets `status` (400 or 403) in the API's format."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class BlockToolCall:
    """Drop this tool call; the client sees `message` as text in its place."""

    message: str


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Stop the response here: what was already delivered stays, `message` follows as
    text, tool calls not yet delivered are dropped, and the response ends normally."""

    message: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call the model wants to make."""

    id: str
    name: str
    arguments: dict[str, Any]  # parsed JSON object; {} when the model sent none
    raw_arguments: str  # exactly as the model wrote them
    index: int  # position among this response's tool calls, from 0


@dataclass(frozen=True, slots=True)
class Span:
    """Replace text[start:end] with `replacement`."""

    start: int
    end: int
    replacement: str


class TextRewriter(Protocol):
    """Rewrites response text as it streams.

    `holdback` is the longest stretch of text one rewrite can cover: the engine keeps that
    many characters unsent, so a match split across deltas is still caught, while the rest
    flows on at once. `spans(text, start)` returns sorted, non-overlapping spans that lie
    in text[start:]; text[:start] is already sent and given only as context (for `\\b`,
    look-behind...). The same rewriter serves streaming and non-streaming responses, so a
    policy sees the same content either way.

    A rewriter may also have `hold_from(text, start) -> int | None`: the position of a
    match that has begun but may still grow past `holdback` (a PEM block between its
    BEGIN and END lines); the engine then keeps everything from there unsent too.
    """

    holdback: int

    def spans(self, text: str, start: int) -> Iterable[Span]: ...


class PolicyConfig(BaseModel):
    """A policy's settings from the YAML file. Unknown fields are errors, so a typo in a
    config stops the start instead of silently doing nothing. Subclasses narrow `type`
    to a Literal of the policy's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    # Shown in logs and block messages; defaults to the type.
    name: str | None = None


class Policy:
    """Base class: every hook does nothing. Override only what the policy needs.

    Each policy class has a nested `Config` (a PolicyConfig subclass) and is built as
    `PolicyClass(config)`.

    Class attributes tell the engine which streaming behaviour to use, so work is only
    done for what some policy asked for:
    - `rewrites_text`: `rewriter()` returns a TextRewriter (hold-back window).
    - `gates_tool_calls`: tool calls are held until complete and `on_tool_call` decides.
    - `observes_events`: `observe()` sees every upstream event (debug logging).
    """

    type: ClassVar[str] = "policy"
    Config: ClassVar[builtins.type[PolicyConfig]] = PolicyConfig
    rewrites_text: ClassVar[bool] = False
    gates_tool_calls: ClassVar[bool] = False
    observes_events: ClassVar[bool] = False

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config(type=self.type)

    @property
    def name(self) -> str:
        return self.config.name or self.type

    async def on_request(self, request: ApiRequest) -> Reject | None:
        """Inspect the request; change it with `request.replace_body`, or reject it."""
        return None

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        """A rewriter for one text block of this request's response (fresh per block)."""
        return None

    async def on_tool_call(
        self, call: ToolCall, request: ApiRequest
    ) -> BlockToolCall | BlockResponse | None:
        """Decide one complete tool call. None lets it through."""
        return None

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        """See an upstream event (type and parsed payload); must not block."""


class PolicyChain:
    """An ordered list of policies; each one sees what the previous one let through."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = tuple(policies)
        self.rewriters = tuple(p for p in self.policies if p.rewrites_text)
        self.gates = tuple(p for p in self.policies if p.gates_tool_calls)
        self.observers = tuple(p for p in self.policies if p.observes_events)
        # Nothing in the chain looks at the response: the engine is skipped entirely
        # and bytes flow through untouched.
        self.passthrough = not (self.rewriters or self.gates or self.observers)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.policies]

    def text_rewriters(self, request: ApiRequest) -> list[TextRewriter]:
        """Fresh rewriters, in chain order, for one text of this request's response."""
        found = (p.rewriter(request) for p in self.rewriters)
        return [r for r in found if r is not None]

    async def on_request(self, request: ApiRequest) -> Reject | None:
        for policy in self.policies:
            verdict = await policy.on_request(request)
            if verdict is not None:
                return verdict
        return None

    async def decide_tool_call(
        self, call: ToolCall, request: ApiRequest
    ) -> BlockToolCall | BlockResponse | None:
        """The first policy that blocks decides; later ones never see a blocked call."""
        for policy in self.gates:
            verdict = await policy.on_tool_call(call, request)
            if verdict is not None:
                return verdict
        return None
