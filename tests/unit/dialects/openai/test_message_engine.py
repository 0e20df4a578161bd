"""The policy engine for non-streaming chat completions
(extproc/dialects/openai/message_engine.py)."""

from __future__ import annotations

from typing import Any

from extproc.dialects.openai.message_engine import process_message
from extproc.dialects.registry import OPENAI_CHAT
from extproc.policies.base import PolicyChain
from tests.helpers.dialects import api_request, openai_body
from tests.helpers.engine import SECRET, BlockBash, Observer, Redact, StopOnDelete, plan, streams

REQUEST = api_request(openai_body(), OPENAI_CHAT)


def completion(text: list[str], tools: list[str]) -> dict[str, Any]:
    return streams(plan(text, tools), OPENAI_CHAT)[1]


async def test_unchanged_completion_is_the_same_object() -> None:
    body = completion(["hello"], ["bash"])
    for chain in (PolicyChain([]), PolicyChain([Redact()]), PolicyChain([StopOnDelete()])):
        assert await process_message(body, chain, REQUEST) is body
    for odd in ([1], {"choices": "x"}, {"choices": [1, {"message": "x"}]}):
        assert await process_message(odd, PolicyChain([Redact(), BlockBash()]), REQUEST) is odd


async def test_content_rewritten() -> None:
    body = completion([f"key {SECRET} ", "ok"], [])
    new = await process_message(body, PolicyChain([Redact()]), REQUEST)
    assert new["choices"][0]["message"]["content"] == "key [REDACTED] ok"
    assert body["choices"][0]["message"]["content"] == f"key {SECRET} ok"


async def test_blocked_call_message_appended_to_the_content() -> None:
    body = completion(["hi"], ["bash", "get_weather"])
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    message = new["choices"][0]["message"]
    assert message["content"] == "hi\n\nblocked bash"
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]
    assert new["choices"][0]["finish_reason"] == "tool_calls"


async def test_finish_reason_stop_when_no_call_is_left() -> None:
    new = await process_message(completion([], ["bash"]), PolicyChain([BlockBash()]), REQUEST)
    choice = new["choices"][0]
    assert choice["message"]["content"] == "blocked bash"
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"
    stopped = await process_message(
        completion(["ok"], ["get_weather", "delete_all"]), PolicyChain([StopOnDelete()]), REQUEST
    )
    assert stopped["choices"][0]["message"]["content"] == "ok\n\nstopped"
    assert stopped["choices"][0]["finish_reason"] == "stop"


async def test_all_calls_allowed_keeps_the_original_list() -> None:
    body = completion(["hi"], ["get_weather", "read"])
    assert await process_message(body, PolicyChain([BlockBash()]), REQUEST) is body


async def test_observers_see_the_whole_response() -> None:
    observer = Observer()
    body = completion(["hi"], [])
    assert await process_message(body, PolicyChain([observer]), REQUEST) is body
    assert observer.seen == [("response", body)]
