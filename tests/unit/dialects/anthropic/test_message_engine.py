"""The policy engine for non-streaming Anthropic messages
(extproc/dialects/anthropic/message_engine.py)."""

from __future__ import annotations

from typing import Any

from extproc.dialects.anthropic.message_engine import process_message
from extproc.dialects.registry import ANTHROPIC
from extproc.policies.base import PolicyChain
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.engine import SECRET, BlockBash, Observer, Redact, StopOnDelete, plan, streams

REQUEST = api_request(anthropic_body())


def message(text: list[str], tools: list[str]) -> dict[str, Any]:
    return streams(plan(text, tools), ANTHROPIC)[1]


async def test_unchanged_message_is_the_same_object() -> None:
    body = message(["hello"], ["bash"])
    for chain in (PolicyChain([]), PolicyChain([Redact()]), PolicyChain([StopOnDelete()])):
        assert await process_message(body, chain, REQUEST) is body
    for odd in ([1, 2], "text", {"content": "not a list"}, {"id": "x"}):
        assert await process_message(odd, PolicyChain([Redact(), BlockBash()]), REQUEST) is odd


async def test_text_blocks_rewritten_others_shared() -> None:
    body = message([f"key {SECRET} ", "ok"], ["get_weather"])
    new = await process_message(body, PolicyChain([Redact()]), REQUEST)
    assert new["content"][0] == {**body["content"][0], "text": "key [REDACTED] ok"}
    assert new["content"][1] is body["content"][1]
    assert body["content"][0]["text"] == f"key {SECRET} ok"  # the input is not modified


async def test_block_messages_go_before_allowed_tools() -> None:
    body = message(["hi"], ["bash", "get_weather"])
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    kinds = [(b["type"], b.get("text", b.get("name"))) for b in new["content"]]
    assert kinds == [("text", "hi"), ("text", "blocked bash"), ("tool_use", "get_weather")]
    assert new["stop_reason"] == "tool_use"


async def test_stop_reason_end_turn_when_every_call_is_blocked() -> None:
    body = message(["hi"], ["bash", "bash"])
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    assert [b["text"] for b in new["content"]] == ["hi", "blocked bash", "blocked bash"]
    assert new["stop_reason"] == "end_turn"
    stopped = await process_message(
        message(["ok"], ["get_weather", "delete_all"]), PolicyChain([StopOnDelete()]), REQUEST
    )
    assert [b["text"] for b in stopped["content"]] == ["ok", "stopped"]
    assert stopped["stop_reason"] == "end_turn"


async def test_observers_see_the_whole_response() -> None:
    observer = Observer()
    body = message(["hi"], [])
    assert await process_message(body, PolicyChain([observer]), REQUEST) is body
    assert observer.seen == [("response", body)]
