"""The embedded audit store: one SQLite file, shared by every gateway worker process.

WAL lets readers (the admin API) run beside the writer, and the busy timeout makes a
process wait its turn for the file's single write lock instead of failing at once.
Writes and reads have a connection each, so a page of the admin API never waits for
a batch being written by the recorder's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from extproc.observe.store.schema import Dialect
from extproc.observe.store.sql import Cursor, Slot, SqlStore, store_failed

BUSY_TIMEOUT_S = 5.0

SQLITE = Dialect(
    types={
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "real": "REAL",
        "int": "INTEGER",
        "bool": "INTEGER",
        "json": "TEXT",
    },
    # Times are positive, so truncating is flooring.
    bucket="CAST(time / ? AS INTEGER)",
)


class SqliteStore(SqlStore):
    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._where = f"SQLite at {self.path}"
        self._writer = Slot(self._connect)
        # ":memory:" is a new database per connection: reads must share the writer's.
        self._reader = self._writer if self.path == ":memory:" else Slot(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): transactions are opened explicitly, with
        # BEGIN IMMEDIATE, so a writer takes the lock up front and waits for it under
        # the busy timeout rather than failing on a read-to-write upgrade.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # Safe under WAL: a power cut may lose the last batches, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _writing(self) -> Iterator[Cursor]:
        with self._writer.lock:
            try:
                conn = self._writer.get()
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    conn.rollback()
                    raise
                cur.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._discard(self._writer)
                raise store_failed(self._where, exc) from None

    @contextmanager
    def _reading(self) -> Iterator[Cursor]:
        with self._reader.lock:
            try:
                yield self._reader.get().cursor()
            except (sqlite3.Error, OSError) as exc:
                self._discard(self._reader)
                raise store_failed(self._where, exc) from None

    def _discard(self, slot: Slot[sqlite3.Connection]) -> None:
        # A fresh connection on the next call: the file may have been replaced or its
        # directory recreated. (A memory database would be lost with its connection.)
        if self.path != ":memory:":
            slot.discard()

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
