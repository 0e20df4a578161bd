"""The seam every policy plugs into, and the chain that runs them in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from extproc.apis.kind import ApiKind
from extproc.events import StreamEvent


@dataclass(slots=True)
class ApiRequest:
    """The parsed request a response belongs to; policies may read it, not the wire."""

    api: ApiKind
    path: str
    model: str
    stream: bool
    body: dict[str, Any]
    # Per-request scratch space for policies (hold-back buffers, pending tool calls...).
    state: dict[str, Any] = field(default_factory=dict)
    body_changed: bool = False

    def replace_body(self, body: dict[str, Any]) -> None:
        """The only way to change the request: the engine then re-serializes it."""
        self.body = body
        self.body_changed = True


class Policy:
    """Base class: every hook passes its input through unchanged.

    `passthrough = True` promises the engine that the policy never looks at response
    events, so a chain made only of such policies can skip per-event work.
    """

    name = "policy"
    passthrough = False

    async def on_request(self, request: ApiRequest) -> None:
        """Inspect or edit `request.body` before it goes upstream."""

    async def on_event(self, event: StreamEvent, request: ApiRequest) -> list[StreamEvent]:
        return [event]

    async def on_stream_end(self, request: ApiRequest) -> list[StreamEvent]:
        """The upstream stream ended: release anything held back."""
        return []

    async def on_response(self, body: Any, request: ApiRequest) -> Any:
        """A complete non-streaming response body; return it (or a replacement)."""
        return body


class PolicyChain:
    """An ordered list of policies; each one sees what the previous one emitted."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        self.passthrough = all(p.passthrough for p in self.policies)

    async def on_request(self, request: ApiRequest) -> None:
        for policy in self.policies:
            await policy.on_request(request)

    async def on_events(self, events: list[StreamEvent], request: ApiRequest) -> list[StreamEvent]:
        if self.passthrough:
            return events
        for policy in self.policies:
            out: list[StreamEvent] = []
            for event in events:
                out.extend(await policy.on_event(event, request))
            events = out
        return events

    async def on_stream_end(self, request: ApiRequest) -> list[StreamEvent]:
        if self.passthrough:
            return []
        pending: list[StreamEvent] = []
        for policy in self.policies:
            # What earlier policies flush still has to pass through the later ones.
            out: list[StreamEvent] = []
            for event in pending:
                out.extend(await policy.on_event(event, request))
            out.extend(await policy.on_stream_end(request))
            pending = out
        return pending

    async def on_response(self, body: Any, request: ApiRequest) -> Any:
        for policy in self.policies:
            body = await policy.on_response(body, request)
        return body
