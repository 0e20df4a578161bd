"""What only one store shows: MemoryCounters' bounded memory; Redis shared between
limiters, its keys' expiry, errors without secrets, and the fail modes when the server
dies and comes back."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
import redis

from extproc.core.usage import Usage
from extproc.limits.config import LimitsConfig, LimitSet
from extproc.limits.counters import Check, CounterStoreError, MemoryCounters
from extproc.limits.limiter import Admission, Limiter
from extproc.limits.redis_counters import RedisCounters, counter_key
from extproc.limits.windows import Window
from tests.helpers.redis import RedisServer, running_redis
from tests.unit.limits.conftest import Clock, epoch

BUDGET = LimitSet.model_validate({"tokens": {"per_day": 1000}})
RPM = LimitSet.model_validate({"requests": {"per_minute": 100}})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_memory_counters_forget_past_periods(clock: Clock) -> None:
    store = MemoryCounters()
    for caller in ("a", "b", "c"):
        await store.charge(caller, {"tokens": 5}, [Window.MINUTE, Window.DAY], clock())
    assert len(store) == 6
    clock.now = epoch("2026-12-04T00:00:01")
    await store.charge("a", {"tokens": 1}, [Window.MINUTE], clock())
    assert len(store) == 1  # yesterday's minutes and days are gone


async def test_two_limiters_on_one_redis_share_one_budget(
    redis_server: RedisServer, clock: Clock
) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    config = LimitsConfig()
    first = Limiter(config, RedisCounters(redis_server.url), clock)
    second = Limiter(config, RedisCounters(redis_server.url), clock)
    try:
        assert (await first.admit("ci-bot", BUDGET, "m")).allowed
        await first.charge("ci-bot", BUDGET, "m", Usage(input_tokens=600))
        await second.charge("ci-bot", BUDGET, "m", Usage(input_tokens=400))
        for gate in (first, second):
            refused = await gate.admit("ci-bot", BUDGET, "m")
            assert refused.status == 429 and refused.exceeded == "tokens.per_day"
        with redis.Redis.from_url(redis_server.url) as client:
            key = counter_key("ci-bot", "tokens", Window.DAY.period(clock()))
            assert client.get(key) == b"1000"
            assert 0 < client.ttl(key) <= Window.DAY.ttl_s
    finally:
        await first.aclose()
        await second.aclose()


async def test_many_concurrent_admissions_never_overshoot(
    redis_server: RedisServer, clock: Clock
) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    gates = [Limiter(LimitsConfig(), RedisCounters(redis_server.url), clock) for _ in range(3)]
    rpm = LimitSet.model_validate({"requests": {"per_minute": 25}})
    try:
        results = await asyncio.gather(*(g.admit("ci-bot", rpm, "m") for g in gates * 20))
        assert sum(r.allowed for r in results) == 25
        with redis.Redis.from_url(redis_server.url) as client:
            key = counter_key("ci-bot", "requests", Window.MINUTE.period(clock()))
            assert client.get(key) == b"25"
            assert 0 < client.ttl(key) <= Window.MINUTE.ttl_s
    finally:
        for gate in gates:
            await gate.aclose()


async def test_errors_never_show_the_url_or_its_password() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{_closed_port()}/0"
    store = RedisCounters(url)
    try:
        for attempt in (
            store.admit("ci-bot", [Check("requests", Window.MINUTE, 5)], time.time()),
            store.read("ci-bot", [("tokens", Window.DAY)], time.time()),
        ):
            with pytest.raises(CounterStoreError) as caught:
                await attempt
            text = str(caught.value)
            assert "s3cret" not in text and url not in text
            assert text.startswith("Redis at 127.0.0.1:")
            assert caught.value.__cause__ is None and caught.value.__suppress_context__
    finally:
        await store.aclose()


async def test_inactive_limits_never_touch_the_store(clock: Clock) -> None:
    gate = Limiter(LimitsConfig(), RedisCounters(f"redis://127.0.0.1:{_closed_port()}"), clock)
    try:
        assert (await gate.admit("ci-bot", LimitSet(), "m")).allowed
        await gate.charge("ci-bot", RPM, "m", Usage(input_tokens=5))  # no budget: nothing to add
        assert gate.store_failures == 0
    finally:
        await gate.aclose()


async def test_fail_modes_while_redis_is_down_and_recovery(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with running_redis() as server:
        gate = Limiter(LimitsConfig(), RedisCounters(server.url), clock)
        both = LimitSet.model_validate(
            {"requests": {"per_minute": 100}, "tokens": {"per_day": 1000}}
        )
        try:
            assert not (await gate.admit("ci-bot", BUDGET, "m")).store_failed
            server.stop()

            with caplog.at_level(logging.WARNING, logger="extproc.limits"):
                opened = await gate.admit("ci-bot", RPM, "m")
                assert opened.allowed and opened.store_failed and opened.status == 200
                for limits in (BUDGET, both):
                    closed = await gate.admit("ci-bot", limits, "m")
                    assert not closed.allowed and closed.status == 503 and closed.store_failed
                    assert closed.retry_after_s == 1 and closed.exceeded is None
                await gate.charge("ci-bot", BUDGET, "m", Usage(input_tokens=5))  # never raises
            assert gate.store_failures == 4
            warnings = [r for r in caplog.records if r.name == "extproc.limits"]
            assert len(warnings) == 1, "one warning per outage interval, not one per request"
            assert server.url not in warnings[0].getMessage()

            server.start()

            async def recovered() -> bool:
                admission: Admission = await gate.admit("ci-bot", BUDGET, "m")
                return admission.allowed and not admission.store_failed

            await eventually(recovered, "admissions to reach the restarted redis-server")
        finally:
            await gate.aclose()


async def test_fail_modes_can_be_reversed(clock: Clock) -> None:
    config = LimitsConfig.model_validate({"fail_mode": {"requests": "closed", "budgets": "open"}})
    gate = Limiter(config, RedisCounters(f"redis://127.0.0.1:{_closed_port()}"), clock)
    try:
        assert (await gate.admit("ci-bot", RPM, "m")).status == 503
        budget = await gate.admit("ci-bot", BUDGET, "m")
        assert budget.allowed and budget.store_failed
    finally:
        await gate.aclose()
