"""What the engines ask of a policy chain about a response.

The chain itself (`extproc/policies/base.py`) implements this; the engines, which turn
its decisions into each API's events, know only this shape, so they sit below the
policies and never import them.
"""

from __future__ import annotations

from typing import Any, Protocol

from extproc.core.decisions import ToolCall, ToolOutcome
from extproc.core.request import ApiRequest
from extproc.core.rewriting import RewriteStep, TextRewriter


class ResponsePolicies(Protocol):
    # Which work any policy asked for: the engines do only that.
    rewrites_text: bool
    gates_tool_calls: bool  # a policy decides calls: they are held until it has
    watches_tool_calls: bool  # a shadow policy looks at calls: they are not held
    observes_events: bool

    def text_rewriters(self, request: ApiRequest) -> list[TextRewriter | RewriteStep]:
        """Fresh rewriters, in chain order, for one text of this request's response."""
        ...

    async def decide_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolOutcome:
        """One complete tool call's fate; None lets it through."""
        ...

    async def watch_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        """Show one complete call to the shadow policies (never raises; bounded)."""
        ...

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        """Show an upstream event to every policy that observes events."""
        ...
