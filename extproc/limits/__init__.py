"""Per-caller rate limits and token/USD budgets: configuration, windows, counter stores
(in process or Redis) and the limiter that decides. Knows nothing of policies or gRPC."""

from extproc.limits.config import FailMode, LimitsConfig, LimitSet, Price, Windowed
from extproc.limits.counters import Check, Counters, CounterStoreError, MemoryCounters
from extproc.limits.limiter import Admission, Limiter, UsageLine
from extproc.limits.redis_counters import RedisCounters
from extproc.limits.windows import Window

__all__ = [
    "Admission",
    "Check",
    "CounterStoreError",
    "Counters",
    "FailMode",
    "LimitSet",
    "Limiter",
    "LimitsConfig",
    "MemoryCounters",
    "Price",
    "RedisCounters",
    "UsageLine",
    "Window",
    "Windowed",
]
