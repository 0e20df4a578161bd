"""Where a request's decisions and summary go: the audit recorder, the metrics and the
trace, each optional.

The pipeline opens a `RequestObservation` when a request arrives, tells it the facts as
they become known (caller, API, model, provider, first byte, usage), hands its
`on_decision` to the request's `DecisionLog`, and ends it once. Everything here runs on
the hot path, so it only builds records and hands them on: the database is written by
the recorder's own thread, never awaited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from extproc.core.audit import Decision
from extproc.core.usage import Usage
from extproc.observe.metrics import GatewayMetrics
from extproc.observe.recorder import AuditRecorder
from extproc.observe.records import DecisionRecord, RequestRecord
from extproc.observe.redact import redact_text, redact_value
from extproc.observe.tracing import RequestSpan, Tracing

log = logging.getLogger("extproc.observe")


class Observer:
    """One process's observers; any of them may be absent (auditing off, no OTLP
    endpoint configured)."""

    def __init__(
        self,
        recorder: AuditRecorder | None = None,
        metrics: GatewayMetrics | None = None,
        tracing: Tracing | None = None,
        keep_originals: bool = False,
    ) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.tracing = tracing
        self.keep_originals = keep_originals

    def start(self, headers: Mapping[str, str], method: str, path: str) -> RequestObservation:
        span = None
        if self.tracing is not None:
            span = self.tracing.start_request(headers, f"{method} {path}", time.time_ns())
        return RequestObservation(self, headers.get("x-request-id", "")[:128], method, path, span)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop (at shutdown)."""
        if self.recorder is not None:
            self.recorder.close(timeout)
        if self.tracing is not None:
            self.tracing.shutdown()


def _judge_ms(decision: Decision) -> float | None:
    judge = decision.judge
    return None if judge is None else round(judge.seconds * 1000, 1)


class RequestObservation:
    __slots__ = (
        "api",
        "caller",
        "first_byte",
        "method",
        "model",
        "observer",
        "operation",
        "path",
        "provider",
        "request_id",
        "span",
        "started",
        "started_wall",
        "stream",
        "streaming",
        "usage",
    )

    def __init__(
        self,
        observer: Observer,
        request_id: str,
        method: str,
        path: str,
        span: RequestSpan | None,
    ) -> None:
        self.observer = observer
        self.request_id = request_id
        self.method = method
        self.path = path
        self.span = span
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.caller: str | None = None
        self.api = ""
        self.operation = ""  # the OpenTelemetry GenAI operation: chat, embeddings
        self.model: str | None = None
        self.provider: str | None = None
        self.stream: bool | None = None
        self.first_byte: float | None = None
        self.usage = Usage()
        self.streaming = False  # counted in the active-streams gauge

    @property
    def keep_originals(self) -> bool:
        return self.observer.keep_originals

    def parsed(self, model: str, stream: bool) -> None:
        self.model, self.stream = model, stream

    def routed(self, provider: str) -> None:
        self.provider = provider

    def saw_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()

    def stream_opened(self) -> None:
        if not self.streaming and self.observer.metrics is not None:
            self.streaming = True
            self.observer.metrics.stream_opened()

    def on_decision(self, decision: Decision) -> None:
        """The request's DecisionLog sink: one decision, the moment it is made."""
        judge = decision.judge
        message = decision.message
        record = DecisionRecord(
            time=decision.at,
            request_id=self.request_id,
            caller=self.caller,
            api=self.api,
            model=self.model,
            provider=self.provider,
            policy=decision.policy,
            policy_type=decision.policy_type,
            action=decision.action.value,
            mode=decision.mode.value,
            target=_storable(decision.target, self.keep_originals),
            message=redact_text(message) if message else None,
            probability=judge.probability if judge is not None else None,
            explanation=redact_text(judge.explanation) if judge and judge.explanation else None,
            judge_ms=_judge_ms(decision),
        )
        observer = self.observer
        if observer.recorder is not None:
            observer.recorder.submit_decision(record)
        if observer.metrics is not None:
            observer.metrics.observe_decision(record)
        if self.span is not None:
            self.span.decision(record)
            if judge is not None:
                self.span.judge(decision.policy, judge)

    def finish(
        self, status: int, outcome: str, events: int, policies_acted: list[str]
    ) -> RequestRecord:
        now = time.monotonic()
        usage = self.usage
        record = RequestRecord(
            time=self.started_wall,
            request_id=self.request_id,
            caller=self.caller,
            api=self.api,
            model=self.model,
            provider=self.provider,
            method=self.method,
            path=self.path,
            status=status,
            stream=self.stream,
            outcome=outcome,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            ttfb_ms=(
                None
                if self.first_byte is None
                else round((self.first_byte - self.started) * 1000, 2)
            ),
            duration_ms=round((now - self.started) * 1000, 2),
            events=events,
            policies_acted=tuple(policies_acted),
            trace_id=self.span.trace_id_hex if self.span is not None else None,
        )
        observer = self.observer
        if observer.metrics is not None:
            if self.streaming:
                self.streaming = False
                observer.metrics.stream_closed()
            observer.metrics.observe_request(record)
        if observer.recorder is not None:
            observer.recorder.submit_request(record)
        if self.span is not None:
            self.span.set_request(self.api, self.model, self.provider, self.operation)
            self.span.end(record, time.time_ns())
        return record


def _storable(target: Mapping[str, Any], keep_originals: bool) -> dict[str, Any]:
    """The target with secrets and personal data redacted. Originals of rewritten text
    are the very data a policy hides: kept only when the policy file says so (and then
    not redacted, or the before/after view would show nothing)."""
    out: dict[str, Any] = redact_value({k: v for k, v in target.items() if k != "examples"})
    if keep_originals and "examples" in target:
        out["examples"] = target["examples"]
    return out
