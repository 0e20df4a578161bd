"""Fixed rate-limit windows, keyed by their UTC period.

A counter belongs to the period its request fell in ("m29384723", "d2026-12-03",
"M2026-12"), not to a sliding span from some replica's idea of now: replicas whose
clocks disagree by a second still add to the same counter, and none counts a request
twice.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

_DAY_S = 86_400


class Window(enum.Enum):
    """A window; its value is the name the limits file gives it."""

    MINUTE = "per_minute"
    DAY = "per_day"
    MONTH = "per_month"

    @property
    def noun(self) -> str:
        """ "minute", "day", "month": for messages to people."""
        return self.value.removeprefix("per_")

    def period(self, now: float) -> str:
        """The period `now` falls in; counters of one period are one window's count."""
        if self is Window.MINUTE:
            return f"m{int(now // 60)}"
        moment = datetime.fromtimestamp(now, UTC)
        return moment.strftime("d%Y-%m-%d" if self is Window.DAY else "M%Y-%m")

    def resets_at(self, now: float) -> float:
        """When the period `now` falls in ends (epoch seconds)."""
        if self is Window.MINUTE:
            return (now // 60 + 1) * 60
        moment = datetime.fromtimestamp(now, UTC)
        if self is Window.DAY:
            start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
            return (start + timedelta(days=1)).timestamp()
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        return datetime(year, month, 1, tzinfo=UTC).timestamp()

    @property
    def ttl_s(self) -> int:
        """How long a stored counter outlives its creation. Longer than the window, so a
        counter created late by a replica whose clock runs behind is still there for the
        rest of its period; short enough that dead periods leave the store by themselves."""
        return _TTL_S[self]


_TTL_S = {Window.MINUTE: 120, Window.DAY: _DAY_S + 2 * 3600, Window.MONTH: 32 * _DAY_S}

WINDOWS = tuple(Window)


def iso_utc(epoch: float) -> str:
    """`2026-12-04T00:00:00Z`: a reset time as clients and the usage report show it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
