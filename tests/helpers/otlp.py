"""An in-process OTLP/HTTP trace receiver: what a collector would have received.

    with otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        ...
        span = receiver.wait_for_span(lambda s: s.name == "POST /v1/messages")

It accepts `POST /v1/traces` in protobuf (gzip or deflate compressed or not), as the
OpenTelemetry exporters send it, and keeps every span in arrival order. Waits are on a
condition with a deadline, never a sleep.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT...
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status: str  # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _span(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=Span.SpanKind.Name(span.kind),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=attributes(span.attributes),
        events=[
            ReceivedEvent(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events
        ],
        status=Status.StatusCode.Name(span.status.code),
        status_message=span.status.message,
        resource=resource,
        scope=scope,
    )


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            out += [_span(s, resource, scope_spans.scope.name) for s in scope_spans.spans]
    return out


class OtlpReceiver:
    """The spans received so far; safe to read from any thread."""

    def __init__(self) -> None:
        # The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it; set once bound.
        self.endpoint = ""
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self.requests = 0
        self.errors: list[str] = []

    @property
    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self.requests += 1
            self._spans += spans
            self._changed.notify_all()

    def failed(self, why: str) -> None:
        with self._changed:
            self.errors.append(why)
            self._changed.notify_all()

    def wait_for(
        self,
        check: Callable[[list[ReceivedSpan]], bool],
        what: str,
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """All spans received, once `check` holds for them; AssertionError at the
        deadline, saying what arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s.name for s in self._spans]
                    raise AssertionError(
                        f"timed out waiting for {what}; received {names}, errors {self.errors}"
                    )
                self._changed.wait(left)
            return list(self._spans)

    def wait_for_span(
        self, match: Callable[[ReceivedSpan], bool], what: str = "a span", timeout: float = 10.0
    ) -> ReceivedSpan:
        """The first span that matches, waiting for it until the deadline."""
        spans = self.wait_for(lambda got: any(match(s) for s in got), what, timeout)
        return next(s for s in spans if match(s))


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != TRACES_PATH:
                receiver.failed(f"POST to {self.path}")
                self._reply(404, b"")
                return
            try:
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                spans = decode(body)
            except Exception as exc:
                receiver.failed(f"undecodable export: {exc!r}")
                self._reply(400, b"")
                return
            receiver.add(spans)
            self._reply(200, ExportTraceServiceResponse().SerializeToString())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is no place for access logs

    return Handler


@contextmanager
def otlp_receiver(host: str = "127.0.0.1") -> Iterator[OtlpReceiver]:
    """A receiver on a free port of `host`, serving from its own thread until the block
    ends."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer((host, 0), _handler(receiver))
    receiver.endpoint = f"http://{host}:{server.server_address[1]}"
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
