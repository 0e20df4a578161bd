"""Where audit records are kept: SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

from extproc.core.storage import StoreError
from extproc.observe.store.base import AuditStore, DecisionPage, DecisionQuery


def open_store(sqlite_path: str, postgres_url: str | None) -> AuditStore:
    """The configured store, not yet connected: PostgreSQL when a URL is given.

    Nothing touches the database here; the first call (usually `migrate`) does, so a
    database that is down when the gateway starts only costs records, not the start.
    """
    if postgres_url:
        # Imported here: the SQLite-only gateway never loads the PostgreSQL driver.
        from extproc.observe.store.postgres import PostgresStore

        return PostgresStore(postgres_url)
    from extproc.observe.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path)


__all__ = ["AuditStore", "DecisionPage", "DecisionQuery", "StoreError", "open_store"]
