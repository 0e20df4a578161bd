"""A real Observer for unit tests, every part of it in the test's hands: metrics on a
fresh registry, an audit recorder writing to SQLite in a temporary directory, traces to
an in-memory exporter. Records are read back from the store (after `flush`), as the
admin API would read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from extproc.observe.hub import Observer
from extproc.observe.metrics import GatewayMetrics
from extproc.observe.recorder import AuditRecorder
from extproc.observe.store.sqlite import SqliteStore
from extproc.observe.tracing import Tracing


class Observed:
    def __init__(self, directory: Path, keep_originals: bool = False) -> None:
        self.db = directory / "audit.db"
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        db = self.db
        # A long interval: records are written when a test flushes, not before.
        self.recorder = AuditRecorder(
            lambda: SqliteStore(db), retention_days=0, flush_interval_s=60
        )
        self.exporter = InMemorySpanExporter()
        self.tracing = Tracing(self.exporter, batch=False)
        self.observer = Observer(self.recorder, self.metrics, self.tracing, keep_originals)

    def flush(self) -> None:
        assert self.recorder.flush(10), "the recorder did not write within 10 s"

    def stored(self, request_id: str) -> dict[str, Any]:
        """The request's summary and decisions as the store holds them (flushed first)."""
        self.flush()
        store = SqliteStore(self.db)
        try:
            found = store.request(request_id)
        finally:
            store.close()
        assert found is not None, f"nothing stored for {request_id!r}"
        return found

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    @property
    def active_streams(self) -> float | None:
        return self.sample("gateway_active_streams")

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def close(self) -> None:
        self.observer.close(5)
