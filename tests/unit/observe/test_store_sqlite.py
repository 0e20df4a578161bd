"""The SQLite audit store: the shared contract, and what only a file shared by several
processes needs (WAL, the busy timeout, its own connection for reads)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.helpers.store_contract")

from extproc.core.storage import StoreError  # noqa: E402
from extproc.observe.records import SCHEMA_VERSION, DecisionRecord, RequestRecord  # noqa: E402
from extproc.observe.store import open_store  # noqa: E402
from extproc.observe.store.base import DecisionQuery  # noqa: E402
from extproc.observe.store.sqlite import SqliteStore  # noqa: E402
from tests.helpers.records import decision, request_record  # noqa: E402
from tests.helpers.store_contract import StoreContract  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "audit" / "audit.db")
    yield opened
    opened.close()


class TestSqliteStore(StoreContract):
    pass


def test_open_store_without_a_url_is_sqlite(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "a.db"), None)
    assert isinstance(store, SqliteStore)
    assert not (tmp_path / "a.db").exists()  # nothing happens before first use
    store.close()


def test_created_on_first_use_with_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "audit.db"
    store = SqliteStore(path)
    store.migrate()
    assert path.exists()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        versions = raw.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert {"schema_version", "requests", "decisions", "approvals"} <= tables
    assert {
        "requests_time",
        "requests_request_id",
        "decisions_time",
        "decisions_request_id",
        "decisions_policy",
        "decisions_caller",
        "decisions_action",
    } <= indexes
    store.close()


def test_the_tables_have_a_column_for_every_record_field(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    store.migrate()
    with sqlite3.connect(tmp_path / "a.db") as raw:
        for table, record in (("requests", RequestRecord), ("decisions", DecisionRecord)):
            columns = [r[1] for r in raw.execute(f"PRAGMA table_info({table})")]
            assert columns == ["id", *(f.name for f in fields(record))]
    store.close()


def test_writers_in_several_processes_share_the_file(tmp_path: Path) -> None:
    # A store per thread has its own connection, so the file's locking is exercised as
    # it is between gateway worker processes.
    path = tmp_path / "shared.db"
    SqliteStore(path).migrate()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        store = SqliteStore(path)
        try:
            start.wait()
            for i in range(25):
                store.write(
                    [request_record(request_id=f"w{n}-{i}", time=float(i))],
                    [decision(request_id=f"w{n}-{i}", time=float(i))] * 4,
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    reader = SqliteStore(path)
    assert reader.last_decision_id() == 4 * 25 * 4
    assert reader.stats(0, 100, 100)["requests"][0]["count"] == 100
    reader.close()


def test_reads_do_not_wait_for_an_open_write(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = SqliteStore(path)
    store.write([], [decision()])
    # Another process holds the write lock mid-transaction.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("DELETE FROM decisions")
    try:
        assert len(store.decisions(DecisionQuery()).rows) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.close()


def test_a_locked_file_is_a_store_error_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("extproc.observe.store.sqlite.BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "a.db"
    store = SqliteStore(path)
    store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"SQLite at .*a\.db.*locked"):
            store.write([], [decision()])
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.write([], [decision()])  # and works once the lock is gone
    assert store.last_decision_id() == 1
    store.close()


def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SqliteStore(tmp_path / "file" / "audit.db")
    with pytest.raises(StoreError, match="SQLite at"):
        store.migrate()
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError):
        SqliteStore(not_a_db).migrate()


def test_a_memory_database_keeps_one_connection() -> None:
    store = SqliteStore(":memory:")
    store.write([request_record()], [decision()])
    assert store.last_decision_id() == 1
    found = store.request("req-1")
    assert found is not None and found["request"] is not None
    store.close()
