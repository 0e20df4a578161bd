"""Every AuditStore query, written once for SQLite and PostgreSQL.

A store only supplies connections (`SqlStore._writing` / `_reading`) and its `Dialect`;
the queries live here, so the two stores cannot drift apart. SQL is written with `?`
placeholders; the PostgreSQL store translates them for its driver.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from extproc.core.storage import StoreError
from extproc.observe.records import DecisionRecord, RequestRecord
from extproc.observe.store import schema
from extproc.observe.store.approvals_sql import ApprovalQueries
from extproc.observe.store.base import DecisionPage, DecisionQuery
from extproc.observe.store.schema import (
    DECISION_COLUMNS,
    DECISION_FIELDS,
    REQUEST_COLUMNS,
    REQUEST_FIELDS,
    VERSION_TABLE,
    Dialect,
    decision_dict,
    decision_row,
    request_dict,
    request_row,
)

MAX_PAGE = 1000
MAX_BUCKETS = 2000
# Purge deletes in slices so a big backlog never holds the write lock for long:
# other gateway processes keep writing between slices.
PURGE_SLICE = 5000


class Cursor(Protocol):
    """What the queries need of a DB-API cursor (sqlite3's and psycopg's both fit)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int:
        """Rows the last statement changed; -1 when the driver cannot tell."""
        ...


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class Slot(Generic[C]):
    """One lazily opened connection, and the lock that keeps it to one thread at a time
    (the recorder's thread writes while the admin server reads)."""

    def __init__(self, connect: Callable[[], C]) -> None:
        self._connect = connect
        self.lock = threading.Lock()
        self.conn: C | None = None

    def get(self) -> C:
        if self.conn is None:
            self.conn = self._connect()
        return self.conn

    def discard(self) -> None:
        """Forget the connection (the caller holds the lock): the next call opens anew."""
        conn, self.conn = self.conn, None
        if conn is not None:
            # It is broken already: closing it is a courtesy that may fail.
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self.lock:
            self.discard()


def clamp_limit(limit: int) -> int:
    return max(1, min(MAX_PAGE, int(limit)))


def _null_last(value: Any) -> tuple[bool, str]:
    # The databases sort NULL at opposite ends; sorting here keeps both stores alike.
    return (value is None, "" if value is None else str(value))


def _groups(rows: list[Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out = [{**dict(zip(keys, row[:-1], strict=True)), "count": int(row[-1])} for row in rows]
    out.sort(key=lambda g: (-g["count"], *(_null_last(g[k]) for k in keys)))
    return out


def _bucket_range(since: float, until: float, bucket_s: int) -> range:
    if not (math.isfinite(since) and math.isfinite(until)):
        raise ValueError("since and until must be finite")
    if bucket_s < 1:
        raise ValueError("bucket_s must be at least 1")
    if until < since:
        raise ValueError("until must not be before since")
    first = math.floor(since / bucket_s)
    end = math.ceil(until / bucket_s) if until > since else first
    if end - first > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} buckets: widen bucket_s")
    return range(first, end)


class SqlStore(ApprovalQueries, ABC):
    """Every AuditStore query, over the connections a concrete store provides."""

    dialect: Dialect

    def __init__(self) -> None:
        self._migrated = False

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one write transaction, committed when the block ends;
        database errors come out as StoreError."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads; database errors come out as StoreError."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections; a later call opens new ones."""

    def _lock_migrations(self, cur: Cursor) -> None:
        """Keep two processes from migrating at once (inside the migration's transaction).
        Nothing by default: SQLite's BEGIN IMMEDIATE already admits one writer."""

    def migrate(self) -> None:
        with self._writing() as cur:
            self._lock_migrations(cur)
            cur.execute(VERSION_TABLE.format(**self.dialect.types))
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = int(cur.fetchone()[0])
            # A newer schema (a newer gateway migrated first) is used as it is: versions
            # only ever add, so what this gateway writes and reads is still there.
            for version, steps in enumerate(schema.MIGRATIONS, start=1):
                if version <= current:
                    continue
                for step in steps:
                    cur.execute(step.format(**self.dialect.types))
                cur.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
        self._migrated = True

    def schema_version(self) -> int:
        """The version the database is at (0 before the first migration)."""
        with self._reading() as cur:
            cur.execute(VERSION_TABLE.format(**self.dialect.types))
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            return int(cur.fetchone()[0])

    def _ready(self) -> None:
        # Whoever opens a store first (the recorder or the admin server) creates the
        # tables: a query never fails only because the other one has not started yet.
        if not self._migrated:
            self.migrate()

    def write(self, requests: list[RequestRecord], decisions: list[DecisionRecord]) -> None:
        if not requests and not decisions:
            return
        self._ready()
        with self._writing() as cur:
            if requests:
                marks = ", ".join("?" * len(REQUEST_FIELDS))
                cur.executemany(
                    f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ({marks})",
                    [request_row(r) for r in requests],
                )
            if decisions:
                marks = ", ".join("?" * len(DECISION_FIELDS))
                cur.executemany(
                    f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES ({marks})",
                    [decision_row(d) for d in decisions],
                )

    def _select(self, where: str, params: Sequence[Any], order: str) -> list[dict[str, Any]]:
        self._ready()
        with self._reading() as cur:
            cur.execute(f"SELECT id, {DECISION_COLUMNS} FROM decisions {where} {order}", params)
            return [decision_dict(row) for row in cur.fetchall()]

    def decisions(self, query: DecisionQuery) -> DecisionPage:
        clauses: list[str] = []
        params: list[Any] = []
        for name in ("caller", "policy", "action", "model", "request_id"):
            value = getattr(query, name)
            if value is not None:
                clauses.append(f"{name} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("time >= ?")
            params.append(float(query.since))
        if query.until is not None:
            clauses.append("time < ?")
            params.append(float(query.until))
        if query.before_id is not None:
            clauses.append("id < ?")
            params.append(int(query.before_id))
        limit = clamp_limit(query.limit)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._select(where, [*params, limit], "ORDER BY id DESC LIMIT ?")
        return DecisionPage(rows, rows[-1]["id"] if len(rows) == limit else None)

    def decisions_after(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        return self._select(
            "WHERE id > ?", [int(after_id), clamp_limit(limit)], "ORDER BY id ASC LIMIT ?"
        )

    def last_decision_id(self) -> int:
        self._ready()
        with self._reading() as cur:
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM decisions")
            return int(cur.fetchone()[0])

    def request(self, request_id: str) -> dict[str, Any] | None:
        decisions = self._select("WHERE request_id = ?", [request_id], "ORDER BY id ASC")
        with self._reading() as cur:
            # A request id logged twice (a retried request): the latest summary wins.
            cur.execute(
                f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ? "
                "ORDER BY id DESC LIMIT 1",
                [request_id],
            )
            row = cur.fetchone()
        summary = request_dict(row) if row is not None else None
        if summary is None and not decisions:
            return None
        return {"request": summary, "decisions": decisions}

    def stats(self, since: float, until: float, bucket_s: int) -> dict[str, Any]:
        since, until, bucket_s = float(since), float(until), int(bucket_s)
        buckets = _bucket_range(since, until, bucket_s)
        self._ready()
        span = "WHERE time >= ? AND time < ?"
        series = {k: [0, 0] for k in buckets}
        with self._reading() as cur:
            cur.execute(
                "SELECT policy, action, mode, caller, COUNT(*) FROM decisions "
                f"{span} GROUP BY policy, action, mode, caller",
                [since, until],
            )
            decisions = _groups(cur.fetchall(), ("policy", "action", "mode", "caller"))
            cur.execute(
                f"SELECT caller, api, status, COUNT(*) FROM requests {span} "
                "GROUP BY caller, api, status",
                [since, until],
            )
            requests = _groups(cur.fetchall(), ("caller", "api", "status"))
            for column, table in enumerate(("decisions", "requests")):
                cur.execute(
                    f"SELECT {self.dialect.bucket}, COUNT(*) FROM {table} {span} GROUP BY 1",
                    [float(bucket_s), since, until],
                )
                for index, count in cur.fetchall():
                    if int(index) in series:  # float rounding at the very edges
                        series[int(index)][column] += int(count)
        return {
            "since": since,
            "until": until,
            "bucket_s": bucket_s,
            "decisions": decisions,
            "requests": requests,
            "series": [
                {"t": float(k * bucket_s), "decisions": d, "requests": r}
                for k, (d, r) in series.items()
            ],
        }

    def purge(self, before: float) -> int:
        self._ready()
        total = 0
        for table, when in (
            ("decisions", "time"), ("requests", "time"), ("approvals", "created_at")
        ):  # fmt: skip
            while True:
                with self._writing() as cur:
                    cur.execute(
                        f"DELETE FROM {table} WHERE id IN "
                        f"(SELECT id FROM {table} WHERE {when} < ? LIMIT ?)",
                        [float(before), PURGE_SLICE],
                    )
                    deleted = max(0, cur.rowcount)
                total += deleted
                if deleted < PURGE_SLICE:
                    break
        return total


def store_failed(where: str, exc: BaseException, text: str | None = None) -> StoreError:
    """A StoreError naming the database by `where` only (never a URL); `text` replaces
    the error's own message when that had to be scrubbed."""
    first = (str(exc) if text is None else text).strip().splitlines()
    detail = f": {first[0]}" if first else ""
    return StoreError(f"{where}: {type(exc).__name__}{detail}")
