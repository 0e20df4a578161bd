"""OpenTelemetry traces: one SERVER span per request, a child span per judge call, an
event per policy decision.

Traces are on when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); spans then go out over OTLP/HTTP protobuf in
batches, from the processor's own thread. Each `Tracing` has its own tracer provider,
never the global one, so a process (or a test) can hold several and nothing else in it
changes where its spans go.

A span carries what the gateway knows of a request and what it decided, never what a
client sent: of the request's headers only `traceparent` and `tracestate` are read (to
join the caller's trace), of a tool call only its name is kept (redacted: a model may
name a tool anything), and never a decision's message or a judge's explanation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from extproc.core.audit import JudgeVerdict
from extproc.observe.records import DecisionRecord, RequestRecord, clip_text
from extproc.policies.redacting import redact_text

DEFAULT_SERVICE_NAME = "llm-policy-gateway"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"

# Parts of a decision's target that say what was acted on without saying what it held:
# the tool's name, never its arguments; the kind and count of rewrites, never the text.
_TARGET_ATTRIBUTES = ("tool", "kind", "where", "count", "status")
# Model names come from the client: long enough to read, too short to smuggle a prompt.
_MAX_VALUE_CHARS = 256

_PROPAGATOR = TraceContextTextMapPropagator()


def _ns(seconds: float) -> int:
    # Whole and fractional seconds apart: a float holds today's time in nanoseconds
    # only to a few hundred of them.
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1_000_000_000)


def _redacted(text: str) -> str:
    # Redacted before it is cut, so a secret across the cut goes whole.
    return redact_text(clip_text(text, _MAX_VALUE_CHARS), _MAX_VALUE_CHARS)


def _without_query(path: str) -> str:
    # A query string may hold a key (some SDKs send `?key=`); the path alone says enough.
    return path.split("?", 1)[0]


def _traces_endpoint(env: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL the environment names, by the exporter's own rule: the
    signal-specific variable as it stands, else the base URL plus `/v1/traces`."""
    if specific := env.get(TRACES_ENDPOINT_ENV, "").strip():
        return specific
    if base := env.get(ENDPOINT_ENV, "").strip():
        return f"{base.removesuffix('/')}/v1/traces"
    return None


class RequestSpan:
    """One request's span. The gateway calls it from the request's own task, so it is
    not locked; `end` may be called once."""

    __slots__ = ("_ended", "_span", "_tracer")

    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        self._tracer = tracer
        self._span = span
        self._ended = False

    @property
    def span(self) -> trace.Span:
        return self._span

    @property
    def trace_id_hex(self) -> str:
        return format(self._span.get_span_context().trace_id, "032x")

    @property
    def span_id_hex(self) -> str:
        return format(self._span.get_span_context().span_id, "016x")

    def set_request(
        self, api: str, model: str | None, provider: str | None, operation: str
    ) -> None:
        """What the gateway learnt of the request; `operation` is the GenAI operation
        its dialect names (`Dialect.operation`), left out when empty."""
        span = self._span
        if not span.is_recording():
            return
        if api:
            span.set_attribute("gateway.api", api)
        if operation:
            span.set_attribute("gen_ai.operation.name", operation)
        if provider:
            span.set_attribute("gen_ai.provider.name", provider)
        if model:
            span.set_attribute("gen_ai.request.model", model[:_MAX_VALUE_CHARS])

    def decision(self, d: DecisionRecord) -> None:
        if not self._span.is_recording():
            return
        attributes: dict[str, Any] = {
            "gateway.policy": d.policy,
            "gateway.policy_type": d.policy_type,
            "gateway.action": d.action,
            "gateway.mode": d.mode,
        }
        for key in _TARGET_ATTRIBUTES:
            value = d.target.get(key)
            if isinstance(value, str):
                attributes[f"gateway.target.{key}"] = _redacted(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                attributes[f"gateway.target.{key}"] = value
        if d.probability is not None:
            attributes["gateway.judge.probability"] = d.probability
        self._span.add_event("gateway.decision", attributes, timestamp=_ns(d.time))

    def judge(self, policy: str, verdict: JudgeVerdict) -> None:
        """The judge call as a child span, timed by the verdict (the call is over by
        the time its decision is known)."""
        if not self._span.is_recording():
            return
        start = _ns(verdict.started)
        child = self._tracer.start_span(
            f"judge {policy}",
            context=trace.set_span_in_context(self._span, Context()),
            kind=SpanKind.CLIENT,
            start_time=start,
        )
        child.set_attribute("gateway.policy", policy)
        if verdict.probability is not None:
            child.set_attribute("gateway.judge.probability", verdict.probability)
        if verdict.error is not None or verdict.probability is None:
            why = _redacted(verdict.error) if verdict.error else "judge failed"
            child.set_status(Status(StatusCode.ERROR, why))
        child.end(end_time=start + round(verdict.seconds * 1_000_000_000))

    def end(self, record: RequestRecord | None, end_ns: int) -> None:
        """End the span with the request's summary (None when it could not be made:
        the span still ends, marked as an error)."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        if record is None:
            span.set_status(Status(StatusCode.ERROR, "the request's summary failed"))
        elif span.is_recording():
            attributes: dict[str, Any] = {
                "http.request.method": record.method,
                "url.path": _without_query(record.path),
                "http.response.status_code": record.status,
                "gateway.outcome": record.outcome,
            }
            if record.caller:
                attributes["gateway.caller"] = record.caller
            if record.stream is not None:
                attributes["gateway.stream"] = record.stream
            if record.input_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = record.input_tokens
            if record.output_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = record.output_tokens
            if record.policies_acted:
                attributes["gateway.policies_acted"] = list(record.policies_acted)
            span.set_attributes(attributes)
            if record.status >= 500 or record.outcome == "error":
                span.set_status(Status(StatusCode.ERROR, f"{record.outcome} ({record.status})"))
        span.end(end_time=end_ns)


class Tracing:
    """Where a process's spans go: its own tracer provider around one exporter."""

    def __init__(
        self,
        exporter: SpanExporter,
        service_name: str = DEFAULT_SERVICE_NAME,
        batch: bool = True,
    ) -> None:
        """`batch=False` exports each span as it ends, on the caller's thread: for
        tests, never for traffic."""
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("extproc.observe")
        self._shut = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tracing | None:
        """Tracing over OTLP/HTTP when the environment names an endpoint, else None.
        The exporter reads the other `OTEL_EXPORTER_OTLP_*` settings (headers, timeout,
        compression, certificates) from the process environment itself."""
        endpoint = _traces_endpoint(env)
        if endpoint is None:
            return None
        # Imported only when traces are on: the exporter brings an HTTP client with it.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        service = env.get(SERVICE_NAME_ENV, "").strip() or DEFAULT_SERVICE_NAME
        return cls(OTLPSpanExporter(endpoint=endpoint), service_name=service)

    @property
    def provider(self) -> TracerProvider:
        return self._provider

    def start_request(self, headers: Mapping[str, str], name: str, start_ns: int) -> RequestSpan:
        """The request's span, a child of the caller's when it sent a valid W3C
        `traceparent`. An empty base context, so a span current in this thread for
        other reasons never becomes the parent."""
        parent = _PROPAGATOR.extract(headers, context=Context())
        span = self._tracer.start_span(
            _without_query(name), context=parent, kind=SpanKind.SERVER, start_time=start_ns
        )
        return RequestSpan(self._tracer, span)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return self._provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Export what is queued and stop; later spans are dropped."""
        if self._shut:
            return
        self._shut = True
        self._provider.shutdown()


__all__ = ["DEFAULT_SERVICE_NAME", "RequestSpan", "Tracing"]
