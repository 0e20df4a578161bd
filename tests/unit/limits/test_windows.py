"""Fixed windows keyed by UTC period, at their boundaries."""

from __future__ import annotations

import pytest

from extproc.limits.windows import Window, iso_utc
from tests.unit.limits.conftest import epoch


def test_periods_name_the_utc_minute_day_and_month() -> None:
    now = epoch("2026-12-03T10:14:30")
    assert Window.MINUTE.period(now) == f"m{int(now // 60)}"
    assert Window.DAY.period(now) == "d2026-12-03"
    assert Window.MONTH.period(now) == "M2026-12"


def test_a_minute_starts_on_its_first_second() -> None:
    start = epoch("2026-12-03T10:15:00")
    assert Window.MINUTE.period(start - 0.001) != Window.MINUTE.period(start)
    assert Window.MINUTE.period(start) == Window.MINUTE.period(start + 59.999)
    assert Window.MINUTE.resets_at(start) == start + 60
    assert Window.MINUTE.resets_at(start - 0.5) == start


@pytest.mark.parametrize(
    ("now", "window", "period", "resets"),
    [
        # The end of a 31-day month.
        ("2027-01-31T23:59:59", Window.DAY, "d2027-01-31", "2027-02-01T00:00:00Z"),
        ("2027-01-31T23:59:59", Window.MONTH, "M2027-01", "2027-02-01T00:00:00Z"),
        # December into January: the year turns too.
        ("2026-12-31T23:59:30", Window.DAY, "d2026-12-31", "2027-01-01T00:00:00Z"),
        ("2026-12-15T08:00:00", Window.MONTH, "M2026-12", "2027-01-01T00:00:00Z"),
        ("2026-12-31T23:59:30", Window.MINUTE, None, "2027-01-01T00:00:00Z"),
        # A leap year's February has a 29th; a common year's does not.
        ("2028-02-28T12:00:00", Window.DAY, "d2028-02-28", "2028-02-29T00:00:00Z"),
        ("2028-02-29T12:00:00", Window.DAY, "d2028-02-29", "2028-03-01T00:00:00Z"),
        ("2028-02-29T12:00:00", Window.MONTH, "M2028-02", "2028-03-01T00:00:00Z"),
        ("2027-02-28T12:00:00", Window.DAY, "d2027-02-28", "2027-03-01T00:00:00Z"),
        # Midnight exactly belongs to the new day.
        ("2027-03-01T00:00:00", Window.DAY, "d2027-03-01", "2027-03-02T00:00:00Z"),
        ("2027-03-01T00:00:00", Window.MONTH, "M2027-03", "2027-04-01T00:00:00Z"),
    ],
)
def test_periods_and_resets_at_boundaries(
    now: str, window: Window, period: str | None, resets: str
) -> None:
    moment = epoch(now)
    if period is not None:
        assert window.period(moment) == period
    assert iso_utc(window.resets_at(moment)) == resets
    # The reset is the first instant of the next period.
    assert window.period(window.resets_at(moment)) != window.period(moment)


def test_counters_outlive_their_window() -> None:
    assert Window.MINUTE.ttl_s > 60
    assert Window.DAY.ttl_s > 86_400
    assert Window.MONTH.ttl_s == 32 * 86_400


def test_names_match_the_limits_file() -> None:
    assert [w.value for w in Window] == ["per_minute", "per_day", "per_month"]
    assert [w.noun for w in Window] == ["minute", "day", "month"]
