"""The policy engine for a non-streaming Responses API `response`
(extproc/dialects/responses/message_engine.py): the same decisions as the stream engine
(tests/unit/dialects/responses/test_stream_engine.py compares the two)."""

from __future__ import annotations

import copy
from typing import Any

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.responses.message_engine import process_message
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from tests.helpers.engine import SECRET, BlockBash, Observer, Redact, StopOnDelete
from tests.helpers.responses_engine import (
    PATCH_TOOL,
    REASONING_BODY,
    request_of,
    response,
    rplan,
)

REQUEST = request_of()


def summary(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, name or text) of every output item."""
    return [
        (i["type"], i.get("name") or "".join(c.get("text", "") for c in i.get("content", [])))
        for i in body["output"]
    ]


class Calls(Policy[PolicyConfig]):
    """Records every call it is shown, and lets it through."""

    gates_tool_calls = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[ToolCall] = []

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        self.calls.append(call)


async def test_an_unchanged_response_is_the_same_object() -> None:
    body = response(rplan(["hello"], ["get_weather", "read_file"]))
    for chain in (
        PolicyChain([]),
        PolicyChain([Redact()]),
        PolicyChain([BlockBash()]),
        PolicyChain([StopOnDelete(), Redact(), Calls()]),
    ):
        assert await process_message(body, chain, REQUEST) is body
    for odd in ([1], "text", {"output": "x"}, {"output": [1, "x", {"type": "message"}]}):
        assert await process_message(odd, PolicyChain([Redact(), BlockBash()]), REQUEST) is odd


async def test_texts_rewritten_and_their_logprobs_dropped() -> None:
    body = response(rplan([f"key {SECRET} ", "ok"]))
    body["output"][0]["content"][0]["logprobs"] = [{"token": "key", "logprob": -1.0}]
    original = copy.deepcopy(body)
    new = await process_message(body, PolicyChain([Redact()]), REQUEST)
    (part,) = new["output"][0]["content"]
    assert part == {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": "key [REDACTED] ok",
    }
    assert body == original  # never modified in place
    assert {k: v for k, v in new.items() if k != "output"} == {
        k: v for k, v in body.items() if k != "output"
    }


async def test_a_blocked_call_becomes_a_message_in_its_place() -> None:
    body = response(rplan(["hi"], ["get_weather", "bash", "read_file"]))
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    assert summary(new) == [
        ("message", "hi"),
        ("function_call", "get_weather"),
        ("message", "blocked bash"),
        ("function_call", "read_file"),
    ]
    # The calls let through are the upstream's own objects.
    assert new["output"][1] is body["output"][1] and new["output"][3] is body["output"][3]
    blocked = new["output"][2]
    assert blocked["role"] == "assistant" and blocked["status"] == "completed"
    assert blocked["id"] == f"msg_gw_{body['output'][2]['id']}"


async def test_a_blocked_call_first_in_the_output() -> None:
    body = response(rplan([], ["bash", "get_weather"]))
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    assert summary(new) == [("message", "blocked bash"), ("function_call", "get_weather")]


async def test_block_response_leaves_one_message_in_the_first_calls_place() -> None:
    body = response(rplan(["ok"], ["get_weather", "delete_all", "bash"]))
    new = await process_message(body, PolicyChain([StopOnDelete(), BlockBash()]), REQUEST)
    assert summary(new) == [("message", "ok"), ("message", "stopped")]
    alone = response(rplan([], ["delete_all"]))
    new = await process_message(alone, PolicyChain([StopOnDelete()]), REQUEST)
    assert summary(new) == [("message", "stopped")]


async def test_custom_and_local_shell_calls_are_gated_as_calls() -> None:
    body = response(rplan(["x"], ["apply_patch", "bash"]), {**REQUEST.body, "tools": [PATCH_TOOL]})
    shell = {
        "id": "lsh_1",
        "type": "local_shell_call",
        "call_id": "call_9",
        "status": "completed",
        "action": {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}},
    }
    body["output"].append(shell)
    policy = Calls()
    assert await process_message(body, PolicyChain([policy]), REQUEST) is body
    patch, bash, local = policy.calls
    assert (patch.name, patch.arguments, patch.raw_arguments) == (
        "apply_patch",
        {"input": "ls -la /tmp"},
        "ls -la /tmp",
    )
    assert (bash.name, bash.arguments) == ("bash", {"command": "ls -la /tmp"})
    assert (local.name, local.id, local.arguments) == ("local_shell", "call_9", shell["action"])
    assert [c.index for c in policy.calls] == [0, 1, 2]
    new = await process_message(body, PolicyChain([BlockBash()]), REQUEST)
    assert [i["type"] for i in new["output"]] == [
        "message",
        "custom_tool_call",
        "message",
        "local_shell_call",
    ]


async def test_reasoning_and_refusals_are_left_alone() -> None:
    body = response(rplan(["done"], thinking=[f"the key is {SECRET}"]), REASONING_BODY)
    assert body["output"][0]["type"] == "reasoning" and SECRET in str(body["output"][0])
    refusal = {
        "id": "msg_r",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": f"no {SECRET}"}],
    }
    body["output"].append(refusal)
    assert await process_message(body, PolicyChain([Redact()]), REQUEST) is body


async def test_provider_run_items_are_not_calls() -> None:
    body = response(rplan(["found"]))
    body["output"].append(
        {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {}}
    )
    body["output"].append(
        {"id": "mcp_1", "type": "mcp_call", "name": "bash", "arguments": "{}", "server_label": "s"}
    )
    policy = Calls()
    chain = PolicyChain([policy, BlockBash()])
    assert await process_message(body, chain, REQUEST) is body
    assert policy.calls == []


async def test_observers_see_the_whole_response() -> None:
    observer = Observer()
    body = response(rplan(["hi"]))
    assert await process_message(body, PolicyChain([observer]), REQUEST) is body
    assert observer.seen == [("response", body)]
