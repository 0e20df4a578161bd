"""Where a chat completions request keeps its visible texts
(extproc/dialects/openai/request_text.py)."""

from __future__ import annotations

import copy

from extproc.dialects.openai.request_text import rewrite_texts, texts
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
