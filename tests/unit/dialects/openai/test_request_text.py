"""Where a chat completions request keeps its visible texts
(extproc/dialects/openai/request_text.py)."""

from __future__ import annotations

import copy

from extproc.core.request import DeclaredTool, ToolKind
from extproc.dialects.openai.request_text import declared_tools, rewrite_texts, texts
from tests.helpers.dialects import openai_body, strip_texts


def test_iter_texts_openai() -> None:
    assert list(texts(openai_body())) == ["sys", "dev", "hi", "files"]
    assert list(texts({"messages": "junk"})) == []


def test_rewrite_texts_openai_leaves_the_rest_alone() -> None:
    body = openai_body()
    original = copy.deepcopy(body)
    new = rewrite_texts(body, lambda s: s + "!")
    assert body == original and new is not None
    assert list(texts(new)) == ["sys!", "dev!", "hi!", "files!"]
    assert new["messages"][3] is body["messages"][3]  # tool calls untouched
    assert new["messages"][2]["content"][1] == original["messages"][2]["content"][1]
    assert strip_texts(new) == strip_texts(original)


def test_rewrite_texts_none_when_unchanged() -> None:
    assert rewrite_texts(openai_body(), lambda s: s.replace("zzz", "")) is None
    assert rewrite_texts({"messages": "junk"}, str.upper) is None


def test_unchanged_messages_and_parts_are_shared() -> None:
    body = openai_body()
    new = rewrite_texts(body, lambda s: s.replace("dev", "DEV"))
    assert new is not None and new["messages"][1]["content"] == [{"type": "text", "text": "DEV"}]
    assert all(new["messages"][i] is body["messages"][i] for i in (0, 2, 3, 4))
    assert new["model"] == body["model"]


# -- declared tools ------------------------------------------------------------------------


def test_declared_tools() -> None:
    body = {
        **openai_body(),
        "tools": [
            {"type": "function", "function": {"name": "bash", "parameters": {}}},
            {"type": "function", "function": {"name": "read_file"}},
        ],
    }
    assert declared_tools(body) == [
        DeclaredTool(ToolKind.CLIENT, "bash"),
        DeclaredTool(ToolKind.CLIENT, "read_file"),
    ]
    assert declared_tools(openai_body()) == []


def test_web_search_options_declare_the_providers_web_search() -> None:
    body = {**openai_body(), "web_search_options": {"search_context_size": "low"}}
    assert declared_tools(body) == [DeclaredTool(ToolKind.SERVER, "web_search")]
    odd = {"tools": [{"type": "function"}, "x"], "web_search_options": {}}
    assert declared_tools(odd) == [
        DeclaredTool(ToolKind.CLIENT, ""),
        DeclaredTool(ToolKind.CLIENT, ""),
        DeclaredTool(ToolKind.SERVER, "web_search"),
    ]
