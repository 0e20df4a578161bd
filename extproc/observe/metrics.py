"""Prometheus metrics: what the gateway served and what its policies decided.

Model metrics follow the OpenTelemetry GenAI semantic conventions, in Prometheus form
(`gen_ai.client.token.usage` -> `gen_ai_client_token_usage`), with their advised
buckets; the `gateway_*` ones are ours. Label values a client chooses (the model) or
that grow with configuration (callers) go through a `LabelBound`, so no client can
make the exposition grow without end.

Several worker processes: set `PROMETHEUS_MULTIPROC_DIR` before the workers start (and
before they import prometheus_client, which picks its storage once, at import), and
empty that directory first with `prepare_multiprocess_dir`, or dead workers' counts
come back. Each worker then writes its values to files there, `render_metrics` sums
them over all workers, and `mark_process_dead` drops a gone worker's streams from the
active-streams gauge.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from extproc.core.audit import Action
from extproc.observe.records import DecisionRecord, RequestRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# OpenTelemetry's advised bucket boundaries for the GenAI metrics.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)  # fmt: skip
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                    20.48, 40.96, 81.92)  # fmt: skip
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0)  # fmt: skip
APPROVAL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

NONE = "none"
UNSEEN = "unseen"
OTHER = "other"

_MODEL_LABELS = ("gen_ai_request_model", "gen_ai_provider_name", "caller")
_JUDGE_ERRORS = frozenset({Action.ERROR_FAIL_CLOSED.value, Action.ERROR_FAIL_OPEN.value})
_JUDGE_BLOCKS = frozenset(
    {Action.BLOCK_TOOL_CALL.value, Action.BLOCK_RESPONSE.value, Action.REJECT_REQUEST.value}
)


class LabelBound:
    """Passes label values through until `max_values` distinct ones were seen, then
    answers "other" for any new one: a client sending a fresh model name per request
    costs one series, not one each."""

    __slots__ = ("_always", "_lock", "_seen", "max_length", "max_values")

    def __init__(
        self, max_values: int = 64, max_length: int = 128, always: Iterable[str] = ()
    ) -> None:
        self.max_values = max_values
        # A label is no place for a kilobyte of text, whatever the client sent.
        self.max_length = max_length
        # Values named in the configuration (a routing table's model names): always
        # themselves, and never crowded out by what clients send first.
        self._always = frozenset(v[:max_length] for v in always)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def named(self, value: str | None) -> bool:
        """Whether the configuration names this value (always a label of its own)."""
        return value is not None and value[: self.max_length] in self._always

    def label(self, value: str | None) -> str:
        if not value:
            return NONE
        value = value[: self.max_length]
        # Seen values are never removed, so the common case needs no lock.
        if value in self._seen or value in self._always:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.max_values:
                self._seen.add(value)
                return value
        return OTHER


def _unrouted(model: str | None) -> str:
    return OTHER if model else NONE


@dataclass(frozen=True, slots=True)
class _Families:
    tokens: Histogram
    duration: Histogram
    ttft: Histogram
    tpot: Histogram
    requests: Counter
    decisions: Counter
    judge: Histogram
    active_streams: Gauge
    audit_dropped: Counter
    reloads: Counter
    generation: Gauge
    limited: Counter
    limit_store_failures: Counter
    overloaded: Counter
    restarts: Counter
    approvals_pending: Gauge
    approvals: Histogram


def _make_families(registry: CollectorRegistry) -> _Families:
    def model_histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, _MODEL_LABELS, buckets=buckets, registry=registry)

    return _Families(
        tokens=Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, by type (input, output).",
            ("gen_ai_token_type", *_MODEL_LABELS),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        ),
        duration=model_histogram(
            "gen_ai_server_request_duration_seconds",
            "Request duration, arrival to last byte, in seconds.",
            DURATION_BUCKETS,
        ),
        ttft=model_histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first response byte of a stream, in seconds.",
            TTFT_BUCKETS,
        ),
        tpot=model_histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, of a stream, in seconds.",
            TPOT_BUCKETS,
        ),
        # prometheus-client adds `_total` to a counter's name.
        requests=Counter(
            "gateway_requests",
            "Requests the gateway finished.",
            ("caller", "api", "provider", "status"),
            registry=registry,
        ),
        decisions=Counter(
            "gateway_policy_decisions",
            "Policy decisions, by policy, action, caller and mode.",
            ("policy", "action", "caller", "mode"),
            registry=registry,
        ),
        judge=Histogram(
            "gateway_judge_duration_seconds",
            "Judge model calls, by policy and outcome (allow, block, error).",
            ("policy", "outcome"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        active_streams=Gauge(
            "gateway_active_streams",
            "Streaming responses in flight.",
            registry=registry,
            # Summed over live workers only: a dead worker's open streams are gone.
            multiprocess_mode="livesum",
        ),
        audit_dropped=Counter(
            "gateway_audit_dropped",
            "Audit records dropped because the recorder's queue was full.",
            registry=registry,
        ),
        reloads=Counter(
            "gateway_config_reloads",
            "Configuration reloads, by result (ok, failed), counted by each worker.",
            ("result",),
            registry=registry,
        ),
        generation=Gauge(
            "gateway_config_generation",
            "How many configurations a worker has served (1: the one it started with).",
            registry=registry,
            multiprocess_mode="livemax",
        ),
        limited=Counter(
            "gateway_rate_limited",
            "Requests refused by a caller's limit, by caller and the window that was full.",
            ("caller", "limit"),
            registry=registry,
        ),
        limit_store_failures=Counter(
            "gateway_rate_limit_store_failures",
            "Calls to the shared limit counters that failed, by what the fail mode did.",
            ("fail_mode",),
            registry=registry,
        ),
        restarts=Counter(
            "gateway_worker_restarts",
            "ext_proc workers started again by the supervisor after a crash.",
            registry=registry,
        ),
        overloaded=Counter(
            "gateway_overloaded",
            "Requests refused at once because a worker already served EXTPROC_MAX_STREAMS.",
            registry=registry,
        ),
        approvals_pending=Gauge(
            "gateway_approvals_pending",
            "Tool calls waiting for a person's approval.",
            registry=registry,
            multiprocess_mode="livesum",
        ),
        approvals=Histogram(
            "gateway_approval_wait_seconds",
            "Tool calls a person was asked about, by how it ended (approved, denied, "
            "timed_out, cancelled): how long each waited.",
            ("outcome",),
            buckets=APPROVAL_BUCKETS,
            registry=registry,
        ),
    )


# One set of metric objects per registry: registering a name twice fails, and a process
# may build its observers more than once (tests, a reload) on the default registry.
_families_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = (
    weakref.WeakKeyDictionary()
)
_families_lock = threading.Lock()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        families = _families_by_registry.get(registry)
        if families is None:
            families = _families_by_registry[registry] = _make_families(registry)
        return families


class GatewayMetrics:
    """The gateway's metrics in one registry (the process's default one unless given)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        models: LabelBound | None = None,
        callers: LabelBound | None = None,
    ) -> None:
        # `_created` series would double the series count of every counter and histogram
        # and tell Prometheus nothing it uses from the text format.
        disable_created_metrics()
        self.registry = REGISTRY if registry is None else registry
        self._m = _families_for(self.registry)
        self.models = LabelBound() if models is None else models
        self.callers = LabelBound() if callers is None else callers
        # Provider names come from the configuration; bounded all the same.
        self.providers = LabelBound()

    def observe_request(self, record: RequestRecord) -> None:
        m = self._m
        caller = self.callers.label(record.caller)
        provider = self.providers.label(record.provider)
        # Only a routed model takes a place among the labels: a name no route serves is
        # refused anyway, and must not crowd out the real ones.
        model = (
            self.models.label(record.model)
            if record.provider or self.models.named(record.model)
            else _unrouted(record.model)
        )
        # Status 0: the response went straight from Envoy to the client (no policy reads
        # responses), so its status, length and tokens are not the gateway's to know.
        status = str(record.status) if record.status else UNSEEN
        m.requests.labels(caller, record.api or NONE, provider, status).inc()
        if not record.status:
            return
        duration = record.duration_ms / 1000
        m.duration.labels(model, provider, caller).observe(duration)
        if record.input_tokens is not None:
            m.tokens.labels("input", model, provider, caller).observe(record.input_tokens)
        output = record.output_tokens
        if output is not None:
            m.tokens.labels("output", model, provider, caller).observe(output)
        if not record.stream or record.ttfb_ms is None:
            return
        ttft = record.ttfb_ms / 1000
        m.ttft.labels(model, provider, caller).observe(ttft)
        if output is not None and output > 1:
            per_token = max(duration - ttft, 0.0) / (output - 1)
            m.tpot.labels(model, provider, caller).observe(per_token)

    def observe_decision(self, record: DecisionRecord) -> None:
        m = self._m
        caller = self.callers.label(record.caller)
        m.decisions.labels(record.policy, record.action, caller, record.mode).inc()
        if record.judge_ms is not None:
            m.judge.labels(record.policy, judge_outcome(record.action)).observe(
                record.judge_ms / 1000
            )

    def stream_opened(self) -> None:
        self._m.active_streams.inc()

    def stream_closed(self) -> None:
        self._m.active_streams.dec()

    def audit_dropped(self, n: int) -> None:
        if n > 0:
            self._m.audit_dropped.inc(n)

    def reloaded(self, ok: bool, generation: int) -> None:
        self._m.reloads.labels("ok" if ok else "failed").inc()
        self._m.generation.set(generation)

    def rate_limited(self, caller: str, limit: str) -> None:
        self._m.limited.labels(self.callers.label(caller), limit).inc()

    def worker_restarted(self) -> None:
        self._m.restarts.inc()

    def overloaded(self) -> None:
        self._m.overloaded.inc()

    def limit_store_failed(self, fail_mode: str) -> None:
        self._m.limit_store_failures.labels(fail_mode).inc()

    def approval_asked(self) -> None:
        self._m.approvals_pending.inc()

    def approval_ended(self, outcome: str, seconds: float) -> None:
        self._m.approvals_pending.dec()
        self._m.approvals.labels(outcome).observe(seconds)


def judge_outcome(action: str) -> str:
    """allow, block or error: what a judge's call came to, from its policy's action."""
    if action in _JUDGE_ERRORS:
        return "error"
    if action in _JUDGE_BLOCKS:
        return "block"
    return "allow"


def render_metrics(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The exposition for a scrape and its content type: summed over all workers'
    files when `PROMETHEUS_MULTIPROC_DIR` is set, else the registry's own values."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        # A fresh registry per scrape, as prometheus-client prescribes: the collector
        # reads the files anew each time, and no process-local metric is counted twice.
        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting, path=path)
        return generate_latest(collecting), CONTENT_TYPE_PLAIN_0_0_4
    return generate_latest(REGISTRY if registry is None else registry), CONTENT_TYPE_PLAIN_0_0_4


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """Create the multiprocess directory, or empty it of a previous run's files; call
    before any worker starts. Only prometheus-client's `*.db` files are removed, so a
    mistaken path loses nothing else."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return directory


def mark_process_dead(pid: int, path: str | os.PathLike[str] | None = None) -> None:
    """A worker exited: its open streams no longer count (call from the parent)."""
    multiprocess.mark_process_dead(pid, None if path is None else os.fspath(path))


__all__ = [
    "DURATION_BUCKETS",
    "MULTIPROC_ENV",
    "TOKEN_BUCKETS",
    "TPOT_BUCKETS",
    "TTFT_BUCKETS",
    "GatewayMetrics",
    "LabelBound",
    "judge_outcome",
    "mark_process_dead",
    "prepare_multiprocess_dir",
    "render_metrics",
]
