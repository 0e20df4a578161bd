"""The background audit recorder: batches, a full queue and a failing database cost
records (counted) and never the caller's time, and a database that comes back is
used again without a new recorder."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.core.storage import StoreError
from extproc.observe.recorder import AuditRecorder
from extproc.observe.records import DecisionRecord, RequestRecord
from extproc.observe.store.base import DecisionPage, DecisionQuery
from extproc.observe.store.postgres import PostgresStore
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.postgres import PostgresServer, running_postgres
from tests.helpers.records import decision, request_record
from tests.helpers.wait import wait_for

DAY = 86_400.0


class FakeStore:
    """Records what it is asked; `gate` holds writes, `fail_writes` makes them fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[RequestRecord], list[DecisionRecord]]] = []
        self.purges: list[float] = []
        self.gate: threading.Event | None = None
        self.writing = threading.Event()
        self.fail_writes = 0
        self.migrated = False
        self.closed = False

    def migrate(self) -> None:
        self.migrated = True

    def write(self, requests: list[RequestRecord], decisions: list[DecisionRecord]) -> None:
        self.writing.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_writes:
            self.fail_writes -= 1
            raise StoreError("PostgreSQL at db:5432: OperationalError: the server went away")
        self.batches.append((list(requests), list(decisions)))

    def purge(self, before: float) -> int:
        self.purges.append(before)
        return 0

    def close(self) -> None:
        self.closed = True

    @property
    def records(self) -> int:
        return sum(len(r) + len(d) for r, d in self.batches)

    # Unused by the recorder; here to satisfy AuditStore.
    def decisions(self, query: DecisionQuery) -> DecisionPage:
        return DecisionPage([], None)

    def decisions_after(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        return []

    def last_decision_id(self) -> int:
        return 0

    def request(self, request_id: str) -> dict[str, Any] | None:
        return None

    def stats(self, since: float, until: float, bucket_s: int) -> dict[str, Any]:
        return {}


class Factory:
    """A store factory that fails its first `failures` calls, counting every call."""

    def __init__(self, make: Callable[[], Any], failures: int = 0) -> None:
        self.make = make
        self.failures = failures
        self.calls = 0
        self.made: list[Any] = []

    def __call__(self) -> Any:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError("disk not mounted")
        store = self.make()
        self.made.append(store)
        return store


@pytest.fixture
def recorders() -> Iterator[list[AuditRecorder]]:
    """Recorders a test made, closed after it even when it failed."""
    made: list[AuditRecorder] = []
    yield made
    for each in made:
        each.close(2)


def recorder(
    made: list[AuditRecorder], factory: Callable[[], Any], **options: Any
) -> AuditRecorder:
    options = {"retention_days": 0, "retry_min_s": 0.01, "retry_max_s": 0.05, **options}
    started = AuditRecorder(factory, **options)
    made.append(started)
    return started


def test_records_are_written_in_batches(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    rec = recorder(recorders, lambda: store, batch_size=100, flush_interval_s=5)
    for i in range(250):
        rec.submit_decision(decision(time=float(i)))
        rec.submit_request(request_record(time=float(i)))
    assert rec.flush(5)
    assert rec.written == store.records == 500 and rec.dropped == 0
    assert all(len(r) + len(d) <= 100 for r, d in store.batches)
    assert len(store.batches) >= 5
    assert store.migrated
    # Order within a kind is kept.
    assert [d.time for _, ds in store.batches for d in ds] == [float(i) for i in range(250)]


def test_a_partial_batch_waits_for_the_interval_not_longer(
    recorders: list[AuditRecorder],
) -> None:
    store = FakeStore()
    written = threading.Event()
    rec = recorder(recorders, lambda: store, flush_interval_s=0.05, on_written=written.set)
    for _ in range(3):
        rec.submit_decision(decision())
    assert written.wait(5)
    wait_for(lambda: rec.written == 3, "three records written")
    assert store.batches[0][1] == [decision()] * len(store.batches[0][1])


def test_sqlite_end_to_end(tmp_path: Path, recorders: list[AuditRecorder]) -> None:
    path = tmp_path / "new" / "audit.db"
    rec = recorder(recorders, lambda: SqliteStore(path), batch_size=50)
    rec.submit_request(request_record(request_id="r"))
    for i in range(120):
        rec.submit_decision(decision(request_id="r", time=1000.0 + i))
    rec.close(5)
    reader = SqliteStore(path)
    found = reader.request("r")
    assert found is not None and found["request"] is not None
    assert len(found["decisions"]) == 120 and rec.written == 121
    reader.close()


def test_a_full_queue_drops_and_counts_without_blocking(
    recorders: list[AuditRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    store.gate = threading.Event()  # the database hangs
    dropped: list[int] = []
    rec = recorder(recorders, lambda: store, max_queue=10, batch_size=5, on_drop=dropped.append)
    rec.submit_decision(decision())
    assert store.writing.wait(5)  # the thread is stuck writing that one
    slowest = 0.0
    with caplog.at_level(logging.WARNING, "extproc.observe"):
        for _ in range(25):
            started = time.perf_counter()
            rec.submit_decision(decision())
            slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.05
    assert rec.dropped == 15 and dropped == [1] * 15 and rec.pending == 10
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1 and "1 so far" in drops[0].getMessage()  # once per 10 s
    assert not rec.flush(0.05)  # still stuck
    store.gate.set()
    assert rec.flush(5)
    assert rec.written == 11 and store.records == 11


def test_a_store_that_cannot_open_drops_then_recovers(
    recorders: list[AuditRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    factory = Factory(lambda: store, failures=3)
    dropped: list[int] = []
    with caplog.at_level(logging.WARNING, "extproc.observe"):
        rec = recorder(recorders, factory, on_drop=dropped.append)
        for _ in range(3):
            rec.submit_decision(decision())
            assert rec.flush(5)
        wait_for(lambda: factory.calls >= 3, "three attempts to open the store")
        rec.submit_decision(decision())
        assert rec.flush(5)
    assert rec.written == 1 and rec.dropped == sum(dropped) == 3 and factory.calls == 4
    errors = [r.getMessage() for r in caplog.records if "could not open" in r.getMessage()]
    assert errors == [
        "could not open the audit store (OSError: disk not mounted); "
        "audit records are dropped until it works"
    ]


def test_a_due_purge_does_not_hold_records_back(recorders: list[AuditRecorder]) -> None:
    # The purge at start keeps failing to open the store; records still get their turn.
    factory = Factory(FakeStore, failures=1_000_000)
    rec = recorder(recorders, factory, retention_days=30)
    for _ in range(3):
        rec.submit_decision(decision())
        assert rec.flush(5)
    assert rec.dropped == 3 and rec.pending == 0


def test_a_failed_write_drops_the_batch_and_a_new_store_takes_over(
    recorders: list[AuditRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = FakeStore(), FakeStore()
    first.fail_writes = 1
    stores = iter([first, second])
    factory = Factory(lambda: next(stores))
    with caplog.at_level(logging.WARNING, "extproc.observe"):
        rec = recorder(recorders, factory)
        rec.submit_decision(decision())
        rec.submit_request(request_record())
        assert rec.flush(5)
    assert rec.dropped == 2 and rec.written == 0 and first.closed
    assert "PostgreSQL at db:5432" in caplog.text
    rec.submit_decision(decision())
    assert rec.flush(5)
    assert rec.written == 1 and second.records == 1 and factory.calls == 2


def test_a_store_that_fails_to_migrate_is_closed(recorders: list[AuditRecorder]) -> None:
    broken = FakeStore()

    def fail() -> None:
        raise StoreError("no permission to create tables")

    broken.migrate = fail  # type: ignore[method-assign]
    rec = recorder(recorders, lambda: broken)
    rec.submit_decision(decision())
    assert rec.flush(5)
    assert rec.dropped == 1 and broken.closed


def test_retention_purges_at_start_and_then_periodically(
    recorders: list[AuditRecorder],
) -> None:
    store = FakeStore()
    before = time.time()
    rec = recorder(recorders, lambda: store, retention_days=30, purge_interval_s=0.05)
    wait_for(lambda: len(store.purges) >= 3, "three purges")
    assert before - 30 * DAY <= store.purges[0] <= time.time() - 30 * DAY
    rec.close(5)
    assert store.closed


def test_retention_purges_old_rows_of_a_real_store(
    tmp_path: Path, recorders: list[AuditRecorder]
) -> None:
    path = tmp_path / "audit.db"
    seed = SqliteStore(path)
    now = time.time()
    seed.write(
        [request_record(time=now - 40 * DAY, request_id="old")],
        [decision(time=now - 40 * DAY, request_id="old"), decision(time=now, request_id="new")],
    )
    recorder(recorders, lambda: SqliteStore(path), retention_days=30)
    wait_for(lambda: seed.request("old") is None, "the old request purged")
    assert seed.request("new") is not None
    seed.close()


def test_retention_zero_never_purges(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    rec = recorder(recorders, lambda: store, retention_days=0, purge_interval_s=0.01)
    rec.submit_decision(decision())
    assert rec.flush(5)
    assert store.purges == []


def test_close_writes_what_is_queued_then_refuses(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    rec = recorder(recorders, lambda: store, flush_interval_s=60)
    for _ in range(7):
        rec.submit_decision(decision())
    rec.close(5)
    assert store.records == 7 and store.closed
    rec.submit_decision(decision())
    assert rec.dropped == 1
    assert rec.flush(1)  # nothing accepted is outstanding
    rec.close(1)  # twice is harmless


def test_close_gives_up_on_a_hung_store(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    store.gate = threading.Event()
    rec = recorder(recorders, lambda: store)
    rec.submit_decision(decision())
    assert store.writing.wait(5)
    started = time.monotonic()
    rec.close(0.1)
    assert time.monotonic() - started < 2
    store.gate.set()


def test_submits_from_many_threads_are_all_accounted(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    rec = recorder(recorders, lambda: store, max_queue=500, batch_size=64)

    def submit() -> None:
        for _ in range(1000):
            rec.submit_decision(decision())

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert rec.flush(10)
    assert rec.written + rec.dropped == 4000 and rec.written == store.records


def test_the_queue_is_bounded_in_bytes_too(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    store.gate = threading.Event()  # the database hangs: everything stays queued
    rec = recorder(recorders, lambda: store, max_queue_bytes=200_000)
    rec.submit_decision(decision())
    assert store.writing.wait(5)
    big = decision(message="m" * 40_000)
    for _ in range(10):
        rec.submit_decision(big)
    assert rec.pending == 4 and rec.dropped == 6  # ~40 KB each: four fit
    # Small records still fit beside them.
    rec.submit_request(request_record())
    assert rec.pending == 5
    store.gate.set()
    assert rec.flush(5)
    # Written records free their share: the queue takes big ones again.
    rec.submit_decision(big)
    assert rec.flush(5)
    assert rec.dropped == 6 and rec.written == store.records == 7


def test_decisions_are_redacted_before_they_are_written(recorders: list[AuditRecorder]) -> None:
    store = FakeStore()
    rec = recorder(recorders, lambda: store)
    examples = [{"before": "bob@example.com", "after": "[REDACTED:email]"}]
    rec.submit_decision(
        decision(
            target={"tool": "mail", "arguments": {"to": "bob@example.com"}},
            message="no mail to bob@example.com",
            explanation="AKIAIOSFODNN7EXAMPLE leaks",
        ),
        examples,
    )
    assert rec.flush(5)
    ((_, (written,)),) = store.batches
    assert written.target == {
        "tool": "mail",
        "arguments": {"to": "[REDACTED:email]"},
        # Originals come apart from the target and are stored as they are.
        "examples": examples,
    }
    assert written.message == "no mail to [REDACTED:email]"
    assert written.explanation == "[REDACTED:secret] leaks"


def test_a_decision_that_cannot_be_redacted_is_dropped_not_stored(
    recorders: list[AuditRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    from extproc.observe import recorder as recorder_module

    def broken(record: DecisionRecord, examples: Any = None) -> DecisionRecord:
        raise RuntimeError("a detector broke")

    monkeypatch.setattr(recorder_module, "redact_decision", broken)
    store = FakeStore()
    rec = recorder(recorders, lambda: store)
    rec.submit_decision(decision())
    rec.submit_request(request_record())
    assert rec.flush(5)
    assert rec.dropped == 1 and rec.written == 1
    assert [len(d) for _, d in store.batches] == [0]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_postgres() as started:
        yield started


def test_postgres_going_away_and_coming_back(
    server: PostgresServer, recorders: list[AuditRecorder]
) -> None:
    url = server.create_database()
    rec = recorder(recorders, lambda: PostgresStore(url), retry_max_s=0.2)
    rec.submit_decision(decision(request_id="before"))
    assert rec.flush(5) and rec.written == 1

    server.stop("immediate")
    for _ in range(5):
        rec.submit_decision(decision(request_id="during"))
    started = time.monotonic()
    assert rec.flush(10)
    assert time.monotonic() - started < 5
    assert rec.dropped == 5 and rec.written == 1

    server.start()
    rec.submit_decision(decision(request_id="after"))  # pg_ctl -w: it is up by now
    assert rec.flush(10)
    assert rec.written == 2 and rec.dropped == 5
    reader = PostgresStore(url)
    assert [r["request_id"] for r in reader.decisions_after(0)] == ["before", "after"]
    reader.close()
