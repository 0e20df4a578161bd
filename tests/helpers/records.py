"""Audit records for tests, with every field set to something plausible."""

from __future__ import annotations

from typing import Any

from extproc.observe.records import DecisionRecord, RequestRecord


def decision(**overrides: Any) -> DecisionRecord:
    values: dict[str, Any] = {
        "time": 1_000_000.0,
        "request_id": "req-1",
        "caller": "team-a",
        "api": "anthropic.messages",
        "model": "claude-x",
        "provider": "anthropic",
        "policy": "pii",
        "policy_type": "pii_redaction",
        "action": "redact",
        "mode": "enforce",
        "target": {"where": "response", "matches": {"email": 2}},
        "message": "redacted 2 emails",
        "probability": 0.93,
        "explanation": "looks like a secret",
        "judge_ms": 12.5,
    }
    values.update(overrides)
    return DecisionRecord(**values)


def request_record(**overrides: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "time": 1_000_000.0,
        "request_id": "req-1",
        "caller": "team-a",
        "api": "anthropic.messages",
        "model": "claude-x",
        "provider": "anthropic",
        "method": "POST",
        "path": "/v1/messages",
        "status": 200,
        "stream": True,
        "outcome": "ok",
        "input_tokens": 120,
        "output_tokens": 45,
        "cache_read_tokens": 7,
        "cache_write_tokens": 3,
        "ttfb_ms": 210.5,
        "duration_ms": 1830.25,
        "events": 61,
        "policies_acted": ("pii", "tools"),
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
    values.update(overrides)
    return RequestRecord(**values)
