"""The observers a process runs with, from its settings: the audit recorder writing to
SQLite or PostgreSQL, the Prometheus metrics, and traces when an OTLP endpoint is set."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from extproc.config import Settings
from extproc.observe.hub import Observer
from extproc.observe.metrics import GatewayMetrics, LabelBound
from extproc.observe.recorder import AuditRecorder
from extproc.observe.store import open_store
from extproc.observe.store.base import AuditStore
from extproc.observe.tracing import Tracing


def audit_store(settings: Settings) -> AuditStore:
    """The store the settings name (opened, not yet migrated)."""
    url = settings.audit_database_url
    return open_store(settings.audit_db, url.get_secret_value() if url is not None else None)


def build_observer(
    settings: Settings,
    keep_originals: bool = False,
    env: Mapping[str, str] | None = None,
    models: Iterable[str] = (),
) -> Observer:
    """`models`: the model names the routing table spells out, always metric labels."""
    metrics = GatewayMetrics(models=LabelBound(always=models))
    recorder = None
    if settings.audit_enabled:
        recorder = AuditRecorder(
            lambda: audit_store(settings),
            retention_days=settings.audit_retention_days,
            on_drop=metrics.audit_dropped,
        )
    tracing = Tracing.from_env(os.environ if env is None else env)
    return Observer(recorder, metrics, tracing, keep_originals)
