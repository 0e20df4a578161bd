"""Audit records to the store, off the traffic's path.

The gateway hands records over from its event loop: `submit_*` appends to a buffer
under a lock held for a few instructions, and never waits for the database. The buffer
is bounded in records and in bytes (each record's size, about), so a backlog of huge
records cannot take the process's memory while the database is away. A daemon thread
redacts each decision (`redact.redact_decision`: the slow part, kept off the loop) and
writes the buffer in batches, one transaction each. When the buffer is full, or the
database is unreachable, records are dropped and counted (`dropped`, `on_drop`) rather
than slowing a single request: an audit trail with gaps, reported as such, beats a
gateway that stalls with its database.

The thread opens the store itself (`store_factory`, then `migrate`), so a database
that is down at start-up is opened once it is up, and a store that failed is thrown
away and opened again, after a growing pause, by a later batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc.core.storage import StoreError
from extproc.core.throttle import Throttle
from extproc.observe.records import RECORD_OVERHEAD_BYTES, DecisionRecord, RequestRecord
from extproc.observe.redact import redact_decision
from extproc.observe.store.base import AuditStore

log = logging.getLogger("extproc.observe")

LOG_EVERY_S = 10.0
DAY_S = 86_400

Record = RequestRecord | DecisionRecord


@dataclass(frozen=True, slots=True)
class _Queued:
    record: Record
    size: int  # bytes it holds, about
    examples: Any = None  # a decision's kept originals, stored unredacted


def _text_size(*values: str | None) -> int:
    return sum(len(v) for v in values if v is not None)


def request_size(record: RequestRecord) -> int:
    """What a request's summary holds in memory, about."""
    return RECORD_OVERHEAD_BYTES + _text_size(
        record.request_id, record.caller, record.model, record.path, record.trace_id
    )


def decision_size(record: DecisionRecord, target_size: int) -> int:
    """What a decision holds in memory, about, given its target's size."""
    return (
        RECORD_OVERHEAD_BYTES
        + target_size
        + _text_size(record.request_id, record.caller, record.model, record.policy)
        + _text_size(record.message, record.explanation)
    )


def _reason(exc: BaseException) -> str:
    # Stores put no secrets in their errors; the first line is enough for a log.
    lines = str(exc).strip().splitlines()
    if isinstance(exc, StoreError) and lines:
        return lines[0]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class AuditRecorder:
    """Queues records from any thread and writes them to a store from its own thread.

    `written` and `dropped` count records; `on_drop(n)` hears of every drop (a metric),
    `on_written()` of every batch written (live views that poll the store). The
    `retry_*` pauses bound how often a failed store is opened again. The queue holds at
    most `max_queue` records and `max_queue_bytes` of them (by the sizes submitted).
    """

    def __init__(
        self,
        store_factory: Callable[[], AuditStore],
        *,
        max_queue: int = 10_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        retention_days: float = 30,
        purge_interval_s: float = 3600,
        on_drop: Callable[[int], None] | None = None,
        on_written: Callable[[], None] | None = None,
        retry_min_s: float = 0.25,
        retry_max_s: float = 5.0,
    ) -> None:
        self._factory = store_factory
        self._max_queue = max(1, max_queue)
        self._max_queue_bytes = max(1, max_queue_bytes)
        self._batch_size = max(1, batch_size)
        self._flush_interval_s = flush_interval_s
        self._retention_s = max(0.0, retention_days) * DAY_S
        self._purge_interval_s = purge_interval_s
        self._on_drop = on_drop
        self._on_written = on_written
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer waits on it
        self._settled_cond = threading.Condition(self._lock)  # flush() waits on it
        self._buffer: deque[_Queued] = deque()
        self._buffered_bytes = 0
        self._accepted = 0  # records ever taken into the buffer
        self._settled = 0  # of those, how many were written or dropped since
        self._flushing = 0  # flush() calls waiting: write now, not at the interval
        self._stopping = False
        self._drop_log = Throttle(LOG_EVERY_S)
        self._error_log = Throttle(LOG_EVERY_S)
        self.written = 0
        self.dropped = 0

        # Only the writer thread touches these.
        self._store: AuditStore | None = None
        self._retry_at = 0.0  # monotonic: no new store before then
        self._retry_delay_s = retry_min_s
        self._next_purge = 0.0  # monotonic: due at once, at start

        self._thread = threading.Thread(target=self._run, name="audit-recorder", daemon=True)
        self._thread.start()

    # The hot path: called from the event loop for every request and decision.

    def submit_request(self, record: RequestRecord) -> None:
        self._submit(_Queued(record, request_size(record)))

    def submit_decision(
        self, record: DecisionRecord, examples: Any = None, target_size: int | None = None
    ) -> None:
        """Queue a decision, redacted before it is written. Its fields should be bounded
        already (`records.bound_target`, `clip_text`), `target_size` what its target
        holds (estimated from its text when not given). `examples` are the originals a
        rewrite replaced, stored as they are: pass them only when the policy file keeps
        originals."""
        if target_size is None:
            target_size = len(repr(record.target))
        self._submit(_Queued(record, decision_size(record, target_size), examples))

    def _submit(self, item: _Queued) -> None:
        with self._lock:
            fits = (
                len(self._buffer) < self._max_queue
                and self._buffered_bytes + item.size <= self._max_queue_bytes
            )
            if not self._stopping and fits:
                self._buffer.append(item)
                self._buffered_bytes += item.size
                self._accepted += 1
                size = len(self._buffer)
                # The writer sleeps while the buffer is empty, and until a batch is full.
                if size == 1 or size == self._batch_size:
                    self._wake.notify()
                return
            self.dropped += 1
            say = self._drop_log.ready()
            total = self.dropped
            why = "the recorder is closed" if self._stopping else "the audit queue is full"
        self._report_drop(1, say, total, why)

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every record submitted so far was written or dropped."""
        with self._lock:
            target = self._accepted
            if self._settled >= target:
                return True
            if not self._thread.is_alive():
                return False
            self._flushing += 1
            self._wake.notify()
            try:
                return self._settled_cond.wait_for(lambda: self._settled >= target, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the thread and close the store. Records submitted
        from now on are dropped."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "the audit recorder did not finish within %.1fs; %d records were not written",
                timeout,
                len(self._buffer),
            )

    # The writer thread.

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                if batch:
                    self._write(batch)
                self._purge_if_due()
        finally:
            self._drop_store()

    def _take(self) -> list[_Queued] | None:
        """The next batch; [] when only a purge is due; None when stopped and drained."""
        with self._lock:
            deadline: float | None = None
            while not self._stopping:
                now = time.monotonic()
                # The database is away: keep records queued until the next attempt
                # (the buffer's bound still protects the traffic).
                backing_off = self._store is None and now < self._retry_at
                purge_due = self._retention_s > 0 and now >= self._next_purge
                if not backing_off:
                    # Records first: a purge that cannot open the store must not keep
                    # them queued. A due purge runs right after the batch.
                    if self._buffer:
                        if deadline is None:
                            deadline = now + self._flush_interval_s
                        full = len(self._buffer) >= self._batch_size
                        if full or self._flushing or now >= deadline:
                            break
                    elif purge_due:
                        return []
                waits = []
                if backing_off and (self._buffer or purge_due):
                    waits.append(self._retry_at - now)
                if deadline is not None and not backing_off:
                    waits.append(deadline - now)
                if self._retention_s > 0 and not purge_due:
                    waits.append(self._next_purge - now)
                self._wake.wait(max(0.0, min(waits)) if waits else None)
            if not self._buffer:
                return None if self._stopping else []
            if len(self._buffer) <= self._batch_size:
                batch, self._buffer = list(self._buffer), deque()
            else:
                batch = [self._buffer.popleft() for _ in range(self._batch_size)]
            self._buffered_bytes -= sum(item.size for item in batch)
            return batch

    def _open_store(self) -> AuditStore | None:
        if self._store is not None:
            return self._store
        if time.monotonic() < self._retry_at:
            return None
        store: AuditStore | None = None
        try:
            store = self._factory()
            store.migrate()
        except Exception as exc:
            if store is not None:
                self._close_quietly(store)
            self._failed("could not open the audit store", exc)
            return None
        self._store = store
        self._retry_delay_s = self._retry_min_s
        return store

    def _write(self, batch: list[_Queued]) -> None:
        store = self._open_store()
        if store is None:
            self._settle(0, len(batch))
            return
        requests: list[RequestRecord] = []
        decisions: list[DecisionRecord] = []
        unredacted = 0
        for item in batch:
            record = item.record
            if isinstance(record, RequestRecord):
                requests.append(record)
                continue
            try:
                decisions.append(redact_decision(record, item.examples))
            except Exception:
                # Never stored unredacted: dropped (and counted) instead.
                unredacted += 1
                log.exception("could not redact a decision record; it is dropped")
        if unredacted:
            self._settle(0, unredacted)
        written = len(requests) + len(decisions)
        try:
            store.write(requests, decisions)
        except Exception as exc:
            self._failed("could not write audit records", exc)
            self._settle(0, written)
            return
        self._settle(written, 0)
        if self._on_written is not None:
            try:
                self._on_written()
            except Exception:
                log.exception("the audit recorder's on_written callback failed")

    def _purge_if_due(self) -> None:
        now = time.monotonic()
        if self._retention_s <= 0 or now < self._next_purge:
            return
        store = self._open_store()
        if store is None:
            return  # due again as soon as a store opens
        self._next_purge = now + self._purge_interval_s
        try:
            purged = store.purge(time.time() - self._retention_s)
        except Exception as exc:
            self._failed("could not purge old audit records", exc)
            return
        if purged:
            log.info(
                "purged %d audit records older than %g days", purged, self._retention_s / DAY_S
            )

    def _failed(self, what: str, exc: BaseException) -> None:
        """Throw the store away and try a new one after a pause that doubles each time."""
        self._drop_store()
        self._retry_at = time.monotonic() + self._retry_delay_s
        self._retry_delay_s = min(self._retry_delay_s * 2, self._retry_max_s)
        with self._lock:
            say = self._error_log.ready()
        if say:
            log.warning("%s (%s); audit records are dropped until it works", what, _reason(exc))

    def _drop_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            self._close_quietly(store)

    @staticmethod
    def _close_quietly(store: AuditStore) -> None:
        try:
            store.close()
        except Exception as exc:
            log.debug("closing the audit store failed: %s", _reason(exc))

    def _settle(self, written: int, dropped: int) -> None:
        with self._lock:
            self.written += written
            self.dropped += dropped
            self._settled += written + dropped
            self._settled_cond.notify_all()
            say = dropped > 0 and self._drop_log.ready()
            total = self.dropped
        if dropped:
            self._report_drop(dropped, say, total, "the audit store failed")

    def _report_drop(self, count: int, say: bool, total: int, why: str) -> None:
        if say:
            log.warning("audit records dropped (%s): %d so far", why, total)
        if self._on_drop is not None:
            try:
                self._on_drop(count)
            except Exception:
                log.exception("the audit recorder's on_drop callback failed")
