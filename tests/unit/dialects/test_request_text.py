"""The helpers the dialects share for a request's texts (extproc/dialects/request_text.py)."""

from __future__ import annotations

from typing import Any

from extproc.dialects.request_text import (
    last_user_text,
    messages_of,
    rewrite_list,
    rewrite_messages,
    rewrite_str,
    text_of,
)


def test_messages_of_keeps_only_objects() -> None:
    assert messages_of({"messages": [{"role": "user"}, "x", 1]}) == [{"role": "user"}]
    assert messages_of({"messages": "junk"}) == [] and messages_of({}) == []


def test_text_of() -> None:
    assert text_of("plain") == "plain"
    blocks = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "input_text", "text": "b"}]
    assert text_of(blocks) == "a"
    assert text_of(blocks, ("text", "input_text")) == "a\nb"
    assert text_of([{"type": "text", "text": 3}, "x"]) == "" and text_of(None) == ""


def test_last_user_text_skips_messages_without_text() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "tool_result", "content": "out"}]},
            {"role": "user", "content": "   "},
        ]
    }
    assert last_user_text(body) == "first"
    assert last_user_text({"messages": []}) == ""


def test_rewriting_copies_only_what_changed() -> None:
    text = "same"
    assert rewrite_str(text, lambda s: s) is text
    assert rewrite_str(text, str.upper) == "SAME"
    items: list[Any] = ["a", "b"]
    assert rewrite_list(items, lambda x: x) is items
    new = rewrite_list(items, lambda x: x.upper() if x == "b" else x)
    assert new == ["a", "B"] and items == ["a", "b"]
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}, {"role": "user"}, 3],
    }
    assert rewrite_messages(body, lambda c: c) is None
    changed = rewrite_messages(body, lambda c: c + "!")
    assert changed == {
        **body,
        "messages": [{"role": "user", "content": "x!"}, *body["messages"][1:]],
    }
    assert body["messages"][0]["content"] == "x"
    assert rewrite_messages({"messages": "junk"}, lambda c: c) is None
