"""The PostgreSQL audit store against a real server: the shared contract, the same
answers as SQLite for the same records, concurrent migrations, reconnection, and
errors that never show the URL's password."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import psycopg
import pytest

pytest.register_assert_rewrite("tests.helpers.store_contract")

from extproc.core.storage import StoreError  # noqa: E402
from extproc.observe.records import SCHEMA_VERSION, DecisionRecord, RequestRecord  # noqa: E402
from extproc.observe.store import open_store  # noqa: E402
from extproc.observe.store.base import DecisionQuery  # noqa: E402
from extproc.observe.store.postgres import PostgresStore, describe, scrub  # noqa: E402
from extproc.observe.store.sql import SqlStore  # noqa: E402
from extproc.observe.store.sqlite import SqliteStore  # noqa: E402
from tests.helpers.postgres import PostgresServer, running_postgres  # noqa: E402
from tests.helpers.records import decision, request_record  # noqa: E402
from tests.helpers.store_contract import T0, StoreContract, mixed  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_postgres() as started:
        yield started


@pytest.fixture(scope="module")
def database(server: PostgresServer) -> str:
    return server.create_database()


@pytest.fixture
def url(database: str) -> str:
    """The module's database, emptied: dropping tables is quicker than a new database."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS decisions, requests, approvals, schema_version")
    return database


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url)
    yield opened
    opened.close()


class TestPostgresStore(StoreContract):
    pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(store: SqlStore) -> list[object]:
    """Everything the admin API can ask, ids left out (each database counts its own)."""

    def strip(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in row.items() if k != "id"} for row in rows]

    page = store.decisions(DecisionQuery(limit=9, policy="pii"))
    request = store.request("req-3")
    assert request is not None
    return [
        strip(page.rows),
        strip(store.decisions(DecisionQuery(limit=9, before_id=page.next_cursor)).rows),
        strip(store.decisions(DecisionQuery(caller="bob", since=T0 + 5, until=T0 + 50)).rows),
        strip(store.decisions_after(3, limit=5)),
        request["request"],
        strip(request["decisions"]),
        store.stats(T0 - 30, T0 + 90, 15),
        store.last_decision_id(),
    ]


def test_same_records_same_answers_as_sqlite(store: PostgresStore, tmp_path: Path) -> None:
    sqlite = SqliteStore(tmp_path / "a.db")
    requests = [
        request_record(time=T0 + i, request_id=f"req-{i}", status=200 + i % 3) for i in range(9)
    ]
    for each in (sqlite, store):
        each.write(requests, mixed())
    assert _answers(store) == _answers(sqlite)
    assert store.purge(T0 + 30) == sqlite.purge(T0 + 30)
    assert _answers(store) == _answers(sqlite)
    sqlite.close()


def test_open_store_with_a_url_is_postgres(url: str) -> None:
    store = open_store("/nonexistent/never/used.db", url)
    assert isinstance(store, PostgresStore)
    store.migrate()
    store.close()


def test_replicas_migrating_at_once_do_not_collide(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def migrate(store: PostgresStore) -> None:
        try:
            start.wait()
            store.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    for s in stores:
        s.close()


def test_the_tables_have_a_column_for_every_record_field(store: PostgresStore, url: str) -> None:
    store.migrate()
    with psycopg.connect(url) as conn:
        for table, record in (("requests", RequestRecord), ("decisions", DecisionRecord)):
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                [table],
            ).fetchall()
            assert [c for (c,) in columns] == ["id", *(f.name for f in fields(record))]


def test_the_target_column_is_jsonb(store: PostgresStore, url: str) -> None:
    store.write([], [decision(target={"tool": "search", "n": 3})])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT target->>'tool', pg_typeof(target)::text FROM decisions")
        assert row.fetchone() == ("search", "jsonb")


def test_a_broken_connection_fails_once_then_reconnects(store: PostgresStore, url: str) -> None:
    store.write([], [decision()])
    assert store.last_decision_id() == 1
    # The server ends every session of the store (as a restart or a network cut would).
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'llm-policy-gateway'"
        )
    with pytest.raises(StoreError, match=r"PostgreSQL at 127\.0\.0\.1"):
        store.write([], [decision()])
    store.write([], [decision()])
    with pytest.raises(StoreError):
        store.last_decision_id()  # the reading connection broke too
    assert len(store.decisions(DecisionQuery()).rows) == 2


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    port = _closed_port()
    store = PostgresStore(f"postgresql://gateway:s3cr%40t-pw@127.0.0.1:{port}/audit")
    with pytest.raises(StoreError) as caught:
        store.migrate()
    text = str(caught.value)
    assert text.startswith(f"PostgreSQL at 127.0.0.1:{port}: OperationalError")
    assert "s3cr" not in text and "postgresql://" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "s3cr" not in repr(store)
    store.close()


def test_an_unparseable_url_is_a_store_error_without_the_password() -> None:
    url = "postgresql://gateway:s3cret@[::1/audit"
    store = PostgresStore(url)
    with pytest.raises(StoreError) as caught:
        store.write([], [decision()])
    assert "s3cret" not in str(caught.value)
    assert str(caught.value).startswith("PostgreSQL (unparseable URL)")


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://u:pw@db.internal:6543/audit", "PostgreSQL at db.internal:6543"),
        ("postgresql://u:pw@db.internal/audit", "PostgreSQL at db.internal:5432"),
        ("host=/run/postgresql dbname=audit password=pw", "PostgreSQL at /run/postgresql:5432"),
        ("postgresql:///audit", "PostgreSQL at localhost:5432"),
    ],
)
def test_describe_names_host_and_port_only(url: str, where: str) -> None:
    assert describe(url) == where


def test_scrub_removes_the_password_in_any_spelling() -> None:
    url = "postgresql://u:p%40ss@h/db"
    said = f'bad dsn "{url}"; password=p@ss; user:p%40ss@h; other://x:y@z'
    clean = scrub(said, url)
    assert "p@ss" not in clean and "p%40ss" not in clean and ":y@" not in clean
    assert scrub("password = 'a b' rest", "junk [") == "password = *** rest"
