"""What policies match with (extproc/policies/matching.py)."""

from __future__ import annotations

import re

import pytest

from extproc.core.rewriting import HoldsGrowingMatches, Span
from extproc.policies.matching import (
    FinderRewriter,
    GrowingFinderRewriter,
    apply_spans,
    check_format,
    compile_regex,
    leftmost_spans,
    literal_finder,
    matches_any,
    regex_finder,
)


def test_matches_any_is_a_case_sensitive_glob() -> None:
    assert matches_any("read_file", ["write_*", "read_*"])
    assert not matches_any("Read_file", ["read_*"])
    assert matches_any("a.b", ["a?b"]) and not matches_any("anything", [])


def test_compile_regex_names_the_bad_pattern() -> None:
    assert compile_regex("a+", re.IGNORECASE).search("xAA") is not None
    with pytest.raises(ValueError, match=re.escape("invalid regular expression 'a('")):
        compile_regex("a(")


def test_check_format() -> None:
    assert check_format("{tool}: {reason}", "msg", tool="t", reason="r") == "{tool}: {reason}"
    with pytest.raises(ValueError, match=re.escape("placeholders: {tool}")) as info:
        check_format("{nope}", "block_message", tool="t")
    assert "block_message '{nope}'" in str(info.value)
    with pytest.raises(ValueError, match="placeholders: none"):
        check_format("{0}", "field")
    with pytest.raises(ValueError, match="not a valid template"):
        check_format("{tool", "field", tool="t")


def test_literal_finder() -> None:
    find = literal_finder("ab", "X")
    assert find("xxabab", 0) == (2, 4, "X")
    assert find("xxabab", 3) == (4, 6, "X")
    assert find("xxabab", 5) is None


def test_regex_finder_skips_empty_and_rejected_matches() -> None:
    # A match the replace function rejects: the search goes on from the next character.
    even = regex_finder(re.compile(r"\d+"), lambda m: "E" if int(m.group()) % 2 == 0 else None)
    assert even("a 13 24", 0) == (5, 7, "E")
    assert even("odd 1 3", 0) is None
    single = regex_finder(re.compile(r"\d+"), lambda m: "D" if len(m.group()) == 1 else None)
    assert single("a 123", 0) == (4, 5, "D")  # "123" and "23" rejected, then "3"
    empty = regex_finder(re.compile(r"(?=a)|b"), lambda m: "B")
    assert empty("ab", 0) == (1, 2, "B")  # the empty look-ahead match is skipped
    # It may look before `pos` (look-behind), but matches only from there.
    behind = regex_finder(re.compile(r"(?<=x)y"), lambda m: "Y")
    assert behind("xyxy", 2) == (3, 4, "Y")


def test_leftmost_spans_first_start_wins_then_finder_order() -> None:
    finders = [literal_finder("bc", "2"), literal_finder("abc", "1"), literal_finder("ab", "3")]
    assert leftmost_spans("abcd bcd", 0, finders) == [Span(0, 3, "1"), Span(5, 7, "2")]
    assert leftmost_spans("abcd bcd", 1, finders) == [Span(1, 3, "2"), Span(5, 7, "2")]
    assert leftmost_spans("none", 0, finders) == [] and leftmost_spans("abc", 0, []) == []


def test_apply_spans() -> None:
    assert apply_spans("hello world", [Span(0, 5, "bye"), Span(6, 11, "")]) == "bye "
    assert apply_spans("same", []) == "same"


def test_finder_rewriter() -> None:
    rw = FinderRewriter([literal_finder("cat", "dog")], holdback=3)
    assert rw.holdback == 3 and rw.spans("a cat", 0) == [Span(2, 5, "dog")]
    assert rw.rewrite("cat cat") == "dog dog" and rw.rewrite("none") == "none"
    assert not isinstance(rw, HoldsGrowingMatches)


def test_growing_finder_rewriter_says_where_a_match_may_grow() -> None:
    seen: list[tuple[str, int]] = []

    def hold_from(text: str, start: int) -> int | None:
        seen.append((text, start))
        return text.find("<<", start) if "<<" in text[start:] else None

    rw = GrowingFinderRewriter([literal_finder("x", "y")], 1, hold_from)
    assert isinstance(rw, HoldsGrowingMatches)
    assert rw.hold_from("ab<<c", 1) == 2 and rw.hold_from("abc", 0) is None
    assert seen == [("ab<<c", 1), ("abc", 0)]
    assert rw.rewrite("xx") == "yy"
