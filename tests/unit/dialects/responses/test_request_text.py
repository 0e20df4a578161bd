"""Where a Responses API request keeps its visible texts and its tools
(extproc/dialects/responses/request_text.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from extproc.core.request import DeclaredTool, ToolKind
from extproc.dialects.responses.request_text import (
    declared_tools,
    last_user_text,
    rewrite_texts,
    system_prompt,
    texts,
)

REASONING = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "plan"}],
    "encrypted_content": "gAAAAAsecret",
}
CALL = {
    "type": "function_call",
    "call_id": "call_1",
    "name": "bash",
    "arguments": '{"command": "cat notes"}',
}
IMAGE = {"type": "input_image", "detail": "auto", "image_url": "data:image/png;base64,abc"}
FILE = {"type": "input_file", "file_id": "file_1"}


def body() -> dict[str, Any]:
    """A Codex-like request: instructions, every kind of item with text, and items whose
    text is not for people (arguments, reasoning)."""
    return {
        "model": "gpt-5",
        "instructions": "be terse",
        "input": [
            {"role": "developer", "content": "dev rules"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}, IMAGE],
            },
            REASONING,
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "sure", "annotations": []},
                    {"type": "refusal", "refusal": "no way"},
                ],
            },
            CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": "notes: hi"},
            {
                "type": "custom_tool_call",
                "call_id": "call_2",
                "name": "apply_patch",
                "input": "*** Begin Patch",
            },
            {
                "type": "custom_tool_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "patched"}, FILE],
            },
            {"type": "item_reference", "id": "msg_0"},
            {"role": "user", "content": [{"type": "input_text", "text": "now go"}]},
        ],
        "tools": [{"type": "function", "name": "bash", "parameters": {}}],
    }


# A replayed refusal is text the model reads again: it counts.
ALL_TEXTS = ["be terse", "dev rules", "hello", "sure", "no way", "notes: hi", "patched", "now go"]


def test_texts() -> None:
    assert list(texts(body())) == ALL_TEXTS
    assert list(texts({"instructions": "sys", "input": "just this"})) == ["sys", "just this"]
    assert list(texts({"input": [{"role": "user", "content": "plain"}]})) == ["plain"]
    # A tool output given as parts; an input_text part in an assistant message counts too.
    outputs = {
        "input": [
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_text", "text": "a"}],
            },
            {"type": "custom_tool_call_output", "call_id": "d", "output": "b"},
        ]
    }
    assert list(texts(outputs)) == ["a", "b"]


@pytest.mark.parametrize(
    "odd",
    [
        {},
        {"instructions": 3, "input": 7},
        {"input": {"role": "user", "content": "x"}},
        {"input": ["x", 1, None, {"content": "no role"}, {"role": "user"}]},
        {"input": [{"role": "user", "content": [1, {"type": "input_text"}, {"text": "no type"}]}]},
        {
            "input": [
                {"type": "function_call_output", "output": 3},
                {"type": "message", "content": "x"},
            ]
        },
    ],
)
def test_malformed_bodies_have_no_texts_and_no_rewrite(odd: dict[str, Any]) -> None:
    assert list(texts(odd)) == []
    assert rewrite_texts(odd, str.upper) is None
    assert system_prompt(odd) == "" and last_user_text(odd) == ""


def test_rewrite_texts_rewrites_every_text_and_nothing_else() -> None:
    original = body()
    kept = copy.deepcopy(original)
    new = rewrite_texts(original, str.upper)
    assert original == kept  # never modified in place
    assert new is not None
    assert list(texts(new)) == [t.upper() for t in ALL_TEXTS]
    items, old = new["input"], original["input"]
    # Not texts for policies: arguments, reasoning (encrypted), references, other parts.
    for n in (2, 4, 6, 8):
        assert items[n] is old[n]
    assert items[1]["content"][1] is IMAGE and items[7]["output"][1] is FILE
    assert items[3]["content"][1] == {"type": "refusal", "refusal": "NO WAY"}
    assert items[3]["content"][0] == {"type": "output_text", "text": "SURE", "annotations": []}
    assert {k: v for k, v in items[3].items() if k != "content"} == {
        k: v for k, v in old[3].items() if k != "content"
    }
    assert new["tools"] is original["tools"] and new["model"] == "gpt-5"


def test_a_string_input_and_the_instructions() -> None:
    new = rewrite_texts({"instructions": "sys", "input": "hi"}, lambda s: s.replace("hi", "HI"))
    assert new == {"instructions": "sys", "input": "HI"}
    new = rewrite_texts({"instructions": "sys", "input": "hi"}, lambda s: s.replace("sys", "S"))
    assert new == {"instructions": "S", "input": "hi"}


def test_rewrite_returns_none_when_unchanged_and_shares_unchanged_parts() -> None:
    original = body()
    assert rewrite_texts(original, lambda s: s) is None
    # Texts not offered to fn: arguments, reasoning, custom tool input.
    assert rewrite_texts(original, lambda s: s.replace("cat", "dog")) is None
    assert rewrite_texts(original, lambda s: s.replace("plan", "x")) is None
    assert rewrite_texts(original, lambda s: s.replace("Begin", "x")) is None
    new = rewrite_texts(original, lambda s: s.replace("patched", "PATCHED"))
    assert new is not None
    changed = [
        n
        for n, (a, b) in enumerate(zip(new["input"], original["input"], strict=True))
        if a is not b
    ]
    assert changed == [7]
    assert new["input"][7]["output"][1] is FILE
    assert new["instructions"] is original["instructions"]


def test_system_prompt() -> None:
    assert system_prompt(body()) == "be terse\n\ndev rules"
    parts = {
        "input": [
            {
                "role": "system",
                "content": [
                    {"type": "input_text", "text": "one"},
                    {"type": "input_text", "text": "two"},
                ],
            },
            {"role": "user", "content": "not this"},
            {"type": "message", "role": "developer", "content": "three"},
            {"role": "developer", "content": ""},
        ]
    }
    assert system_prompt(parts) == "one\ntwo\n\nthree"
    assert system_prompt({"instructions": "", "input": "x"}) == ""
    assert system_prompt({"instructions": "only", "input": "x"}) == "only"


def test_last_user_text() -> None:
    assert last_user_text(body()) == "now go"
    assert last_user_text({"input": "a string"}) == "a string"
    history = {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "first"},
                    {"type": "input_text", "text": "more"},
                ],
            },
            {"role": "assistant", "content": "answer"},
            # A user turn with only an image, then a tool output: no text, skipped.
            {"role": "user", "content": [IMAGE]},
            {"type": "function_call_output", "call_id": "c", "output": "tool says"},
        ]
    }
    assert last_user_text(history) == "first\nmore"
    assert last_user_text({"input": [{"role": "assistant", "content": "x"}]}) == ""


def test_declared_tools() -> None:
    tools = [
        {"type": "function", "name": "bash", "parameters": {}},
        {"type": "custom", "name": "apply_patch"},
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"},
        {
            "type": "mcp",
            "server_label": "deepwiki",
            "server_url": "https://mcp.deepwiki.com/mcp?token=t",
        },
        {
            "type": "mcp",
            "server_label": "stripe",
            "connector_id": "connector_stripe",
            "server_url": 3,
        },
        {"type": "local_shell"},
        {"type": "shell"},
        {"type": "apply_patch"},
        {"type": "computer_use_preview", "display_width": 1024},
        {
            "type": "namespace",
            "name": "fs",
            "tools": [
                {"type": "function", "name": "read"},
                {"type": "custom", "name": "write"},
                "x",
            ],
        },
        "not a tool",
    ]
    assert declared_tools({"tools": tools}) == [
        DeclaredTool(ToolKind.CLIENT, "bash"),
        DeclaredTool(ToolKind.CLIENT, "apply_patch"),
        DeclaredTool(ToolKind.SERVER, "web_search"),
        DeclaredTool(ToolKind.SERVER, "file_search"),
        DeclaredTool(ToolKind.SERVER, "code_interpreter"),
        DeclaredTool(ToolKind.SERVER, "image_generation"),
        DeclaredTool(ToolKind.MCP, "deepwiki", "https://mcp.deepwiki.com/mcp?token=t"),
        DeclaredTool(ToolKind.MCP, "stripe", None),
        DeclaredTool(ToolKind.CLIENT, "local_shell"),
        DeclaredTool(ToolKind.CLIENT, "shell"),
        DeclaredTool(ToolKind.CLIENT, "apply_patch"),
        DeclaredTool(ToolKind.CLIENT, "computer_use_preview"),
        DeclaredTool(ToolKind.CLIENT, "read"),
        DeclaredTool(ToolKind.CLIENT, "write"),
    ]
    assert declared_tools({}) == [] and declared_tools({"tools": "x"}) == []
    # A server tool type the gateway does not know yet is still a server tool.
    assert declared_tools({"tools": [{"type": "web_search_2030"}]}) == [
        DeclaredTool(ToolKind.SERVER, "web_search_2030")
    ]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"prompt": {"id": "p", "variables": {"q": "said"}}}, "said"),
        (
            {"prompt": {"id": "p", "variables": {"q": {"type": "input_text", "text": "said"}}}},
            "said",
        ),
        ({"input": [{"type": "local_shell_call_output", "id": "x", "output": "said"}]}, "said"),
        (
            {
                "input": [
                    {"type": "shell_call_output", "call_id": "c", "output": [{"stdout": "said"}]}
                ]
            },
            "said",
        ),
        (
            {"input": [{"type": "apply_patch_call_output", "call_id": "c", "output": "said"}]},
            "said",
        ),
        (
            {
                "input": [
                    {"type": "mcp_approval_response", "approval_request_id": "a", "reason": "said"}
                ]
            },
            "said",
        ),
        ({"instructions": [{"role": "developer", "content": "said"}], "input": "x"}, "said"),
    ],
)
def test_every_text_the_model_reads_is_offered(body: dict[str, Any], text: str) -> None:
    assert text in list(texts(body))
    new = rewrite_texts(body, lambda s: s.replace("said", "SAID"))
    assert new is not None and "SAID" in list(texts(new)) and "said" not in list(texts(new))
