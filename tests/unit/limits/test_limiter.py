"""The limiter's decisions, each against the in-process store and a real redis-server
(the `counters` fixture runs every test on both), with a clock the tests move."""

from __future__ import annotations

from typing import Any

from extproc.core.allowance import Allowance, Remaining
from extproc.core.usage import Usage
from extproc.limits.config import LimitsConfig, LimitSet
from extproc.limits.counters import Counters
from extproc.limits.limiter import Limiter
from extproc.limits.windows import Window
from tests.unit.limits.conftest import Clock, epoch

PRICES = [{"model": "claude-sonnet-*", "input": 3, "output": 15, "cache_read": 0.3}]


def limiter(counters: Counters, clock: Clock, **section: Any) -> Limiter:
    return Limiter(LimitsConfig.model_validate({"prices": PRICES, **section}), counters, clock)


def limits(**sets: Any) -> LimitSet:
    return LimitSet.model_validate(sets)


async def test_inactive_limits_admit_without_counting(counters: Counters, clock: Clock) -> None:
    admission = await limiter(counters, clock).admit("ci-bot", LimitSet(), "m")
    assert admission.allowed and admission.allowance is None and not admission.store_failed
    counted = await counters.read("ci-bot", [("requests", w) for w in Window], clock())
    assert set(counted.values()) == {0}


async def test_requests_per_minute_refuse_then_reset_next_minute(
    counters: Counters, clock: Clock
) -> None:
    gate = limiter(counters, clock)
    rpm = limits(requests={"per_minute": 3})
    remaining = []
    for _ in range(3):
        admission = await gate.admit("ci-bot", rpm, "m")
        assert admission.allowed and admission.status == 200
        assert admission.allowance is not None
        remaining.append(admission.allowance.requests.remaining)
    assert remaining == [2, 1, 0]

    refused = await gate.admit("ci-bot", rpm, "m")
    assert not refused.allowed and refused.status == 429
    assert refused.exceeded == "requests.per_minute"
    assert refused.retry_after_s == 30  # the clock is at :30 past the minute
    assert refused.message == (
        "caller 'ci-bot' is over its request rate limit for the minute (3 requests); "
        "it resets at 2026-12-03T10:15:00Z"
    )
    assert refused.allowance == Allowance(requests=Remaining(3, 0, 30))
    # Another caller has its own count.
    assert (await gate.admit("other", rpm, "m")).allowed

    clock.now = epoch("2026-12-03T10:15:00")
    admission = await gate.admit("ci-bot", rpm, "m")
    assert admission.allowed
    assert admission.allowance is not None and admission.allowance.requests.remaining == 2


async def test_a_refused_request_counts_nothing(counters: Counters, clock: Clock) -> None:
    gate = limiter(counters, clock)
    both = limits(requests={"per_minute": 10, "per_day": 100}, tokens={"per_day": 50})
    assert (await gate.admit("ci-bot", both, "m")).allowed
    await gate.charge("ci-bot", both, "m", Usage(input_tokens=50))
    for _ in range(3):
        refused = await gate.admit("ci-bot", both, "m")
        assert refused.status == 429 and refused.exceeded == "tokens.per_day"
    used = await counters.read(
        "ci-bot", [("requests", Window.MINUTE), ("requests", Window.DAY)], clock()
    )
    assert used == {("requests", Window.MINUTE): 1, ("requests", Window.DAY): 1}


async def test_a_token_budget_spent_by_a_charge_refuses_until_utc_midnight(
    counters: Counters, clock: Clock
) -> None:
    gate = limiter(counters, clock)
    daily = limits(tokens={"per_day": 2_000_000})
    first = await gate.admit("ci-bot", daily, "claude-sonnet-4")
    assert first.allowed and first.allowance is not None
    assert first.allowance.tokens.limit == 2_000_000
    assert first.allowance.tokens.remaining == 2_000_000
    assert first.allowance.requests is None

    # Cache reads do not count; input, output and cache writes do.
    usage = Usage(
        input_tokens=1_500_000,
        output_tokens=400_000,
        cache_read_tokens=10**7,
        cache_write_tokens=50_000,
    )
    await gate.charge("ci-bot", daily, "claude-sonnet-4", usage)
    almost = await gate.admit("ci-bot", daily, "claude-sonnet-4")
    assert almost.allowed and almost.allowance is not None
    assert almost.allowance.tokens.remaining == 50_000

    await gate.charge("ci-bot", daily, "claude-sonnet-4", Usage(output_tokens=50_000))
    refused = await gate.admit("ci-bot", daily, "claude-sonnet-4")
    assert not refused.allowed and refused.status == 429
    assert refused.exceeded == "tokens.per_day"
    assert refused.message == (
        "caller 'ci-bot' is over its token budget for the day (2,000,000 tokens); "
        "it resets at 2026-12-04T00:00:00Z"
    )
    assert refused.retry_after_s == int(epoch("2026-12-04T00:00:00") - clock())

    clock.now = epoch("2026-12-04T00:00:00")
    assert (await gate.admit("ci-bot", daily, "claude-sonnet-4")).allowed


async def test_a_usd_budget_counts_by_the_price_table(counters: Counters, clock: Clock) -> None:
    gate = limiter(counters, clock)
    budget = limits(usd={"per_month": 1.0})
    usage = Usage(input_tokens=100_000, output_tokens=20_000, cache_read_tokens=100_000)
    # 100k * $3/M + 20k * $15/M + 100k * $0.3/M = 0.3 + 0.3 + 0.03
    assert gate.config.price_for("claude-sonnet-4") is not None
    assert gate.config.price_for("gpt-4o") is None
    await gate.charge("ci-bot", budget, "gpt-4o", usage)  # no price: no dollars
    assert await counters.read("ci-bot", [("usd_micros", Window.MONTH)], clock()) == {
        ("usd_micros", Window.MONTH): 0
    }

    await gate.charge("ci-bot", budget, "claude-sonnet-4", usage)
    assert (await gate.admit("ci-bot", budget, "claude-sonnet-4")).allowed
    # A model without a price costs nothing we know of.
    await gate.charge("ci-bot", budget, "gpt-4o", usage)
    assert (await gate.admit("ci-bot", budget, "claude-sonnet-4")).allowed

    await gate.charge("ci-bot", budget, "claude-sonnet-4", usage)
    refused = await gate.admit("ci-bot", budget, "gpt-4o")
    assert refused.status == 429 and refused.exceeded == "usd.per_month"
    assert refused.message == (
        "caller 'ci-bot' is over its USD budget for the month ($1.00); "
        "it resets at 2027-01-01T00:00:00Z"
    )

    [line] = await gate.report("ci-bot", budget)
    assert (line.name, line.used, line.limit, line.remaining) == ("usd.per_month", 1.26, 1.0, 0)
    assert line.resets_at == "2027-01-01T00:00:00Z"


async def test_the_refusal_names_the_window_that_resets_last(
    counters: Counters, clock: Clock
) -> None:
    gate = limiter(counters, clock)
    tight = limits(requests={"per_minute": 1}, tokens={"per_month": 10})
    assert (await gate.admit("ci-bot", tight, "m")).allowed
    await gate.charge("ci-bot", tight, "m", Usage(output_tokens=10))
    refused = await gate.admit("ci-bot", tight, "m")
    assert refused.exceeded == "tokens.per_month"
    assert refused.retry_after_s == int(epoch("2027-01-01T00:00:00") - clock())


async def test_remaining_counts_down_in_the_tightest_window(
    counters: Counters, clock: Clock
) -> None:
    gate = limiter(counters, clock)
    layered = limits(
        requests={"per_minute": 5, "per_day": 3}, tokens={"per_minute": 1000, "per_day": 5000}
    )
    seen = []
    for _ in range(2):
        admission = await gate.admit("ci-bot", layered, "m")
        await gate.charge("ci-bot", layered, "m", Usage(input_tokens=300, output_tokens=100))
        assert admission.allowance is not None
        seen.append(admission.allowance)
    assert seen[0] == Allowance(
        Remaining(3, 2, 86_400 - 10 * 3600 - 14 * 60 - 30), Remaining(1000, 1000, 30)
    )
    assert seen[1].requests == Remaining(3, 1, seen[0].requests.reset_s)  # type: ignore[union-attr]
    assert seen[1].tokens is not None and (seen[1].tokens.limit, seen[1].tokens.remaining) == (
        1000,
        600,
    )


async def test_the_usage_report_and_callers(counters: Counters, clock: Clock) -> None:
    gate = limiter(counters, clock)
    mine = limits(requests={"per_minute": 60}, tokens={"per_day": 1000, "per_month": 9000})
    await gate.admit("ci-bot", mine, "m")
    await gate.admit("ci:bot{2}", mine, "m")
    await gate.charge("ci-bot", mine, "m", Usage(input_tokens=200, output_tokens=50))
    lines = await gate.report("ci-bot", mine)
    assert [(ln.name, ln.used, ln.limit, ln.remaining, ln.resets_at) for ln in lines] == [
        ("requests.per_minute", 1, 60, 59, "2026-12-03T10:15:00Z"),
        ("tokens.per_day", 250, 1000, 750, "2026-12-04T00:00:00Z"),
        ("tokens.per_month", 250, 9000, 8750, "2027-01-01T00:00:00Z"),
    ]
    # A name with a colon and braces keeps its own counters.
    odd = await gate.report("ci:bot{2}", mine)
    assert [ln.used for ln in odd] == [1, 0, 0]
    # Once every window has turned over, nothing is counted.
    clock.now = epoch("2027-02-01T00:00:00")
    assert [ln.used for ln in await gate.report("ci-bot", mine)] == [0, 0, 0]


async def test_a_zero_limit_refuses_everything(counters: Counters, clock: Clock) -> None:
    refused = await limiter(counters, clock).admit("ci-bot", limits(tokens={"per_day": 0}), "m")
    assert refused.status == 429 and refused.exceeded == "tokens.per_day"
