"""string_replacement (extproc/policies/string_replacement.py), and the rewriter contract
the tests drive it with."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.core.rewriting import Span
from extproc.dialects.registry import OPENAI_CHAT
from extproc.policies.string_replacement import (
    StringReplacementConfig,
    StringReplacementPolicy,
)
from tests.helpers.dialects import anthropic_body, api_request, openai_body
from tests.helpers.engine import CUTS, rewrite_stream, rewrite_whole, rewriter_of, split_text


def replacer(*items: dict[str, Any], **kw: Any) -> StringReplacementPolicy:
    return StringReplacementPolicy(
        StringReplacementConfig.model_validate({"replacements": items, **kw})
    )


# -- the driver itself -------------------------------------------------------------------


def test_driver_holds_back_and_never_splits_a_span() -> None:
    rw = rewriter_of(replacer({"pattern": "secret", "replacement": "XX"}))
    assert rw.holdback == 6
    assert rewrite_stream(rw, ["a se", "cr", "et b ", "", "secre", "t"]) == "a XX b XX"
    assert rewrite_stream(rw, list("my secret is secret")) == "my XX is XX"


# -- the policy --------------------------------------------------------------------------


def test_literal_default_holdback_and_ignore_case() -> None:
    policy = replacer(
        {"pattern": "foo", "replacement": "bar"},
        {"pattern": "Hello World", "replacement": "hi", "ignore_case": True},
    )
    assert policy.config.effective_holdback == 11
    assert policy.rewrite("HELLO world, foo!") == "hi, bar!"


def test_regex_groups_and_default_holdback() -> None:
    policy = replacer(
        {"pattern": r"(\w+)@(?P<host>\w+)\.com", "replacement": r"\g<host>:\1", "regex": True}
    )
    assert policy.config.effective_holdback == 256
    assert policy.rewrite("mail bob@corp.com") == "mail corp:bob"


def test_explicit_holdback_and_long_literals_with_a_regex() -> None:
    long = "x" * 300
    policy = replacer(
        {"pattern": long, "replacement": "L"}, {"pattern": "a+", "replacement": "A", "regex": True}
    )
    assert policy.config.effective_holdback == 300  # the longest literal beats 256
    assert (
        replacer({"pattern": "ab", "replacement": ""}, holdback=10).config.effective_holdback == 10
    )
    assert policy.rewrite(long + " aaa") == "L A"


def test_overlaps_first_start_wins_then_list_order() -> None:
    policy = replacer(
        {"pattern": "bc", "replacement": "2"},
        {"pattern": "abc", "replacement": "1"},
        {"pattern": "ab", "replacement": "3"},
    )
    # "abc" and "ab" start first; "abc" is listed first among them.
    assert policy.rewrite("abcd bcd") == "1d 2d"
    # Replacements do not apply to each other's output.
    chain = replacer({"pattern": "a", "replacement": "b"}, {"pattern": "b", "replacement": "c"})
    assert chain.rewrite("ab") == "bc"


def test_match_before_start_is_not_returned() -> None:
    rw = rewriter_of(replacer({"pattern": "abc", "replacement": "X"}))
    assert list(rw.spans("abcabc", 1)) == [Span(3, 6, "X")]
    assert list(rw.spans("abcabc", 4)) == []


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"replacements": []}, "at least 1"),
        ({"replacements": [{"pattern": "x(", "replacement": "", "regex": True}]}, "'x('"),
        ({"replacements": [{"pattern": "a*", "replacement": "", "regex": True}]}, "empty string"),
        ({"replacements": [{"pattern": "(a)", "replacement": r"\2", "regex": True}]}, "group"),
        ({"replacements": [{"pattern": "", "replacement": "x"}]}, "pattern"),
        ({"replacements": [{"pattern": "abcdef", "replacement": ""}], "holdback": 3}, "holdback"),
        ({"replacements": [{"pattern": "a", "replacement": "", "regx": True}]}, "regx"),
    ],
)
def test_string_replacement_config_errors(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        StringReplacementConfig(**config)


@given(
    text=st.text(alphabet="ab c", max_size=50),
    pattern=st.sampled_from(["ab", "aba", "a b", "bb", "abab"]),
    cuts=CUTS,
)
def test_literal_streams_like_str_replace(text: str, pattern: str, cuts: list[int]) -> None:
    rw = rewriter_of(replacer({"pattern": pattern, "replacement": "<>"}))
    expected = text.replace(pattern, "<>")
    assert rewrite_whole(rw, text) == expected
    assert rewrite_stream(rw, split_text(text, cuts)) == expected


@given(text=st.text(alphabet="abc d", max_size=50), cuts=CUTS)
def test_several_literals_stream_like_whole(text: str, cuts: list[int]) -> None:
    rw = rewriter_of(
        replacer(
            {"pattern": "abc", "replacement": "1"},
            {"pattern": "ca", "replacement": "22"},
            {"pattern": "d d", "replacement": ""},
            {"pattern": "B", "replacement": "3", "ignore_case": True},
        )
    )
    assert rewrite_stream(rw, split_text(text, cuts)) == rewrite_whole(rw, text)


@given(text=st.text(alphabet="ab -", max_size=50), cuts=CUTS)
def test_regex_with_boundaries_streams_like_re_sub(text: str, cuts: list[int]) -> None:
    # The longest match is 4 characters; \b looks one further, which a hold-back of 4
    # already covers (a sent match starts strictly before the hold-back window).
    pattern = r"\b(a)(b{1,3})\b"
    rw = rewriter_of(
        replacer({"pattern": pattern, "replacement": r"[\2\1]", "regex": True}, holdback=4)
    )
    expected = re.sub(pattern, r"[\2\1]", text)
    assert rewrite_whole(rw, text) == expected
    assert rewrite_stream(rw, split_text(text, cuts)) == expected


# -- on requests -------------------------------------------------------------------------


async def test_string_replacement_on_request() -> None:
    config = {"replacements": [{"pattern": "hello", "replacement": "bye"}]}
    off = StringReplacementPolicy(StringReplacementConfig.model_validate(config))
    req = api_request(anthropic_body())
    assert await off.on_request(req) is None and not req.body_changed
    on_config = StringReplacementConfig.model_validate({**config, "apply_to_request": True})
    on = StringReplacementPolicy(on_config)
    verdict = await on.on_request(req)
    assert req.body_changed and verdict is not None and verdict.evidence is not None
    assert verdict.evidence.matches == {"pattern 1": 1}
    assert req.body["messages"][0]["content"] == "bye"
    unchanged = api_request(openai_body(), OPENAI_CHAT)
    assert await on.on_request(unchanged) is None and not unchanged.body_changed
