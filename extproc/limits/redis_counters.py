"""Counters in Redis, shared by every replica of the gateway.

Keys are `llmgw:v1:{caller}:metric:period`. The braces are a Redis Cluster hash tag:
all of one caller's counters sit in one slot, which a multi-key script needs there.
Each counter expires on its own (`Window.ttl_s`), set when the script creates it.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from extproc.limits.counters import Check, CounterStoreError, Metric
from extproc.limits.windows import Window

PREFIX = "llmgw:v1:"

# KEYS: one per check. ARGV: per check, its limit, 1 if it counts requests, its TTL.
# All values are read before anything is written, so a refused request writes nothing.
_ADMIT = """
local values = {}
local admitted = true
for i = 1, #KEYS do
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = value
  if value >= tonumber(ARGV[3 * i - 2]) then admitted = false end
end
if admitted then
  for i = 1, #KEYS do
    if ARGV[3 * i - 1] == '1' then
      redis.call('INCRBY', KEYS[i], 1)
      if redis.call('TTL', KEYS[i]) == -1 then redis.call('EXPIRE', KEYS[i], ARGV[3 * i]) end
    end
  end
end
return values
"""

# KEYS: the counters to add to. ARGV: per key, the amount and its TTL.
_CHARGE = """
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if redis.call('TTL', KEYS[i]) == -1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i]) end
end
return #KEYS
"""


def counter_key(caller: str, metric: Metric, period: str) -> str:
    return f"{PREFIX}{{{caller}}}:{metric}:{period}"


def describe(url: str) -> str:
    """ "Redis at host:port": all an error may say about where the store is."""
    try:
        parts = urllib.parse.urlsplit(url)
        return f"Redis at {parts.hostname}:{parts.port or 6379}" if parts.hostname else "Redis"
    except ValueError:
        return "Redis (unparseable URL)"


def scrub(text: str, url: str) -> str:
    """`text` without the URL or its password."""
    secrets = [url]
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        secrets += [password, urllib.parse.unquote(password)]
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedisCounters:
    def __init__(self, url: str, health_check_interval: int = 30) -> None:
        self._where = describe(url)
        self._url = url
        try:
            # Short timeouts and one immediate retry: the retry reconnects a pooled
            # connection that died with a restarted server, and a store that is really
            # gone must fail fast enough for the fail mode to decide the request. Only a
            # refused or broken connection is retried, never a timeout: a script that
            # timed out may have run, and running it again would count twice.
            self._redis = aioredis.Redis.from_url(
                url,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                health_check_interval=health_check_interval,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except (ValueError, RedisError) as exc:
            raise self._error(exc) from None
        self._admit = self._redis.register_script(_ADMIT)
        self._charge = self._redis.register_script(_CHARGE)

    def _error(self, exc: BaseException) -> CounterStoreError:
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        return CounterStoreError(f"{self._where}: {scrub(reason, self._url)}")

    async def _run(self, call: Any) -> Any:
        try:
            return await call
        except (RedisError, OSError) as exc:
            # `from None`: the driver's own exception may quote connection details.
            raise self._error(exc) from None

    async def admit(self, caller: str, checks: Sequence[Check], now: float) -> list[int]:
        if not checks:
            return []
        keys = [counter_key(caller, c.metric, c.window.period(now)) for c in checks]
        args: list[int] = []
        for check in checks:
            args += [check.limit, int(check.metric == "requests"), check.window.ttl_s]
        values = await self._run(self._admit(keys=keys, args=args))
        return [int(v) for v in values]

    async def charge(
        self, caller: str, amounts: Mapping[Metric, int], windows: Sequence[Window], now: float
    ) -> None:
        keys: list[str] = []
        args: list[int] = []
        for metric, amount in amounts.items():
            if not amount:
                continue
            for window in windows:
                keys.append(counter_key(caller, metric, window.period(now)))
                args += [amount, window.ttl_s]
        if keys:
            await self._run(self._charge(keys=keys, args=args))

    async def read(
        self, caller: str, keys: Sequence[tuple[Metric, Window]], now: float
    ) -> dict[tuple[Metric, Window], int]:
        if not keys:
            return {}
        names = [counter_key(caller, m, w.period(now)) for m, w in keys]
        values = await self._run(self._redis.mget(names))
        return {key: int(v) if v is not None else 0 for key, v in zip(keys, values, strict=True)}

    async def aclose(self) -> None:
        # Closing the connections of a dead server has nothing left to do.
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
