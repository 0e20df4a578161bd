"""How much each scenario does: the full soak and the slice `make test` runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    mode: str  # full | slice
    # (a), (b), (c): concurrent streams and text deltas per stream.
    streams: int
    events: int
    # (b), (c): delay between the mock's writes, so streams outlive the kill or drain.
    paced_delay_ms: int
    drain_timeout_s: float
    # (d): tool-call streams per judge fault and fail mode, one after another.
    judge_calls: int
    judge_timeout_s: float
    # (e): dying upstream streams per API and fault.
    deaths: int
    # (f): default-path requests, after a warm-up.
    memory_warmup: int
    memory_requests: int
    rss_growth_limit_pct: float | None  # None: reported, not asserted
    # (g): streams of each kind in the mixed load.
    resource_streams: int
    # Any client outcome later than this is a hang.
    stream_timeout_s: float


FULL = Plan(
    mode="full",
    streams=200,
    events=1000,
    paced_delay_ms=2,
    drain_timeout_s=120.0,
    judge_calls=30,
    judge_timeout_s=1.0,
    deaths=50,
    memory_warmup=2000,
    memory_requests=50_000,
    rss_growth_limit_pct=5.0,
    resource_streams=100,
    stream_timeout_s=300.0,
)

SLICE = Plan(
    mode="slice",
    streams=20,
    events=200,
    paced_delay_ms=2,
    drain_timeout_s=30.0,
    judge_calls=6,
    judge_timeout_s=0.5,
    deaths=10,
    memory_warmup=200,
    memory_requests=2000,
    rss_growth_limit_pct=None,
    resource_streams=10,
    stream_timeout_s=30.0,
)

MODES = {"full": FULL, "slice": SLICE}
