"""A provider's usage reports merged over a stream: the last output count is the total,
and an input or cache count, once known, is not wiped by a later 0."""

from __future__ import annotations

from extproc.core.usage import Usage, count, field_count


def test_a_later_report_adds_what_it_states_and_keeps_the_rest() -> None:
    start = Usage(input_tokens=472, output_tokens=2, cache_read_tokens=5, cache_write_tokens=7)
    assert start.merged(Usage(output_tokens=89)) == Usage(472, 89, 5, 7)
    assert start.merged(None) is start
    assert Usage().merged(Usage(input_tokens=3)) == Usage(input_tokens=3)


def test_output_tokens_later_wins_even_when_smaller() -> None:
    # A stream's last count is its total, whatever came before.
    assert Usage(output_tokens=10).merged(Usage(output_tokens=4)).output_tokens == 4
    assert Usage(output_tokens=10).merged(Usage(output_tokens=0)).output_tokens == 0


def test_a_later_zero_does_not_wipe_an_input_or_cache_count() -> None:
    # SGLang and other Anthropic-compatible servers send `input_tokens: 0` (and zero
    # cache counts) in message_delta, after message_start had the real ones.
    start = Usage(input_tokens=472, output_tokens=1, cache_read_tokens=30, cache_write_tokens=12)
    delta = Usage(input_tokens=0, output_tokens=89, cache_read_tokens=0, cache_write_tokens=0)
    assert start.merged(delta) == Usage(472, 89, 30, 12)


def test_a_later_positive_count_still_replaces_an_earlier_one() -> None:
    assert Usage(input_tokens=3).merged(Usage(input_tokens=5)).input_tokens == 5
    assert Usage(input_tokens=0).merged(Usage(input_tokens=5)).input_tokens == 5
    assert Usage(input_tokens=0).merged(Usage(input_tokens=0)).input_tokens == 0
    assert Usage().merged(Usage(cache_read_tokens=0)).cache_read_tokens == 0


def test_counts_are_non_negative_integers_only() -> None:
    assert [count(v) for v in (3, 0, -1, True, 2.5, "4", None)] == [
        3,
        0,
        None,
        None,
        None,
        None,
        None,
    ]
    assert field_count({"a": {"b": 7}}, "a", "b") == 7
    assert field_count({"a": [1]}, "a", "b") is None
