"""What every API's message engine (non-streaming responses) shares: the same rewriters
and tool gate as the stream engines, so a policy sees the same content whether or not
the response streams. Each dialect's `message_engine.py` walks its own body shape and
returns the very same object when nothing changed, so its original bytes are sent.
"""

from __future__ import annotations

from typing import Any

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.engine.text import TextPipeline
from extproc.engine.tools import T, ToolGate, split_decisions


def rewrite_text(chain: ResponsePolicies, request: ApiRequest, text: str) -> str:
    """One whole text through the chain's rewriters."""
    if not chain.rewrites_text:
        return text
    return TextPipeline(chain.text_rewriters(request)).rewrite_all(text)


async def decide(
    chain: ResponsePolicies, request: ApiRequest, calls: list[ToolCall], items: list[T]
) -> tuple[list[str], list[T]]:
    """Decide every call (concurrently): block messages, and the items let through."""
    gate = ToolGate(chain, request)
    for call in calls:
        gate.submit(call)
    return split_decisions(items, await gate.results())


def observe(chain: ResponsePolicies, request: ApiRequest, body: Any) -> None:
    if chain.observes_events:
        chain.observe("response", body, request)
