"""Output items as the Responses engines change them
(extproc/dialects/responses/items.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.core.decisions import ToolCall
from extproc.dialects.responses import items as itm

FUNCTION: dict[str, Any] = {
    "id": "fc_1",
    "type": "function_call",
    "status": "completed",
    "arguments": '{"command": "ls"}',
    "call_id": "call_1",
    "name": "bash",
}
MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [
        {"type": "output_text", "text": "one", "annotations": [], "logprobs": [{"t": 1}]},
        {"type": "refusal", "refusal": "no"},
        {"type": "output_text", "text": "two", "annotations": [{"type": "x"}], "logprobs": []},
    ],
}


def test_item_kinds() -> None:
    assert {
        "function_call",
        "custom_tool_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "computer_call",
    } == itm.GATED_ITEMS
    assert not itm.GATED_ITEMS & itm.PROVIDER_RUN_ITEMS
    assert {"web_search_call", "mcp_call", "code_interpreter_call"} <= itm.PROVIDER_RUN_ITEMS


def test_item_key() -> None:
    assert itm.item_key(FUNCTION) == "fc_1"
    assert itm.item_key({"call_id": "call_2", "id": None}) == "call_2"
    assert itm.item_key({"type": "message"}) == ""


@pytest.mark.parametrize(
    ("kind", "field", "name"),
    [
        ("shell_call", "action", "shell"),
        ("apply_patch_call", "operation", "apply_patch"),
        ("computer_call", "action", "computer"),
        ("local_shell_call", "action", "local_shell"),
    ],
)
def test_api_defined_calls_are_named_by_their_tool(kind: str, field: str, name: str) -> None:
    asked = {"commands": ["rm -rf /"], "type": "exec"}
    item = {"type": kind, "id": "x_1", "call_id": "call_9", field: asked}
    call = itm.tool_call(item, 3)
    assert call is not None
    assert (call.id, call.name, call.arguments, call.index) == ("call_9", name, asked, 3)
    assert orjson.loads(call.raw_arguments) == asked


def test_tool_call_of_each_gated_item() -> None:
    assert itm.tool_call(FUNCTION, 3) == ToolCall(
        "call_1", "bash", {"command": "ls"}, '{"command": "ls"}', 3
    )
    # Arguments that are not a JSON object: policies still get the raw text.
    broken = itm.tool_call({**FUNCTION, "arguments": '{"command": "l'}, 0)
    assert broken is not None
    assert (broken.arguments, broken.raw_arguments) == ({}, '{"command": "l')
    missing = itm.tool_call({"type": "function_call", "id": "fc_9"}, 0)
    assert missing == ToolCall("fc_9", "", {}, "", 0)
    custom = {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "*** x"}
    assert itm.tool_call(custom, 1) == ToolCall("c", "apply_patch", {"input": "*** x"}, "*** x", 1)
    action = {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}}
    shell = {"type": "local_shell_call", "id": "lsh", "call_id": "c2", "action": action}
    assert itm.tool_call(shell, 2) == ToolCall(
        "c2",
        "local_shell",
        action,
        '{"type":"exec","command":["rm","-rf","/"],"env":{}}',
        2,
    )
    no_action = itm.tool_call({"type": "local_shell_call", "call_id": "c3", "action": "x"}, 0)
    assert no_action is not None and no_action.arguments == {}
    for other in (MESSAGE, {"type": "web_search_call"}, {"type": "reasoning"}, {}):
        assert itm.tool_call(other, 0) is None


def test_message_item() -> None:
    done = itm.message_item("fc_1", "blocked bash")
    assert done == {
        "id": "msg_gw_fc_1",
        "type": "message",
        "status": "completed",
        "content": [
            {"type": "output_text", "annotations": [], "logprobs": [], "text": "blocked bash"}
        ],
        "role": "assistant",
    }
    started = itm.message_item("fc_1", "", status="in_progress")
    assert started["content"] == [] and started["id"] == done["id"]
    assert itm.text_part("x") == {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": "x",
    }


def test_with_texts_replaces_texts_and_drops_their_logprobs() -> None:
    new = itm.with_texts(MESSAGE, {0: "ONE", 2: "TWO"})
    assert new["content"] == [
        {"type": "output_text", "text": "ONE", "annotations": [], "logprobs": []},
        MESSAGE["content"][1],
        {"type": "output_text", "text": "TWO", "annotations": [{"type": "x"}], "logprobs": []},
    ]
    assert new["content"][1] is MESSAGE["content"][1]
    assert MESSAGE["content"][0]["text"] == "one"  # the original is never modified
    assert {k: v for k, v in new.items() if k != "content"} == {
        k: v for k, v in MESSAGE.items() if k != "content"
    }
    # Indices past the content, and items without content, are left alone.
    assert itm.with_texts(MESSAGE, {7: "x"})["content"] == MESSAGE["content"]
    assert itm.with_texts(FUNCTION, {0: "x"}) is FUNCTION


def test_rewrite_output() -> None:
    reasoning: dict[str, Any] = {"id": "rs_1", "type": "reasoning", "summary": []}
    other = {**FUNCTION, "id": "fc_2", "call_id": "call_2", "name": "read"}
    output: list[Any] = [reasoning, MESSAGE, FUNCTION, other, "junk"]
    block = itm.message_item("fc_1", "blocked bash")
    new = itm.rewrite_output(output, {"fc_1": block}, {"msg_1": {0: "ONE"}})
    assert new is not None
    assert new[0] is reasoning and new[2] is block and new[3] is other and new[4] == "junk"
    assert new[1]["content"][0]["text"] == "ONE"
    # A dropped call goes; the others keep their order.
    dropped = itm.rewrite_output(output, {"fc_1": None, "fc_2": None}, {})
    assert dropped == [reasoning, MESSAGE, "junk"]
    assert itm.rewrite_output(output, {}, {}) is None
    assert itm.rewrite_output(output, {"fc_404": None}, {"msg_404": {0: "x"}}) is None
