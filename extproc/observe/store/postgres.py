"""The audit store for several gateway replicas: one PostgreSQL database they all share.

Used from threads with psycopg's synchronous API: the recorder's thread writes, the
admin server reads, each on a connection of its own. A connection that broke (the
server restarted, the network dropped) is thrown away when a call fails, so the call
after it connects afresh: the database coming back needs no gateway restart.

The URL may carry a password, so it never appears in an error: the database is named
by host and port only, and driver messages are scrubbed before they are passed on.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from extproc.core.storage import StoreError
from extproc.observe.store.schema import Dialect
from extproc.observe.store.sql import Cursor, Slot, SqlStore, store_failed

POSTGRES = Dialect(
    types={
        "id": "BIGSERIAL PRIMARY KEY",
        "real": "DOUBLE PRECISION",
        "int": "BIGINT",
        "bool": "BOOLEAN",
        "json": "JSONB",
    },
    # A float cast to an integer rounds here; flooring matches SQLite's buckets.
    bucket="CAST(FLOOR(time / ?) AS BIGINT)",
)

# Any constant both replicas agree on: it names the lock that serialises migrations.
MIGRATION_LOCK = 0x6C6C6D_617564  # "llm" "aud"

# Used unless the URL says otherwise: fail fast when the server is away, and notice a
# peer that vanished without closing the connection.
CONNECT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "application_name": "llm-policy-gateway",
}

_URL_SECRET = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")
_KV_SECRET = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def describe(url: str) -> str:
    """ "PostgreSQL at host:port": what an error may say about where the database is."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "PostgreSQL (unparseable URL)"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"PostgreSQL at {host}:{info.get('port') or 5432}"


def scrub(text: str, url: str) -> str:
    """`text` without the URL or its password, whatever form the driver quoted it in."""
    secrets = [url]
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    if password:
        secrets += [str(password), urllib.parse.quote(str(password), safe="")]
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _KV_SECRET.sub(r"\1***", _URL_SECRET.sub(r"\1***@", text))


class _Placeholders:
    """The shared SQL's `?` placeholders in psycopg's spelling (`%s`)."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any:
        return self._cur.executemany(sql.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresStore(SqlStore):
    dialect = POSTGRES

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._where = describe(url)
        self._writer: Slot[psycopg.Connection[Any]] = Slot(self._connect)
        self._reader: Slot[psycopg.Connection[Any]] = Slot(self._connect)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    def _connect(self) -> psycopg.Connection[Any]:
        given = conninfo_to_dict(self._url)
        extra = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
        # Autocommit: reads never leave a transaction open; writes open one explicitly.
        return psycopg.connect(self._url, autocommit=True, **extra)

    def _failed(self, slot: Slot[psycopg.Connection[Any]], exc: psycopg.Error) -> StoreError:
        conn = slot.conn
        if conn is None or conn.closed or conn.broken or isinstance(exc, psycopg.OperationalError):
            slot.discard()
        return store_failed(self._where, exc, scrub(str(exc), self._url))

    @contextmanager
    def _writing(self) -> Iterator[Cursor]:
        with self._writer.lock:
            try:
                conn = self._writer.get()
                with conn.transaction(), conn.cursor() as cur:
                    yield _Placeholders(cur)
            except psycopg.Error as exc:
                raise self._failed(self._writer, exc) from None

    @contextmanager
    def _reading(self) -> Iterator[Cursor]:
        with self._reader.lock:
            try:
                with self._reader.get().cursor() as cur:
                    yield _Placeholders(cur)
            except psycopg.Error as exc:
                raise self._failed(self._reader, exc) from None

    def _lock_migrations(self, cur: Cursor) -> None:
        # Two replicas starting together: the second waits, then finds the work done.
        cur.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
