"""Where a Messages request keeps its visible texts
(extproc/dialects/anthropic/request_text.py)."""

from __future__ import annotations

import copy

from extproc.core.request import DeclaredTool, ToolKind
from extproc.dialects.anthropic.request_text import declared_tools, rewrite_texts, texts
from tests.helpers.dialects import IMAGE, REDACTED, THINKING, anthropic_body, strip_texts


def test_iter_texts_anthropic() -> None:
    found = list(texts(anthropic_body()))
    assert found == ["sys one", "hello", "ok", "out one", "out two", "look"]
    assert list(texts({"system": "plain", "messages": []})) == ["plain"]


def test_rewrite_texts_anthropic_leaves_the_rest_alone() -> None:
    body = anthropic_body()
    original = copy.deepcopy(body)
    new = rewrite_texts(body, str.upper)
    assert body == original  # the input is never modified
    assert new is not None
    assert list(texts(new)) == [t.upper() for t in texts(original)]
    assert new["system"][0]["cache_control"] == {"type": "ephemeral"}
    thinking_msg = new["messages"][1]["content"]
    assert thinking_msg[0] == THINKING and thinking_msg[1] == REDACTED
    assert new["messages"][2] is body["messages"][2]  # tool_use: untouched, shared
    result = new["messages"][3]["content"]
    assert result[1]["content"][1] == IMAGE and result[2] == IMAGE
    assert result[0]["tool_use_id"] == "tu_1"
    # The only differences are the texts.
    assert strip_texts(new) == strip_texts(original)


def test_rewrite_texts_none_when_unchanged() -> None:
    assert rewrite_texts(anthropic_body(), lambda s: s) is None
    # Thinking text is never offered to fn.
    assert rewrite_texts(anthropic_body(), lambda s: s.replace("plan", "")) is None


def test_only_the_system_prompt_changed() -> None:
    body = {"system": "be nice", "messages": [{"role": "user", "content": "hi"}]}
    new = rewrite_texts(body, lambda s: s.replace("nice", "kind"))
    assert new == {"system": "be kind", "messages": body["messages"]}
    assert new is not None and new["messages"] is body["messages"]


def test_a_tool_result_inside_a_tool_result_is_not_looked_into() -> None:
    inner = {"type": "tool_result", "tool_use_id": "x", "content": "deep"}
    body = {
        "messages": [{"role": "user", "content": [{"type": "tool_result", "content": [inner]}]}]
    }
    assert list(texts(body)) == []
    assert rewrite_texts(body, str.upper) is None
    # Nor are malformed messages and blocks.
    odd = {"system": 3, "messages": ["x", {"role": "user"}, {"content": [1, {"type": "text"}]}]}
    assert list(texts(odd)) == [] and rewrite_texts(odd, str.upper) is None


# -- declared tools ------------------------------------------------------------------------


def test_declared_tools_client_server_and_mcp() -> None:
    body = {
        "tools": [
            {"name": "get_weather", "input_schema": {"type": "object"}},
            {"type": "custom", "name": "lookup", "input_schema": {}},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
            {"type": "memory_20250818", "name": "memory"},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            {"type": "web_fetch_20250910", "name": "web_fetch"},
            {"type": "code_execution_20250825", "name": "code_execution"},
            # A typed tool the gateway does not know runs at Anthropic: a server tool.
            {"type": "teleport_20300101", "name": "teleport"},
            "not a tool",
        ],
        "mcp_servers": [
            {"type": "url", "url": "https://mcp.example.com/sse?key=k", "name": "example"},
            {"type": "url", "name": "no-url"},
            "junk",
        ],
    }
    assert declared_tools(body) == [
        DeclaredTool(ToolKind.CLIENT, "get_weather"),
        DeclaredTool(ToolKind.CLIENT, "lookup"),
        DeclaredTool(ToolKind.CLIENT, "bash"),
        DeclaredTool(ToolKind.CLIENT, "str_replace_based_edit_tool"),
        DeclaredTool(ToolKind.CLIENT, "computer"),
        DeclaredTool(ToolKind.CLIENT, "memory"),
        DeclaredTool(ToolKind.SERVER, "web_search_20250305"),
        DeclaredTool(ToolKind.SERVER, "web_fetch_20250910"),
        DeclaredTool(ToolKind.SERVER, "code_execution_20250825"),
        DeclaredTool(ToolKind.SERVER, "teleport_20300101"),
        DeclaredTool(ToolKind.MCP, "example", "https://mcp.example.com/sse?key=k"),
        DeclaredTool(ToolKind.MCP, "no-url", None),
    ]


def test_declared_tools_of_a_body_without_tools() -> None:
    assert declared_tools(anthropic_body()) == []
    assert declared_tools({"tools": "x", "mcp_servers": {"url": "u"}}) == []
    assert declared_tools({"tools": [{"type": 7}]}) == [DeclaredTool(ToolKind.SERVER, "7")]
