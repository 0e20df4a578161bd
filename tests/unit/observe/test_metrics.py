"""The Prometheus metrics as a scraper sees them: exact names, labels and values, the
label bound, and the sum over several worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from extproc.core.audit import Action
from extproc.observe.metrics import (
    MULTIPROC_ENV,
    GatewayMetrics,
    LabelBound,
    judge_outcome,
    mark_process_dead,
    prepare_multiprocess_dir,
    render_metrics,
)
from extproc.observe.records import DecisionRecord, RequestRecord

ROOT = Path(__file__).resolve().parents[3]

FAMILIES = {
    "gen_ai_client_token_usage": "histogram",
    "gen_ai_server_request_duration_seconds": "histogram",
    "gen_ai_server_time_to_first_token_seconds": "histogram",
    "gen_ai_server_time_per_output_token_seconds": "histogram",
    "gateway_requests": "counter",
    "gateway_policy_decisions": "counter",
    "gateway_judge_duration_seconds": "histogram",
    "gateway_active_streams": "gauge",
    "gateway_audit_dropped": "counter",
    "gateway_config_reloads": "counter",
    "gateway_config_generation": "gauge",
    "gateway_rate_limited": "counter",
    "gateway_rate_limit_store_failures": "counter",
    "gateway_overloaded": "counter",
    "gateway_worker_restarts": "counter",
    "gateway_approvals_pending": "gauge",
    "gateway_approval_wait_seconds": "histogram",
}
SERVED = {"caller": "alice", "api": "anthropic", "provider": "anthropic", "status": "200"}
MODEL = {"gen_ai_request_model": "claude-x", "gen_ai_provider_name": "anthropic", "caller": "alice"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry | None = None) -> tuple[dict[str, str], Samples]:
    """Family name -> type, and (sample name, labels) -> value, from the exposition."""
    body, content_type = render_metrics(registry)
    assert content_type.startswith("text/plain")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def request(**fields: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "time": 1_700_000_000.0,
        "request_id": "req-1",
        "caller": "alice",
        "api": "anthropic",
        "model": "claude-x",
        "provider": "anthropic",
        "method": "POST",
        "path": "/v1/messages",
        "status": 200,
        "stream": True,
        "outcome": "ok",
    }
    return RequestRecord(**{**base, **fields})


def decision(action: Action, judge_ms: float | None = None, **fields: Any) -> DecisionRecord:
    base: dict[str, Any] = {
        "time": 1_700_000_000.0,
        "request_id": "req-1",
        "caller": "alice",
        "api": "anthropic",
        "model": "claude-x",
        "provider": "anthropic",
        "policy": "guard",
        "policy_type": "tool_call_judge",
        "action": action.value,
        "mode": "enforce",
        "judge_ms": judge_ms,
    }
    return DecisionRecord(**{**base, **fields})


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_a_fresh_registry_exposes_exactly_the_gateway_families(registry: CollectorRegistry) -> None:
    GatewayMetrics(registry)
    types, samples = scrape(registry)
    assert types == FAMILIES
    assert not [name for name, _ in samples if name.endswith("_created")]
    assert value(samples, "gateway_active_streams") == 0
    assert value(samples, "gateway_audit_dropped_total") == 0


def test_a_streamed_request_records_every_model_metric(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    metrics.observe_request(
        request(input_tokens=100, output_tokens=11, ttfb_ms=200.0, duration_ms=1200.0)
    )
    _, s = scrape(registry)

    assert series(s, "gateway_requests_total") == [SERVED]
    assert value(s, "gateway_requests_total", **SERVED) == 1

    duration = "gen_ai_server_request_duration_seconds"
    assert value(s, f"{duration}_count", **MODEL) == 1
    assert value(s, f"{duration}_sum", **MODEL) == pytest.approx(1.2)
    assert value(s, f"{duration}_bucket", **MODEL, le="0.64") == 0
    assert value(s, f"{duration}_bucket", **MODEL, le="1.28") == 1

    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert value(s, f"{ttft}_sum", **MODEL) == pytest.approx(0.2)
    assert value(s, f"{ttft}_bucket", **MODEL, le="0.1") == 0
    assert value(s, f"{ttft}_bucket", **MODEL, le="0.25") == 1

    # (1.2 s - 0.2 s) over the 10 tokens after the first.
    tpot = "gen_ai_server_time_per_output_token_seconds"
    assert value(s, f"{tpot}_count", **MODEL) == 1
    assert value(s, f"{tpot}_sum", **MODEL) == pytest.approx(0.1)

    tokens = "gen_ai_client_token_usage"
    assert value(s, f"{tokens}_sum", gen_ai_token_type="input", **MODEL) == 100
    assert value(s, f"{tokens}_bucket", gen_ai_token_type="input", **MODEL, le="64.0") == 0
    assert value(s, f"{tokens}_bucket", gen_ai_token_type="input", **MODEL, le="256.0") == 1
    assert value(s, f"{tokens}_sum", gen_ai_token_type="output", **MODEL) == 11
    assert value(s, f"{tokens}_bucket", gen_ai_token_type="output", **MODEL, le="+Inf") == 1


def test_a_plain_request_records_no_stream_timings(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    # Rejected before routing: no caller, model or provider known, no usage.
    unknown: dict[str, Any] = {"caller": None, "model": None, "provider": None, "api": ""}
    metrics.observe_request(
        request(**unknown, status=403, stream=False, outcome="rejected", ttfb_ms=3.0)
    )
    _, s = scrape(registry)
    assert series(s, "gateway_requests_total") == [
        {"caller": "none", "api": "none", "provider": "none", "status": "403"}
    ]
    nothing = {"gen_ai_request_model": "none", "gen_ai_provider_name": "none", "caller": "none"}
    assert value(s, "gen_ai_server_request_duration_seconds_count", **nothing) == 1
    assert series(s, "gen_ai_server_time_to_first_token_seconds_count") == []
    assert series(s, "gen_ai_server_time_per_output_token_seconds_count") == []
    assert series(s, "gen_ai_client_token_usage_count") == []


def test_routed_model_names_are_always_labels_and_unrouted_ones_never() -> None:
    bound = LabelBound(max_values=1, always=["claude-opus-4-1"])
    assert bound.label("claude-x-1") == "claude-x-1"  # fills the one free place
    assert bound.label("claude-x-2") == "other"
    assert bound.label("claude-opus-4-1") == "claude-opus-4-1"  # named by a route: always
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry, models=LabelBound(always=["m"]))
    metrics.observe_request(request(model="junk-nobody-serves", provider=None, status=400))
    # Refused before routing, but a model the routing table names: still itself.
    metrics.observe_request(request(model="m", provider=None, status=403))
    _, s = scrape(registry)
    assert {
        d["gen_ai_request_model"] for d in series(s, "gen_ai_server_request_duration_seconds_count")
    } == {"other", "m"}


def test_a_response_the_gateway_never_saw_counts_as_unseen(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    # Status 0: Envoy sent the response straight on; its duration is not the gateway's.
    metrics.observe_request(request(status=0, stream=False, duration_ms=4.0))
    _, s = scrape(registry)
    assert series(s, "gateway_requests_total") == [
        {"caller": "alice", "api": "anthropic", "provider": "anthropic", "status": "unseen"}
    ]
    assert series(s, "gen_ai_server_request_duration_seconds_count") == []


def test_a_one_token_stream_has_a_first_token_but_no_time_per_token(
    registry: CollectorRegistry,
) -> None:
    metrics = GatewayMetrics(registry)
    metrics.observe_request(
        request(input_tokens=0, output_tokens=1, ttfb_ms=50.0, duration_ms=60.0)
    )
    _, s = scrape(registry)
    assert value(s, "gen_ai_server_time_to_first_token_seconds_count", **MODEL) == 1
    assert series(s, "gen_ai_server_time_per_output_token_seconds_count") == []
    # Zero tokens is a count the provider reported, not an unknown one.
    assert value(s, "gen_ai_client_token_usage_count", gen_ai_token_type="input", **MODEL) == 1


def test_decisions_and_judge_calls(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    metrics.observe_decision(decision(Action.ALLOW, judge_ms=100.0))
    metrics.observe_decision(decision(Action.ALLOW, judge_ms=300.0))
    metrics.observe_decision(decision(Action.BLOCK_TOOL_CALL, judge_ms=2000.0, mode="shadow"))
    metrics.observe_decision(decision(Action.ERROR_FAIL_OPEN, judge_ms=30.0))
    metrics.observe_decision(
        decision(Action.REDACT, policy="pii", policy_type="pii_redaction", caller=None)
    )
    _, s = scrape(registry)

    counts = {
        (labels["policy"], labels["action"], labels["caller"], labels["mode"]): value(
            s, "gateway_policy_decisions_total", **labels
        )
        for labels in series(s, "gateway_policy_decisions_total")
    }
    assert counts == {
        ("guard", "allow", "alice", "enforce"): 2,
        ("guard", "block_tool_call", "alice", "shadow"): 1,
        ("guard", "error_fail_open", "alice", "enforce"): 1,
        ("pii", "redact", "none", "enforce"): 1,
    }

    judged = "gateway_judge_duration_seconds"
    assert sorted(series(s, f"{judged}_count"), key=lambda labels: labels["outcome"]) == [
        {"policy": "guard", "outcome": "allow"},
        {"policy": "guard", "outcome": "block"},
        {"policy": "guard", "outcome": "error"},
    ]
    assert value(s, f"{judged}_count", policy="guard", outcome="allow") == 2
    assert value(s, f"{judged}_sum", policy="guard", outcome="allow") == pytest.approx(0.4)
    assert value(s, f"{judged}_bucket", policy="guard", outcome="block", le="1.28") == 0
    assert value(s, f"{judged}_bucket", policy="guard", outcome="block", le="2.56") == 1
    assert value(s, f"{judged}_sum", policy="guard", outcome="error") == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        (Action.ALLOW, "allow"),
        (Action.REDACT, "allow"),
        (Action.REPLACE, "allow"),
        (Action.BLOCK_TOOL_CALL, "block"),
        (Action.BLOCK_RESPONSE, "block"),
        (Action.REJECT_REQUEST, "block"),
        (Action.ERROR_FAIL_CLOSED, "error"),
        (Action.ERROR_FAIL_OPEN, "error"),
    ],
)
def test_judge_outcome_of_every_action(action: Action, outcome: str) -> None:
    assert judge_outcome(action.value) == outcome


def test_active_streams_and_dropped_audit_records(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    for _ in range(3):
        metrics.stream_opened()
    metrics.stream_closed()
    metrics.audit_dropped(5)
    metrics.audit_dropped(0)
    metrics.audit_dropped(2)
    _, s = scrape(registry)
    assert value(s, "gateway_active_streams") == 2
    assert value(s, "gateway_audit_dropped_total") == 7


def test_label_bound_cuts_off_to_other() -> None:
    bound = LabelBound(max_values=3)
    assert [bound.label(v) for v in ("a", "b", "a", "c", "d", "e")] == [
        "a",
        "b",
        "a",
        "c",
        "other",
        "other",
    ]
    # Seen values stay themselves; empty is never counted as one.
    assert bound.label("b") == "b"
    assert bound.label(None) == bound.label("") == "none"
    assert LabelBound(max_values=2, max_length=4).label("abcdefgh") == "abcd"


def test_label_bound_admits_exactly_max_values_across_threads() -> None:
    bound = LabelBound(max_values=64)
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        got = [bound.label(f"model-{n}-{i}") for i in range(50)]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = [r for r in results if r != "other"]
    assert len(kept) == 64
    assert len(set(kept)) == 64


def test_a_client_cannot_grow_the_model_label_without_end(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry, models=LabelBound(max_values=2))
    for model in ("m1", "m2", "m3", "m4", "m1"):
        metrics.observe_request(request(model=model, stream=False, duration_ms=10.0))
    _, s = scrape(registry)
    counts = {
        labels["gen_ai_request_model"]: value(
            s, "gen_ai_server_request_duration_seconds_count", **labels
        )
        for labels in series(s, "gen_ai_server_request_duration_seconds_count")
    }
    assert counts == {"m1": 2, "m2": 1, "other": 2}


def test_metrics_on_one_registry_share_their_series(registry: CollectorRegistry) -> None:
    # Building the observers twice in one process must not fail on duplicate names.
    GatewayMetrics(registry).audit_dropped(1)
    GatewayMetrics(registry).audit_dropped(1)
    _, s = scrape(registry)
    assert value(s, "gateway_audit_dropped_total") == 2


def test_the_default_registry_can_be_built_on_twice() -> None:
    GatewayMetrics()
    GatewayMetrics()
    types, _ = scrape()
    assert FAMILIES.items() <= types.items()


def test_prepare_multiprocess_dir_creates_and_empties(tmp_path: Path) -> None:
    fresh = prepare_multiprocess_dir(tmp_path / "a" / "metrics")
    assert fresh.is_dir()
    (fresh / "counter_123.db").write_bytes(b"stale")
    (fresh / "gauge_livesum_123.db").write_bytes(b"stale")
    (fresh / "notes.txt").write_text("not ours")
    prepare_multiprocess_dir(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == ["notes.txt"]


WORKER = textwrap.dedent(
    """
    import sys
    from extproc.core.audit import Action
    from extproc.observe.metrics import GatewayMetrics
    from extproc.observe.records import DecisionRecord, RequestRecord

    requests, streams = int(sys.argv[1]), int(sys.argv[2])
    metrics = GatewayMetrics()
    for _ in range(requests):
        metrics.observe_request(RequestRecord(
            time=0.0, request_id="r", caller="alice", api="anthropic", model="claude-x",
            provider="anthropic", method="POST", path="/v1/messages", status=200,
            stream=True, outcome="ok", input_tokens=10, output_tokens=5, ttfb_ms=100.0,
            duration_ms=500.0))
    metrics.observe_decision(DecisionRecord(
        time=0.0, request_id="r", caller="alice", api="anthropic", model="claude-x",
        provider="anthropic", policy="guard", policy_type="tool_call_judge",
        action=Action.BLOCK_TOOL_CALL.value, mode="enforce", judge_ms=250.0))
    for _ in range(streams + 1):
        metrics.stream_opened()
    metrics.stream_closed()
    metrics.audit_dropped(requests)
    """
)


def test_workers_are_summed_over_the_multiprocess_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, MULTIPROC_ENV: str(directory), "PYTHONPATH": str(ROOT)}
    # Two workers at once, as the gateway runs them: 3 + 4 requests, 2 + 1 open streams.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(requests), str(streams)],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for requests, streams in ((3, 2), (4, 1))
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()

    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    types, s = scrape()
    # A labelled counter nobody incremented has no file in the directory yet.
    untouched = {
        "gateway_config_reloads",
        "gateway_rate_limited",
        "gateway_rate_limit_store_failures",
        "gateway_approval_wait_seconds",
    }
    assert {k: v for k, v in FAMILIES.items() if k not in untouched}.items() <= types.items()
    assert value(s, "gateway_requests_total", **SERVED) == 7
    assert value(s, "gen_ai_server_request_duration_seconds_count", **MODEL) == 7
    assert value(s, "gen_ai_server_request_duration_seconds_sum", **MODEL) == pytest.approx(3.5)
    assert value(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **MODEL) == 70
    assert value(s, "gen_ai_server_time_to_first_token_seconds_bucket", **MODEL, le="0.1") == 7
    blocked = {"policy": "guard", "action": "block_tool_call", "mode": "enforce"}
    assert value(s, "gateway_policy_decisions_total", **blocked, caller="alice") == 2
    assert value(s, "gateway_judge_duration_seconds_count", policy="guard", outcome="block") == 2
    assert value(s, "gateway_audit_dropped_total") == 7
    # One series per family, not one per worker: the gauge has no pid label.
    assert series(s, "gateway_active_streams") == [{}]
    assert value(s, "gateway_active_streams") == 3

    # A worker gone: its streams leave the gauge, its counts stay in the totals.
    mark_process_dead(workers[0].pid, directory)
    _, after = scrape()
    assert value(after, "gateway_active_streams") == 1
    assert value(after, "gateway_audit_dropped_total") == 7


def test_reloads_and_limit_refusals_are_counted(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    metrics.reloaded(True, 2)
    metrics.reloaded(False, 2)
    metrics.rate_limited("alice", "tokens.per_day")
    metrics.limit_store_failed("closed")
    _, samples = scrape(registry)
    assert value(samples, "gateway_config_reloads_total", result="ok") == 1
    assert value(samples, "gateway_config_reloads_total", result="failed") == 1
    assert value(samples, "gateway_config_generation") == 2
    assert value(samples, "gateway_rate_limited_total", caller="alice", limit="tokens.per_day") == 1
    assert value(samples, "gateway_rate_limit_store_failures_total", fail_mode="closed") == 1


def test_approvals_waiting_and_how_they_ended(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    for _ in range(3):
        metrics.approval_asked()
    metrics.approval_ended("approved", 12.0)
    metrics.approval_ended("timed_out", 300.0)
    _, s = scrape(registry)
    assert value(s, "gateway_approvals_pending") == 1
    assert value(s, "gateway_approval_wait_seconds_count", outcome="approved") == 1
    assert value(s, "gateway_approval_wait_seconds_bucket", outcome="approved", le="15.0") == 1
    assert value(s, "gateway_approval_wait_seconds_bucket", outcome="timed_out", le="120.0") == 0
    assert value(s, "gateway_approval_wait_seconds_sum", outcome="timed_out") == 300.0
