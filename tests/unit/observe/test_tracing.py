"""The request's trace: its span, the caller's trace it joins, the decisions on it, the
judge calls under it, and (once) the whole way out over OTLP/HTTP to a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from extproc.core.audit import Action, JudgeVerdict
from extproc.observe.records import DecisionRecord, RequestRecord
from extproc.observe.tracing import RequestSpan, Tracing, _traces_endpoint
from tests.helpers.otlp import otlp_receiver

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
SECRET = "sk-ant-secret-do-not-trace"
START_NS = 1_700_000_000_000_000_000


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    traces = Tracing(exporter, batch=False)
    yield traces
    traces.shutdown()


def record(**fields: Any) -> RequestRecord:
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
        "input_tokens": 12,
        "output_tokens": 34,
        "duration_ms": 1500.0,
        "policies_acted": ("guard",),
    }
    return RequestRecord(**{**base, **fields})


def decision(action: Action, target: dict[str, Any], **fields: Any) -> DecisionRecord:
    base: dict[str, Any] = {
        "time": 1_700_000_000.5,
        "request_id": "req-1",
        "caller": "alice",
        "api": "anthropic",
        "model": "claude-x",
        "provider": "anthropic",
        "policy": "guard",
        "policy_type": "tool_call_judge",
        "action": action.value,
        "mode": "enforce",
        "target": target,
    }
    return DecisionRecord(**{**base, **fields})


def finished(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def served(tracing: Tracing, headers: dict[str, str] | None = None) -> RequestSpan:
    span = tracing.start_request(headers or {}, "POST /v1/messages", START_NS)
    span.set_request("anthropic", "claude-x", "anthropic", "chat")
    return span


def test_a_request_is_one_server_span_with_what_the_gateway_knew(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = served(tracing)
    span.end(record(), START_NS + 1_500_000_000)

    got = finished(exporter, "POST /v1/messages")
    assert got.kind is SpanKind.SERVER
    assert got.parent is None
    assert got.start_time == START_NS
    assert got.end_time == START_NS + 1_500_000_000
    assert format(got.context.trace_id, "032x") == span.trace_id_hex
    assert got.status.status_code is StatusCode.UNSET
    assert dict(got.attributes or {}) == {
        "gateway.api": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x",
        "http.request.method": "POST",
        "url.path": "/v1/messages",
        "http.response.status_code": 200,
        "gateway.outcome": "ok",
        "gateway.caller": "alice",
        "gateway.stream": True,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gateway.policies_acted": ("guard",),
    }
    assert got.resource.attributes["service.name"] == "llm-policy-gateway"


def test_the_callers_traceparent_makes_it_a_child_and_no_other_header_is_kept(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    headers = {
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=abc",
        "authorization": f"Bearer {SECRET}",
        "x-api-key": SECRET,
        "user-agent": SECRET,
    }
    span = served(tracing, headers)
    assert span.trace_id_hex == CALLER_TRACE
    span.end(record(), START_NS + 1)

    got = finished(exporter, "POST /v1/messages")
    assert got.parent is not None
    assert format(got.parent.span_id, "016x") == CALLER_SPAN
    assert got.parent.is_remote
    assert format(got.context.trace_id, "032x") == CALLER_TRACE
    assert got.context.trace_state.get("vendor") == "abc"
    assert SECRET not in got.to_json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"}],
    ids=["none", "garbage", "zero-trace-id"],
)
def test_without_a_valid_traceparent_the_span_starts_a_trace(
    tracing: Tracing, exporter: InMemorySpanExporter, headers: dict[str, str]
) -> None:
    # A span current in this thread for other reasons must not become the parent.
    ambient = trace.SpanContext(int(CALLER_TRACE, 16), int(CALLER_SPAN, 16), is_remote=False)
    with trace.use_span(trace.NonRecordingSpan(ambient)):
        span = tracing.start_request(headers, "POST /v1/messages", START_NS)
    span.end(record(), START_NS + 1)
    got = finished(exporter, "POST /v1/messages")
    assert got.parent is None
    assert span.trace_id_hex != CALLER_TRACE


def test_a_query_string_never_reaches_the_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = tracing.start_request({}, f"POST /v1/messages?key={SECRET}", START_NS)
    span.end(record(path=f"/v1/messages?key={SECRET}"), START_NS + 1)
    got = finished(exporter, "POST /v1/messages")
    assert (got.attributes or {})["url.path"] == "/v1/messages"
    assert SECRET not in got.to_json()


def test_decisions_are_events_naming_the_tool_never_its_arguments(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = served(tracing)
    blocked = decision(
        Action.BLOCK_TOOL_CALL,
        {"tool": "bash", "arguments": {"command": f"curl -H {SECRET}"}},
        probability=0.97,
        message=SECRET,
        explanation=SECRET,
    )
    span.decision(blocked)
    rewrite = {"kind": "email", "count": 2, "where": "response", "examples": [SECRET]}
    span.decision(
        decision(Action.REDACT, rewrite, policy="pii", policy_type="pii_redaction", mode="shadow")
    )
    span.end(record(), START_NS + 1)

    got = finished(exporter, "POST /v1/messages")
    assert [(e.name, e.timestamp, dict(e.attributes or {})) for e in got.events] == [
        (
            "gateway.decision",
            1_700_000_000_500_000_000,
            {
                "gateway.policy": "guard",
                "gateway.policy_type": "tool_call_judge",
                "gateway.action": "block_tool_call",
                "gateway.mode": "enforce",
                "gateway.target.tool": "bash",
                "gateway.judge.probability": 0.97,
            },
        ),
        (
            "gateway.decision",
            1_700_000_000_500_000_000,
            {
                "gateway.policy": "pii",
                "gateway.policy_type": "pii_redaction",
                "gateway.action": "redact",
                "gateway.mode": "shadow",
                "gateway.target.kind": "email",
                "gateway.target.where": "response",
                "gateway.target.count": 2,
            },
        ),
    ]
    assert SECRET not in got.to_json()


def test_a_judge_call_is_a_child_span_timed_by_its_verdict(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = served(tracing, {"traceparent": TRACEPARENT})
    span.judge("guard", JudgeVerdict(0.25, "looks fine", started=1_700_000_000.5, seconds=0.75))
    span.end(record(), START_NS + 2_000_000_000)

    parent = finished(exporter, "POST /v1/messages")
    judge = finished(exporter, "judge guard")
    assert judge.kind is SpanKind.CLIENT
    assert judge.parent is not None
    assert judge.parent.span_id == parent.context.span_id
    assert judge.context.trace_id == parent.context.trace_id == int(CALLER_TRACE, 16)
    assert judge.start_time == 1_700_000_000_500_000_000
    assert judge.end_time == 1_700_000_001_250_000_000
    assert judge.status.status_code is StatusCode.UNSET
    assert dict(judge.attributes or {}) == {
        "gateway.policy": "guard",
        "gateway.judge.probability": 0.25,
    }
    assert "looks fine" not in judge.to_json()


def test_a_failed_judge_call_is_an_error_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = served(tracing)
    span.judge(
        "guard", JudgeVerdict(None, "", started=1_700_000_000.0, seconds=5.0, error="timed out")
    )
    span.end(record(), START_NS + 1)

    judge = finished(exporter, "judge guard")
    assert judge.status.status_code is StatusCode.ERROR
    assert judge.status.description == "timed out"
    assert dict(judge.attributes or {}) == {"gateway.policy": "guard"}


@pytest.mark.parametrize(
    ("status", "outcome", "code"),
    [
        (200, "ok", StatusCode.UNSET),
        (403, "rejected", StatusCode.UNSET),
        (499, "cancelled", StatusCode.UNSET),
        (502, "ok", StatusCode.ERROR),
        (200, "error", StatusCode.ERROR),
    ],
)
def test_server_errors_and_failed_requests_mark_the_span(
    tracing: Tracing, exporter: InMemorySpanExporter, status: int, outcome: str, code: StatusCode
) -> None:
    served(tracing).end(record(status=status, outcome=outcome), START_NS + 1)
    assert finished(exporter, "POST /v1/messages").status.status_code is code


def test_unknown_facts_are_left_out_and_end_counts_once(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    span = tracing.start_request({}, "POST /v1/embeddings", START_NS)
    span.set_request("embeddings", None, None, "embeddings")
    bare = record(
        caller=None,
        stream=None,
        input_tokens=None,
        output_tokens=None,
        policies_acted=(),
        path="/v1/embeddings",
        status=401,
        outcome="rejected",
    )
    span.end(bare, START_NS + 1)
    span.end(bare, START_NS + 2)
    got = finished(exporter, "POST /v1/embeddings")
    assert got.end_time == START_NS + 1
    assert dict(got.attributes or {}) == {
        "gateway.api": "embeddings",
        "gen_ai.operation.name": "embeddings",
        "http.request.method": "POST",
        "url.path": "/v1/embeddings",
        "http.response.status_code": 401,
        "gateway.outcome": "rejected",
    }


def test_the_operation_is_the_one_given_and_left_out_when_none_is(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    # The dialect names the operation (Dialect.operation); the span guesses none.
    for path, operation in (("/v1/chat/completions", "chat"), ("/v1/other", "")):
        span = tracing.start_request({}, f"POST {path}", START_NS)
        span.set_request("openai", "gpt-x", "openai", operation)
        span.end(record(), START_NS + 1)
    chat = finished(exporter, "POST /v1/chat/completions").attributes or {}
    assert chat["gen_ai.operation.name"] == "chat"
    other = finished(exporter, "POST /v1/other").attributes or {}
    assert "gen_ai.operation.name" not in other


def test_a_tool_name_is_redacted_and_a_missing_summary_still_ends_the_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    aws_key = "AKIAIOSFODNN7EXAMPLE"  # what the pii patterns know as a secret
    span = tracing.start_request({}, "POST /v1/messages", START_NS)
    span.decision(decision(Action.BLOCK_TOOL_CALL, {"tool": f"run {aws_key}"}))
    span.end(None, START_NS + 1)
    got = finished(exporter, "POST /v1/messages")
    (event,) = got.events
    assert (event.attributes or {})["gateway.target.tool"] == "run [REDACTED:secret]"
    assert got.status.status_code is StatusCode.ERROR
    assert aws_key not in got.to_json()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": " "}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/custom",
            },
            "http://t:9/custom",
        ),
    ],
)
def test_traces_are_on_only_with_an_endpoint(env: dict[str, str], url: str | None) -> None:
    assert _traces_endpoint(env) == url
    traces = Tracing.from_env(env)
    assert (traces is None) == (url is None)
    if traces is not None:
        traces.shutdown()


def test_spans_arrive_at_an_otlp_receiver() -> None:
    with otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "gw-test"}
        traces = Tracing.from_env(env)
        assert traces is not None
        span = traces.start_request({"traceparent": TRACEPARENT}, "POST /v1/messages", START_NS)
        span.set_request("anthropic", "claude-x", "anthropic", "chat")
        span.decision(decision(Action.BLOCK_TOOL_CALL, {"tool": "bash", "arguments": SECRET}))
        span.judge("guard", JudgeVerdict(0.9, "no", started=1_700_000_000.5, seconds=0.5))
        span.end(record(), START_NS + 2_000_000_000)
        traces.shutdown()  # flushes the batch

        spans = receiver.wait_for(lambda got: len(got) >= 2, "the request and judge spans")
        assert receiver.errors == []
        server = receiver.wait_for_span(lambda s: s.name == "POST /v1/messages")
        judge = receiver.wait_for_span(lambda s: s.name == "judge guard")

    assert len(spans) == 2
    assert server.kind == "SPAN_KIND_SERVER"
    assert server.trace_id == judge.trace_id == CALLER_TRACE
    assert server.parent_span_id == CALLER_SPAN
    assert judge.parent_span_id == server.span_id
    assert judge.kind == "SPAN_KIND_CLIENT"
    assert (judge.start_ns, judge.end_ns) == (1_700_000_000_500_000_000, 1_700_000_001_000_000_000)
    assert server.resource["service.name"] == "gw-test"
    assert server.status == "STATUS_CODE_UNSET"
    assert {k: server.attributes[k] for k in ("gen_ai.request.model", "gateway.caller")} == {
        "gen_ai.request.model": "claude-x",
        "gateway.caller": "alice",
    }
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.usage.output_tokens"] == 34
    assert server.attributes["gateway.policies_acted"] == ["guard"]
    assert [(e.name, e.attributes["gateway.target.tool"]) for e in server.events] == [
        ("gateway.decision", "bash")
    ]
    assert SECRET not in repr(spans)
