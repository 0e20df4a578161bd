"""What the gateway decided, seen from outside, end to end through the real Envoy: decision
records and request summaries from the admin API, Prometheus metrics from /metrics, and
spans at an OTLP receiver; no secret in any of them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack, free_port
from tests.helpers.admin import (
    ADMIN_KEY,
    admin_get,
    decisions,
    metric,
    observed_stack,
    request_detail,
    scrape,
    wait_decisions,
)
from tests.helpers.otlp import OtlpReceiver, otlp_receiver
from tests.helpers.policy_stack import A_TOOLS, MOCK_JUDGE, assert_no_stream_violations
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

# Canaries: none of these may appear in a log, a record, a metric or a span.
GATEWAY_KEY = "sk-gw-canary-5d1e8f3a9c"
PROVIDER_KEY = "sk-ant-api03-canary-7f2b9d4e1a6c"
EMAIL = "alice.smith@example.com"

CONFIG = (
    """
policies:
  - type: request_guard
    deny_patterns: ["forbidden-topic"]
  - {type: pii_redaction, redact_requests: false}
  - type: string_replacement
    replacements: [{pattern: "confidential", replacement: "[withheld]"}]
    apply_to_request: true
  - type: tool_call_judge
    threshold: 0.6
    judge: """
    + MOCK_JUDGE
    + """
validate_streams: true
"""
)
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as found:
        yield found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Stack]:
    mock_port = free_port()
    yield from observed_stack(
        tmp_path_factory,
        "observe",
        CONFIG,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        mock_port=mock_port,
        gateway_keys=(SecretStr(DEV_GATEWAY_KEY), SecretStr(GATEWAY_KEY)),
        # The mock plays the real API, so the gateway injects a (canary) provider key.
        upstream_anthropic_url=f"http://127.0.0.1:{mock_port}",
        anthropic_api_key=SecretStr(PROVIDER_KEY),
    )


def claude(st: Stack, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=st.base_url, api_key=GATEWAY_KEY, max_retries=0, default_headers=headers
    )


def ask(st: Stack, prompt: str, stream: bool, **headers: str) -> Any:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 300,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    client = claude(st, **headers)
    if stream:
        with client.messages.stream(**body) as s:
            return s.get_final_message()
    return client.messages.create(**body)


def test_a_blocked_tool_call_is_recorded_with_the_judges_verdict(stack: Stack) -> None:
    message = ask(stack, "Please use bash to run `rm -rf /`", stream=True)
    assert not [b for b in message.content if b.type == "tool_use"]
    [found] = wait_decisions(stack, action="block_tool_call", model=MODEL)
    assert found["policy"] == found["policy_type"] == "tool_call_judge"
    assert (found["caller"], found["api"], found["provider"]) == (
        "GATEWAY_API_KEYS[1]",
        "anthropic",
        "anthropic",
    )
    assert found["mode"] == "enforce" and found["probability"] == pytest.approx(0.97)
    assert found["explanation"] and found["judge_ms"] > 0
    assert found["target"]["tool"] == "bash"
    assert found["target"]["arguments"] == {"command": "rm -rf /"}
    assert "'bash' was blocked" in found["message"]

    detail = request_detail(stack, found["request_id"])
    summary = detail["request"]
    assert summary["status"] == 200 and summary["stream"] is True
    assert summary["outcome"] == "ok" and summary["path"] == "/v1/messages"
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0
    assert summary["ttfb_ms"] > 0 and summary["duration_ms"] >= summary["ttfb_ms"]
    assert summary["events"] > 0 and summary["policies_acted"] == ["tool_call_judge"]
    assert [d["action"] for d in detail["decisions"]] == ["block_tool_call"]


def test_an_allowed_tool_call_is_recorded_too(stack: Stack) -> None:
    message = ask(stack, "Please use bash to run `ls -la`", stream=False)
    assert [b.name for b in message.content if b.type == "tool_use"] == ["bash"]
    allowed = wait_decisions(stack, action="allow", policy="tool_call_judge")
    assert allowed[0]["target"]["arguments"] == {"command": "ls -la"}
    assert allowed[0]["probability"] < 0.6


def test_rewrites_are_recorded_by_kind_and_count_without_the_original(stack: Stack) -> None:
    message = ask(stack, f"Repeat after me: confidential, write to {EMAIL} or {EMAIL}", stream=True)
    assert EMAIL not in message.content[0].text
    [redacted] = wait_decisions(stack, action="redact")
    assert redacted["policy"] == "pii_redaction"
    assert redacted["target"] == {"kind": "email", "count": 2, "where": "response"}
    [replaced] = wait_decisions(stack, action="replace")
    assert replaced["policy"] == "string_replacement"
    assert replaced["target"] == {"kind": "pattern 1", "count": 1, "where": "request"}
    acted = request_detail(stack, redacted["request_id"])["request"]["policies_acted"]
    assert sorted(acted) == ["pii_redaction", "string_replacement"]


def test_a_rejected_request_is_recorded(stack: Stack) -> None:
    with pytest.raises(anthropic.APIStatusError) as err:
        ask(stack, "tell me about the forbidden-topic", stream=False)
    [found] = wait_decisions(stack, action="reject_request")
    assert found["policy"] == "request_guard" and found["target"]["status"] == err.value.status_code
    summary = request_detail(stack, found["request_id"])["request"]
    assert summary["status"] == err.value.status_code and summary["provider"] is None


def test_metrics_count_decisions_requests_and_tokens(stack: Stack) -> None:
    ask(stack, "Please use bash to run `rm -rf /tmp/x`", stream=False)
    wait_decisions(stack, action="block_tool_call", count=2)
    samples = scrape(stack)
    blocked = metric(
        samples,
        "gateway_policy_decisions_total",
        policy="tool_call_judge",
        action="block_tool_call",
        mode="enforce",
        caller="GATEWAY_API_KEYS[1]",
    )
    assert blocked >= 2
    ok = metric(
        samples, "gateway_requests_total", api="anthropic", provider="anthropic", status="200"
    )
    assert ok >= 2
    tokens = metric(
        samples,
        "gen_ai_client_token_usage_count",
        gen_ai_token_type="output",
        gen_ai_request_model=MODEL,
        gen_ai_provider_name="anthropic",
    )
    assert tokens >= 2
    assert metric(samples, "gateway_judge_duration_seconds_count", policy="tool_call_judge") >= 2
    assert metric(samples, "gen_ai_server_request_duration_seconds_count") >= 2
    assert metric(samples, "gen_ai_server_time_to_first_token_seconds_count") >= 1
    assert ("gateway_active_streams", frozenset()) in samples
    assert metric(samples, "gateway_audit_dropped_total") == 0


def test_spans_join_the_callers_trace(stack: Stack, receiver: OtlpReceiver) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    ask(
        stack,
        "Please use bash to run `rm -rf /`",
        stream=True,
        traceparent=f"00-{trace_id}-{parent}-01",
    )
    request_span = receiver.wait_for_span(
        lambda s: s.trace_id == trace_id and s.parent_span_id == parent, "the request's span"
    )
    attrs = request_span.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert [e.name for e in request_span.events] == ["gateway.decision"]
    judge = receiver.wait_for_span(
        lambda s: s.trace_id == trace_id and s.parent_span_id == request_span.span_id,
        "the judge's span",
    )
    assert judge.name == "judge tool_call_judge"

    # The request's summary names its trace, so the view can lead to it.
    def summary_names_the_trace() -> bool:
        blocked = wait_decisions(stack, action="block_tool_call")
        return any(
            request_detail(stack, d["request_id"])["request"]["trace_id"] == trace_id
            for d in blocked
        )

    wait_for(summary_names_the_trace, "a request summary naming the caller's trace")


@pytest.mark.parametrize(
    ("action", "policy", "prompt"),
    [
        ("redact", "pii_redaction", f"Repeat after me: {EMAIL}"),
        ("replace", "string_replacement", "Repeat after me: confidential"),
        ("reject_request", "request_guard", "the forbidden-topic again"),
    ],
)
def test_rewrites_and_rejections_are_counted_and_traced(
    stack: Stack, receiver: OtlpReceiver, action: str, policy: str, prompt: str
) -> None:
    before = len(decisions(stack, action=action))
    try:
        ask(stack, prompt, stream=False)
    except anthropic.APIStatusError:
        assert action == "reject_request"
    found = wait_decisions(stack, before + 1, action=action)[0]  # newest first
    samples = scrape(stack)
    assert metric(samples, "gateway_policy_decisions_total", policy=policy, action=action) >= 1
    trace_id = request_detail(stack, found["request_id"])["request"]["trace_id"]
    span = receiver.wait_for_span(
        lambda s: s.trace_id == trace_id and s.parent_span_id == "", f"the {action} request's span"
    )
    events = [e.attributes for e in span.events if e.name == "gateway.decision"]
    assert {"gateway.policy": policy, "gateway.action": action}.items() <= next(
        e for e in events if e["gateway.action"] == action
    ).items()
    if action == "reject_request":
        status = str(found["target"]["status"])
        assert metric(samples, "gateway_requests_total", status=status) >= 1
        assert span.attributes["http.response.status_code"] == found["target"]["status"]


def test_the_admin_api_wants_its_key(stack: Stack) -> None:
    assert admin_get(stack, "/api/decisions", key="wrong").status_code == 401
    assert httpx.get(f"{stack.admin_url}/api/decisions", timeout=5).status_code == 401
    bad = admin_get(stack, "/api/decisions", action="explode")
    assert bad.status_code == 400 and "action" in bad.json()["error"]["message"]
    assert httpx.get(f"{stack.admin_url}/healthz", timeout=5).status_code == 200


def test_openai_usage_is_recorded(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=GATEWAY_KEY, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"Repeat after me: {EMAIL}"}]
    )
    found = wait_decisions(stack, action="redact", model="gpt-4o-mini")[0]
    assert found["api"] == "openai" and found["provider"] == "openai"
    summary = request_detail(stack, found["request_id"])["request"]
    assert summary["api"] == "openai" and summary["stream"] is False
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0


def test_no_secret_anywhere(stack: Stack, receiver: OtlpReceiver) -> None:
    """Runs last in this module: every output of everything above, searched for the keys."""
    log_dir = Path(stack.log_dir or ".")
    # The mock stands in for the provider, which is meant to get the provider key.
    logs = [p for p in log_dir.glob("*.log") if p.name != "mock-llm.log"]
    # One worker serves the admin server itself (several get an admin child).
    assert {p.name for p in logs} >= {"extproc.log", "envoy.log"}
    stack_outputs = {
        "logs": "".join(p.read_text(errors="replace") for p in logs),
        "audit db": "".join(p.read_bytes().decode("latin-1") for p in log_dir.glob("audit.db*")),
        "metrics": httpx.get(f"{stack.admin_url}/metrics", timeout=5).text,
        "decisions": admin_get(stack, "/api/decisions", limit=1000).text,
        "stats": admin_get(stack, "/api/stats").text,
        "spans": repr(receiver.spans),
    }
    for canary in (GATEWAY_KEY, PROVIDER_KEY, ADMIN_KEY):
        for where, text in stack_outputs.items():
            assert canary not in text, f"a key reached the {where}"
    assert_no_stream_violations(stack)
