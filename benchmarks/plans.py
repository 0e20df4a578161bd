"""How much a run measures: the full, quick and smoke modes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Plan:
    mode: str
    duration_s: float
    concurrencies: tuple[int, ...]
    openai_conc: tuple[int, ...]
    latency_conc: tuple[int, ...]
    latency_requests: tuple[int, ...]  # per entry of latency_conc
    slow_streams: int
    slow_delay_ms: int
    leak_first: int
    leak_total: int
    leak_budget_s: float
    warmup_requests: int
    leak_configs: tuple[str, ...] = ("noop", "noop_streamed", "strict")
    envoy_concurrency: int = 1
    upstream_concurrency: int = 1
    wrk_threads: int = 1
    configs: tuple[str, ...] = field(default_factory=tuple)
    # ext_proc processes (EXTPROC_WORKERS): every configuration with ext_proc is measured
    # with each count in turn; configurations without ext_proc once.
    extproc_workers: tuple[int, ...] = (1,)
    # Only these configurations get the counts of `extproc_workers` (the others run with
    # one worker); empty: all.
    workers_configs: tuple[str, ...] = field(default_factory=tuple)
    profile: bool = False  # py-spy flame graph of ext_proc during the c=cpu_conc phase
    # Measure a throughput point again when other work kept more CPU busy than this...
    contention_cores: float = 0.25
    # ... at most this many times in the whole run.
    retries: int = 6
    # The paced-stream benchmark (paced.py): N streams kept open through each
    # configuration, one event every `paced_interval_ms`; measured for `paced_hold_s`
    # once the N are open (after a ramp of one stream's length).
    paced: bool = True
    burst: bool = True  # the figures above (False: --paced-only)
    paced_conc: tuple[int, ...] = (64, 256, 1024)
    paced_chunks: int = 200  # text deltas per stream: 206 events
    paced_interval_ms: float = 20.0
    paced_hold_s: float = 8.0
    # Per stream: an ext_proc that cannot keep up stretches 4 s streams to a minute or more.
    paced_timeout_s: float = 300.0
    paced_configs: tuple[str, ...] = (
        "passthrough",
        "noop",
        "noop_streamed",
        "string_replacement",
        "strict",
    )

    @property
    def cpu_conc(self) -> int:
        return max(self.latency_conc)


_FULL = Plan(
    mode="full",
    duration_s=5,
    concurrencies=(1, 16, 64),
    openai_conc=(16,),
    latency_conc=(1, 16),
    latency_requests=(200, 320),
    slow_streams=256,
    slow_delay_ms=40,
    leak_first=1000,
    leak_total=10000,
    leak_budget_s=60,
    warmup_requests=100,
)
MODES = {
    "full": _FULL,
    "quick": replace(
        _FULL,
        mode="quick",
        duration_s=2,
        latency_requests=(50, 160),
        slow_delay_ms=20,
        leak_budget_s=15,
        warmup_requests=50,
        retries=3,
        paced_hold_s=3.0,
    ),
    "smoke": replace(
        _FULL,
        mode="smoke",
        duration_s=1,
        concurrencies=(1, 4),
        openai_conc=(4,),
        latency_conc=(1, 4),
        latency_requests=(8, 16),
        slow_streams=16,
        slow_delay_ms=5,
        leak_first=200,
        leak_total=400,
        leak_budget_s=30,
        warmup_requests=10,
        retries=0,
        paced_conc=(16,),
        # 32 events, 0.31 s per stream; the string_replacement match is in the 26th delta.
        paced_chunks=26,
        paced_interval_ms=10.0,
        paced_hold_s=0.6,
        paced_timeout_s=20.0,
    ),
}
