"""all_caps (extproc/policies/all_caps.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from extproc.policies.all_caps import AllCapsConfig, AllCapsPolicy, AllCapsRewriter
from tests.helpers.engine import CUTS, rewrite_stream, rewrite_whole, rewriter_of, split_text


@given(text=st.text(max_size=40), cuts=CUTS)
def test_all_caps_streams_like_whole(text: str, cuts: list[int]) -> None:
    rw = rewriter_of(AllCapsPolicy())
    assert rw.holdback == 0 and AllCapsPolicy.rewrites_text and AllCapsPolicy().name == "all_caps"
    assert rewrite_stream(rw, split_text(text, cuts)) == rewrite_whole(rw, text) == text.upper()


def test_only_text_that_changes_is_a_span() -> None:
    rw = AllCapsRewriter()
    assert rw.spans("ABC 123", 0) == []
    (span,) = rw.spans("sent new", 5)
    assert (span.start, span.end, span.replacement) == (5, 8, "NEW")
    assert AllCapsPolicy.Config is AllCapsConfig
    assert isinstance(AllCapsPolicy().config, AllCapsConfig)
    assert not AllCapsPolicy.gates_tool_calls and AllCapsPolicy.reads_responses()
