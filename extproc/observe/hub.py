"""Where a request's decisions and summary go: the audit recorder, the metrics and the
trace, each optional.

The pipeline opens a `RequestObservation` when a request arrives, tells it the facts as
they become known (caller, API, model, provider, first byte, usage), hands its
`on_decision` to the request's `DecisionLog`, and ends it once. Everything here runs on
the hot path, so it only builds records, bounds what they keep of the client's data,
and hands them on: redaction and the database are the recorder's own thread's work,
never awaited. Metrics and spans get the record as queued: metrics read none of what a
client sent, spans only a tool's name (redacted by the span itself).

An observer that fails never fails the request: each sink is called on its own, its
error logged, and `finish` always closes the stream's gauge and ends its span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from extproc.core.audit import Decision, JudgeVerdict
from extproc.core.reloading import ReloadResult
from extproc.core.usage import Usage
from extproc.observe.metrics import GatewayMetrics
from extproc.observe.recorder import AuditRecorder
from extproc.observe.records import (
    MAX_FIELD_CHARS,
    MAX_REQUEST_ID_CHARS,
    DecisionRecord,
    RequestRecord,
    bound_target,
    clip_text,
)
from extproc.observe.tracing import RequestSpan, Tracing

log = logging.getLogger("extproc.observe")

P = ParamSpec("P")


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
        request_id = headers.get("x-request-id", "")[:MAX_REQUEST_ID_CHARS]
        return RequestObservation(self, request_id, method, path[:MAX_FIELD_CHARS], span)

    def reloaded(self, result: ReloadResult) -> None:
        if self.metrics is not None:
            _call("reload", self.metrics.reloaded, result.ok, result.generation or 0)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop (at shutdown)."""
        if self.recorder is not None:
            self.recorder.close(timeout)
        if self.tracing is not None:
            self.tracing.shutdown()


def _judge_ms(decision: Decision) -> float | None:
    judge = decision.judge
    return None if judge is None else round(judge.seconds * 1000, 1)


def _explanation(judge: JudgeVerdict | None) -> str | None:
    """The judge's explanation; when it failed without one, why it failed."""
    if judge is None:
        return None
    if judge.explanation:
        return judge.explanation
    if judge.error:
        return f"judge failed: {judge.error}"
    return "judge failed" if judge.probability is None else None


def _call(what: str, sink: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
    """One observer's share of the work; its failure is logged, never the request's."""
    try:
        sink(*args, **kwargs)
    except Exception:
        log.exception("observing a request failed: %s", what)


class RequestObservation:
    __slots__ = (
        "api",
        "caller",
        "finished",
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
        self.finished = False

    @property
    def keep_originals(self) -> bool:
        return self.observer.keep_originals

    def parsed(self, model: str, stream: bool) -> None:
        self.model, self.stream = model[:MAX_FIELD_CHARS], stream

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
        """The request's DecisionLog sink: one decision, the moment it is made. Only
        sizes are bounded here; the recorder's thread redacts before it writes."""
        observer = self.observer
        recorder = observer.recorder
        judge = decision.judge
        message = decision.message
        explanation = _explanation(judge)
        examples = None
        if recorder is not None:
            bound = bound_target(_without_examples(decision.target))
            target: Mapping[str, Any] = bound.value
            target_size = bound.held
            if self.keep_originals and "examples" in decision.target:
                kept = bound_target({"examples": decision.target["examples"]}, context=0)
                examples = kept.value.get("examples")
                target_size += kept.held
            message = clip_text(message) if message else None
            explanation = clip_text(explanation) if explanation else None
        else:
            # Nothing is stored: the record only feeds metrics and the span.
            target, target_size = decision.target, 0
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
            target=target,
            message=message,
            probability=judge.probability if judge is not None else None,
            explanation=explanation,
            judge_ms=_judge_ms(decision),
        )
        if recorder is not None:
            _call("recorder", recorder.submit_decision, record, examples, target_size)
        if observer.metrics is not None:
            _call("metrics", observer.metrics.observe_decision, record)
        span = self.span
        if span is not None:
            _call("span", span.decision, record)
            if judge is not None:
                _call("span", span.judge, decision.policy, judge)

    def finish(
        self, status: int, outcome: str, events: int, policies_acted: list[str]
    ) -> RequestRecord | None:
        """The request's summary to every observer; the active-streams gauge closed and
        the span ended whatever fails on the way. None if the summary could not even be
        built (then only the gauge and the span are seen to), or when it was already
        finished (once only)."""
        if self.finished:
            return None
        self.finished = True
        observer = self.observer
        record: RequestRecord | None = None
        try:
            record = self._summary(status, outcome, events, policies_acted)
            if observer.metrics is not None:
                _call("metrics", observer.metrics.observe_request, record)
            if observer.recorder is not None:
                _call("recorder", observer.recorder.submit_request, record)
        finally:
            if self.streaming and observer.metrics is not None:
                self.streaming = False
                _call("metrics", observer.metrics.stream_closed)
            span = self.span
            if span is not None:
                self.span = None
                _call("span", span.set_request, self.api, self.model, self.provider, self.operation)
                _call("span", span.end, record, time.time_ns())
        return record

    def _summary(
        self, status: int, outcome: str, events: int, policies_acted: list[str]
    ) -> RequestRecord:
        now = time.monotonic()
        usage = self.usage
        return RequestRecord(
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


def _without_examples(target: Mapping[str, Any]) -> Mapping[str, Any]:
    """The target without the originals of rewritten text: they are the very data a
    policy hides, so they reach the recorder apart (and only when the policy file keeps
    originals), to be stored unredacted, or the before/after view would show nothing."""
    if "examples" not in target:
        return target
    return {k: v for k, v in target.items() if k != "examples"}
