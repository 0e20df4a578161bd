"""Durations as OpenAI writes them in `x-ratelimit-reset-*` (Go's `time.Duration`
format): what SDKs parse to know when to retry."""

from __future__ import annotations

import pytest

from extproc.core.allowance import go_duration


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (0.2, "200ms"),
        (0.001, "1ms"),
        (0, "0ms"),
        (1, "1s"),
        (40, "40s"),
        (59, "59s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (3599, "59m59s"),
        (3600, "1h0m0s"),
        (86_400, "24h0m0s"),
        (90_061, "25h1m1s"),
    ],
)
def test_durations_are_written_the_way_go_writes_them(seconds: float, written: str) -> None:
    assert go_duration(seconds) == written


def test_every_whole_millisecond_below_a_second_is_written_exactly() -> None:
    """`n / 1000 * 1000` is not always `n` in floating point; none is written one less."""
    assert [go_duration(n / 1000) for n in range(1000)] == [f"{n}ms" for n in range(1000)]


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        # A fraction of a second above a whole one: the reset is never said earlier
        # than it is, so the next second is named...
        (1.002, "2s"),
        (1.5, "2s"),
        (59.5, "1m0s"),
        (3599.5, "1h0m0s"),
        # ...while float noise of less than a millisecond does not add a second.
        (1.0005, "1s"),
        (40.000_000_001, "40s"),
        # Below a second, milliseconds are rounded up too.
        (0.9999, "1s"),
        (0.0004, "1ms"),
    ],
)
def test_rounding(seconds: float, written: str) -> None:
    assert go_duration(seconds) == written


def test_a_negative_duration_is_zero() -> None:
    assert go_duration(-3) == "0ms"
