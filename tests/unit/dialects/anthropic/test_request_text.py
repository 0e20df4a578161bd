"""Where a Messages request keeps its visible texts
(extproc/dialects/anthropic/request_text.py)."""

from __future__ import annotations

import copy

from extproc.dialects.anthropic.request_text import rewrite_texts, texts
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
