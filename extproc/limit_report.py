"""Where a process counts callers' use of their limits, and the report of that use
(`llm-gateway usage`, `GET /api/usage`): every caller of the keys file with a limit,
window by window."""

from __future__ import annotations

from typing import Any

from extproc.config import Settings
from extproc.gateway import Gateway
from extproc.limits import Counters, CounterStoreError, Limiter, MemoryCounters, RedisCounters


def open_counters(settings: Settings) -> Counters:
    """Redis when RATE_LIMIT_REDIS_URL is set (shared by workers and replicas), else
    this process's memory (one worker; the counts start again with the process)."""
    url = settings.rate_limit_redis_url
    return MemoryCounters() if url is None else RedisCounters(url.get_secret_value())


async def usage_report(
    gateway: Gateway, counters: Counters, caller: str | None = None
) -> list[dict[str, Any]]:
    """Each limited caller's use in its current windows (one caller's, if named).
    Raises CounterStoreError when the counters cannot be read."""
    limiter = Limiter(gateway.limits, counters)
    report = []
    for known in gateway.keys.callers:
        if caller is not None and known.name != caller:
            continue
        limits = gateway.limits_for(known)
        if not limits.active:
            continue
        lines = await limiter.report(known.name, limits)
        report.append(
            {
                "caller": known.name,
                "chain": known.chain,
                "windows": [
                    {
                        "limit": line.name,
                        "used": line.used,
                        "max": line.limit,
                        "remaining": line.remaining,
                        "resets_at": line.resets_at,
                    }
                    for line in lines
                ],
            }
        )
    return report


__all__ = ["CounterStoreError", "open_counters", "usage_report"]
