"""Fixtures for the limits tests: a clock the tests move, and counter stores, each
behavioural test running against both the in-process store and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import redis

from extproc.limits.counters import Counters, MemoryCounters
from extproc.limits.redis_counters import RedisCounters
from tests.helpers.redis import RedisServer, running_redis


def epoch(text: str) -> float:
    """`2026-12-03T10:14:30` (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock(epoch("2026-12-03T10:14:30"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as started:
        yield started


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    store: Counters
    if request.param == "memory":
        store = MemoryCounters()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        with redis.Redis.from_url(server.url) as client:
            client.flushdb()
        store = RedisCounters(server.url)
    yield store
    await store.aclose()
