"""A request's observation with every observer real: its decisions become records with
the request's facts, stored with secrets redacted (by the recorder's thread, not the
event loop) and sizes bounded, and its end writes the summary, closes the stream's
gauge and ends its span whatever fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from extproc.core.audit import Action, Decision, JudgeVerdict, Mode
from extproc.observe import recorder as recorder_module
from extproc.observe.hub import Observer, RequestObservation
from extproc.observe.metrics import GatewayMetrics
from extproc.observe.records import DecisionRecord, RequestRecord
from tests.helpers.observer import Observed

# Canaries the pii patterns catch: a key of each kind and an email address.
ANTHROPIC_KEY = "sk-ant-api03-Zq8xW2vN5mK9pL3rT7yB1cD4fG6hJ0aS"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "carol.secret@example.org"
CANARIES = (ANTHROPIC_KEY, AWS_KEY, EMAIL)
REQUEST_ID = "req-hub-1"
SERVED = {"caller": "alice", "api": "anthropic", "provider": "anthropic", "status": "200"}
HEADERS = {"x-request-id": REQUEST_ID}


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[Observed]:
    (tmp_path / "plain").mkdir()
    made = Observed(tmp_path / "plain")
    yield made
    made.close()


@pytest.fixture
def keeping(tmp_path: Path) -> Iterator[Observed]:
    (tmp_path / "keeping").mkdir()
    made = Observed(tmp_path / "keeping", keep_originals=True)
    yield made
    made.close()


def opened(observed: Observed, path: str = "/v1/messages") -> RequestObservation:
    observation = observed.observer.start(HEADERS, "POST", path)
    observation.api, observation.operation = "anthropic", "chat"
    observation.caller = "alice"
    observation.parsed("claude-x", True)
    observation.routed("anthropic")
    return observation


def tool_decision(arguments: Any, **fields: Any) -> Decision:
    values: dict[str, Any] = {
        "policy": "guard",
        "policy_type": "tool_call_judge",
        "action": Action.BLOCK_TOOL_CALL,
        "mode": Mode.ENFORCE,
        "target": {"tool": "bash", "id": "toolu_1", "arguments": arguments},
        "message": "bash is not allowed here",
        "at": 1_700_000_000.5,
    }
    return Decision(**{**values, **fields})


def verdict(**fields: Any) -> JudgeVerdict:
    values: dict[str, Any] = {
        "probability": 0.97,
        "explanation": "deletes files",
        "started": 1_700_000_000.0,
        "seconds": 0.25,
    }
    return JudgeVerdict(**{**values, **fields})


def only_decision(observed: Observed) -> dict[str, Any]:
    (stored,) = observed.stored(REQUEST_ID)["decisions"]
    return dict(stored)


def test_a_decision_becomes_a_record_with_the_requests_facts(observed: Observed) -> None:
    observation = opened(observed)
    observation.on_decision(tool_decision({"command": "rm -rf /"}, judge=verdict()))
    observation.finish(200, "ok", 7, ["guard"])
    stored = observed.stored(REQUEST_ID)
    (decision,) = stored["decisions"]
    assert {k: v for k, v in decision.items() if k != "id"} == {
        "time": 1_700_000_000.5,
        "request_id": REQUEST_ID,
        "caller": "alice",
        "api": "anthropic",
        "model": "claude-x",
        "provider": "anthropic",
        "policy": "guard",
        "policy_type": "tool_call_judge",
        "action": "block_tool_call",
        "mode": "enforce",
        "target": {"tool": "bash", "id": "toolu_1", "arguments": {"command": "rm -rf /"}},
        "message": "bash is not allowed here",
        "probability": 0.97,
        "explanation": "deletes files",
        "judge_ms": 250.0,
    }
    summary = stored["request"]
    assert summary["caller"] == "alice" and summary["status"] == 200
    assert summary["events"] == 7 and summary["policies_acted"] == ["guard"]
    labels = {"policy": "guard", "action": "block_tool_call", "caller": "alice", "mode": "enforce"}
    assert observed.sample("gateway_policy_decisions_total", **labels) == 1


def test_secrets_are_redacted_in_the_stored_record(observed: Observed) -> None:
    observation = opened(observed)
    arguments = {
        "command": f"curl -H 'x-api-key: {ANTHROPIC_KEY}' https://api.example.com",
        "env": [f"AWS_ACCESS_KEY_ID={AWS_KEY}", {"notify": EMAIL}],
        EMAIL: "a key that is itself personal data",
    }
    judge = verdict(explanation=f"it would send {AWS_KEY} to {EMAIL}")
    observation.on_decision(
        tool_decision(arguments, message=f"blocked: leaks {ANTHROPIC_KEY}", judge=judge)
    )
    observation.finish(200, "ok", 0, ["guard"])
    decision = only_decision(observed)
    text = json.dumps(decision)
    for canary in CANARIES:
        assert canary not in text
    assert decision["target"]["arguments"]["command"] == (
        "curl -H 'x-api-key: [REDACTED:secret]' https://api.example.com"
    )
    assert decision["target"]["arguments"]["env"] == [
        "AWS_ACCESS_KEY_ID=[REDACTED:secret]",
        {"notify": "[REDACTED:email]"},
    ]
    assert "[REDACTED:email]" in decision["target"]["arguments"]
    assert decision["message"] == "blocked: leaks [REDACTED:secret]"
    assert decision["explanation"] == "it would send [REDACTED:secret] to [REDACTED:email]"
    # Nor do the spans (the request's, the judge call's) carry any of it.
    spans = observed.spans()
    assert sorted(s.name for s in spans) == ["POST /v1/messages", "judge guard"]
    for span in spans:
        for canary in CANARIES:
            assert canary not in span.to_json()


def test_redaction_runs_on_the_recorders_thread_not_the_callers(
    observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = recorder_module.redact_decision

    def watched(record: DecisionRecord, examples: Any = None) -> DecisionRecord:
        threads.append(threading.current_thread())
        return real(record, examples)

    monkeypatch.setattr(recorder_module, "redact_decision", watched)
    observation = opened(observed)
    observation.on_decision(tool_decision({"command": f"echo {AWS_KEY}"}))
    assert threads == []  # nothing redacted while the caller waited
    observation.finish(200, "ok", 0, [])
    assert AWS_KEY not in json.dumps(only_decision(observed))
    assert len(threads) == 1 and threads[0] is not threading.current_thread()


def test_big_arguments_are_truncated_and_a_secret_across_the_cut_goes_whole(
    observed: Observed,
) -> None:
    observation = opened(observed)
    # The key starts just before the 4096-character cut and ends after it.
    straddling = "x" * 4090 + " " + AWS_KEY + " and more" * 1000
    observation.on_decision(tool_decision({"command": "y" * 1_000_000, "script": straddling}))
    observation.finish(200, "ok", 0, [])
    arguments = only_decision(observed)["target"]["arguments"]
    assert arguments["command"] == "y" * 4096 + "…[truncated]"
    assert arguments["script"] == "x" * 4090 + " [REDACTED:secret]…[truncated]"
    assert "AKIA" not in arguments["script"]


def test_a_target_too_big_altogether_keeps_only_its_summary(observed: Observed) -> None:
    observation = opened(observed)
    many = {f"file_{i}": "z" * 3000 for i in range(20)}  # each fits, together they do not
    observation.on_decision(tool_decision(many))
    huge_list = list(range(1_000_000))
    observation.on_decision(tool_decision(huge_list, at=1_700_000_001.0))
    observation.finish(200, "ok", 0, [])
    first, second = observed.stored(REQUEST_ID)["decisions"]
    for decision in (first, second):
        target = decision["target"]
        assert target["tool"] == "bash" and target["id"] == "toolu_1"
        assert "arguments" not in target and "16384 bytes" in target["truncated"]
        assert len(json.dumps(target)) < 1024


def test_long_messages_and_explanations_are_cut(observed: Observed) -> None:
    observation = opened(observed)
    judge = verdict(explanation="because " * 2000)
    observation.on_decision(tool_decision({}, message="no " * 5000, judge=judge))
    observation.finish(200, "ok", 0, [])
    decision = only_decision(observed)
    assert len(decision["message"]) <= 4096 + len("…[truncated]")
    assert decision["message"].endswith("…[truncated]")
    assert len(decision["explanation"]) <= 4096 + len("…[truncated]")


def rewrite(examples: list[dict[str, str]]) -> Decision:
    target = {"kind": "email", "count": 1, "where": "response", "examples": examples}
    return Decision("pii", "pii_redaction", Action.REDACT, Mode.ENFORCE, target)


EXAMPLES = [{"before": f"mail {EMAIL}", "after": "mail [REDACTED:email]"}]


def test_examples_are_kept_unredacted_only_when_originals_are(
    observed: Observed, keeping: Observed
) -> None:
    for each in (observed, keeping):
        observation = opened(each)
        observation.on_decision(rewrite(EXAMPLES))
        observation.finish(200, "ok", 0, ["pii"])
    dropped = only_decision(observed)["target"]
    assert dropped == {"kind": "email", "count": 1, "where": "response"}
    kept = only_decision(keeping)["target"]
    assert kept == {"kind": "email", "count": 1, "where": "response", "examples": EXAMPLES}


def test_a_failed_judge_says_why(observed: Observed) -> None:
    observation = opened(observed)
    failed = verdict(probability=None, explanation="", error=f"timed out asking {EMAIL}")
    decision = tool_decision({}, action=Action.ERROR_FAIL_CLOSED, judge=failed)
    observation.on_decision(decision)
    observation.on_decision(tool_decision({}, at=1_700_000_002.0, judge=verdict(explanation="")))
    observation.finish(200, "ok", 0, ["guard"])
    first, second = observed.stored(REQUEST_ID)["decisions"]
    assert first["explanation"] == "judge failed: timed out asking [REDACTED:email]"
    assert first["probability"] is None
    assert second["explanation"] is None  # it answered, without a reason


def gauge_and_span(observed: Observed) -> tuple[float | None, int]:
    return observed.active_streams, len(observed.spans())


def test_finish_writes_the_summary_closes_the_gauge_and_ends_the_span(
    observed: Observed,
) -> None:
    observation = opened(observed)
    observation.stream_opened()
    observation.stream_opened()  # counted once
    assert observed.active_streams == 1
    record = observation.finish(200, "ok", 3, [])
    assert record is not None and record.request_id == REQUEST_ID
    assert gauge_and_span(observed) == (0, 1)
    (span,) = observed.spans()
    assert span.attributes is not None and span.attributes["gen_ai.operation.name"] == "chat"
    assert span.attributes["gen_ai.request.model"] == "claude-x"
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert observed.stored(REQUEST_ID)["request"]["trace_id"] == record.trace_id
    # Once: a second finish changes nothing.
    assert observation.finish(500, "error", 0, []) is None
    assert gauge_and_span(observed) == (0, 1)
    assert observed.stored(REQUEST_ID)["request"]["status"] == 200
    assert observed.sample("gateway_requests_total", **SERVED) == 1


def test_finish_sees_to_the_gauge_and_span_even_if_a_sink_raises(
    observed: Observed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record: RequestRecord) -> None:
        raise RuntimeError("the metrics broke")

    monkeypatch.setattr(observed.metrics, "observe_request", broken)
    observation = opened(observed)
    observation.stream_opened()
    observation.finish(200, "ok", 0, [])
    assert gauge_and_span(observed) == (0, 1)
    # The other sinks still heard of it.
    assert observed.stored(REQUEST_ID)["request"]["status"] == 200
    assert "the metrics broke" in caplog.text


def test_finish_ends_everything_even_when_the_summary_cannot_be_made(
    observed: Observed,
) -> None:
    observation = opened(observed)
    observation.stream_opened()
    observation.usage = None  # type: ignore[assignment]  # a bug upstream
    with pytest.raises(AttributeError):
        observation.finish(200, "ok", 0, [])
    assert gauge_and_span(observed) == (0, 1)


def test_a_failing_decision_sink_never_reaches_the_policy(
    observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(record: DecisionRecord, examples: Any = None, size: int | None = None) -> None:
        raise RuntimeError("queue broke")

    monkeypatch.setattr(observed.recorder, "submit_decision", broken)
    observation = opened(observed)
    observation.on_decision(tool_decision({"command": "ls"}))  # does not raise
    labels = {"policy": "guard", "action": "block_tool_call", "caller": "alice", "mode": "enforce"}
    assert observed.sample("gateway_policy_decisions_total", **labels) == 1
    observation.finish(200, "ok", 0, [])


def test_without_a_recorder_nothing_is_bounded_or_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    seen: list[DecisionRecord] = []
    monkeypatch.setattr(metrics, "observe_decision", seen.append)
    observation = Observer(None, metrics).start(HEADERS, "POST", "/v1/messages")
    decision = tool_decision({"command": "y" * 100_000})
    observation.on_decision(decision)
    (record,) = seen
    assert record.target is decision.target  # not walked, not copied


def test_the_path_and_request_id_are_bounded(observed: Observed) -> None:
    headers = {"x-request-id": "r" * 1000}
    observation = observed.observer.start(headers, "POST", "/v1/" + "p" * 10_000)
    observation.parsed("m" * 10_000, False)
    record = observation.finish(404, "rejected", 0, [])
    assert record is not None
    assert len(record.request_id) == 128 and len(record.path) == 256
    assert record.model is not None and len(record.model) == 256
