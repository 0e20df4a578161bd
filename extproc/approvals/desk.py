"""The approval desk: where a process holding tool calls waits for people's answers.

`ask` writes the pending call to the shared store (the audit database), tells the
webhook, and waits: for an answer, which one poller per process reads from the store
every `POLL_S` while anything waits (refreshing the rows' heartbeat on the way, so a
listing never shows a call whose holder is gone); for the timeout; or for its own
cancellation (the client went away), which ends the row as `cancelled` so it leaves the
panel. An admin API in the same process `poke`s the poller so an answer lands at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import Any, Protocol

from extproc.approvals.model import APPROVALS_PATH, Answer, PendingApproval, Status
from extproc.approvals.store import ApprovalStore
from extproc.approvals.webhook import Webhooks
from extproc.core.storage import StoreError

log = logging.getLogger("extproc.approvals")

# Answers are read this often while anything waits; the holder's heartbeat rides on the
# same query (a row not refreshed for model.STALE_AFTER_S belongs to a process gone).
POLL_S = 0.25


class ApprovalListener(Protocol):
    """Who hears of each approval asked and how it ended (the metrics)."""

    def approval_asked(self) -> None: ...

    def approval_ended(self, outcome: str, seconds: float) -> None: ...


class ApprovalUnavailable(Exception):
    """No approval can be asked: no store in this process, or the store failed."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ApprovalDesk:
    def __init__(self) -> None:
        self._store: ApprovalStore | None = None
        self.holder = holder_name()
        self.admin_url = ""  # where webhooks are told to answer
        self._waiting: dict[str, asyncio.Future[Answer]] = {}
        self._poller: asyncio.Task[None] | None = None
        # Made with each poller: a desk outlives event loops (one per test).
        self._poked: asyncio.Event | None = None
        self._webhooks = Webhooks()
        self._ending: set[asyncio.Task[Any]] = set()
        self._last_error = 0.0
        self.listener: ApprovalListener | None = None

    def attach(self, store: ApprovalStore, admin_url: str) -> None:
        """Serve approvals from `store` (this process's own connection to it)."""
        self._store = store
        self.admin_url = admin_url.rstrip("/")
        self.holder = holder_name()

    @property
    def attached(self) -> bool:
        return self._store is not None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def answer_url(self, approval_id: str) -> str:
        return f"{self.admin_url}{APPROVALS_PATH}/{approval_id}"

    def poke(self) -> None:
        """Read answers now (an admin API in this process just wrote one)."""
        if self._poked is not None:
            self._poked.set()

    async def ask(self, pending: PendingApproval, webhook_url: str | None = None) -> Answer:
        """Wait for a person's answer to `pending`, at most its timeout. Raises
        ApprovalUnavailable when it cannot even be asked."""
        store = self._store
        if store is None:
            raise ApprovalUnavailable("no approval store in this process")
        try:
            await asyncio.to_thread(store.add_approval, pending)
        except StoreError as exc:
            raise ApprovalUnavailable(str(exc)) from None
        except asyncio.CancelledError:
            # The client went while the row was written: it must not stay pending.
            self._end_later(store, pending.id, Status.CANCELLED)
            raise
        started = time.monotonic()
        if self.listener is not None:
            self.listener.approval_asked()
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[pending.id] = answer
        self._start_poller()
        view = pending.to_dict()
        if webhook_url:
            self._webhooks.send(webhook_url, "approval.pending", view, self.answer_url(pending.id))
        ended: Answer | None = None
        try:
            try:
                got = await asyncio.wait_for(answer, pending.timeout_s)
            except TimeoutError:
                got = await self._time_out(store, pending.id)
            ended = Answer(got.status, got.by, got.reason, time.monotonic() - started)
            return ended
        except asyncio.CancelledError:
            self._end_later(store, pending.id, Status.CANCELLED)
            raise
        finally:
            self._waiting.pop(pending.id, None)
            status = ended.status if ended is not None else Status.CANCELLED
            if self.listener is not None:
                self.listener.approval_ended(status.value, time.monotonic() - started)
            if webhook_url:
                closed = {**view, "status": status.value}
                if ended is not None:
                    closed.update(decided_by=ended.by, decision_reason=ended.reason)
                self._webhooks.send(
                    webhook_url, "approval.closed", closed, self.answer_url(pending.id)
                )

    async def _time_out(self, store: ApprovalStore, approval_id: str) -> Answer:
        try:
            if await asyncio.to_thread(
                store.end_approval, approval_id, Status.TIMED_OUT, time.time()
            ):
                return Answer(Status.TIMED_OUT)
            # A person answered in the last moment: that answer stands.
            row = await asyncio.to_thread(store.approval, approval_id)
        except StoreError as exc:
            self._store_failed(exc)
            return Answer(Status.TIMED_OUT)
        return _answer(row) if row is not None else Answer(Status.TIMED_OUT)

    def _end_later(self, store: ApprovalStore, approval_id: str, status: Status) -> None:
        """End the row without waiting for it (the request is being torn down)."""

        async def end() -> None:
            try:
                await asyncio.to_thread(store.end_approval, approval_id, status, time.time())
            except StoreError as exc:
                self._store_failed(exc)

        task = asyncio.create_task(end())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poked = asyncio.Event()
            self._poller = asyncio.create_task(self._poll(self._poked))

    async def _poll(self, poked: asyncio.Event) -> None:
        while self._waiting:
            poked.clear()  # before reading: a poke during the read reads again
            with_answers = [i for i, f in self._waiting.items() if not f.done()]
            store = self._store
            if store is not None and with_answers:
                try:
                    rows = await asyncio.to_thread(
                        store.approval_updates, self.holder, with_answers, time.time()
                    )
                except StoreError as exc:
                    self._store_failed(exc)
                    rows = []
                for row in rows:
                    future = self._waiting.get(str(row["id"]))
                    if future is not None and not future.done():
                        future.set_result(_answer(row))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poked.wait(), POLL_S)

    def _store_failed(self, exc: StoreError) -> None:
        now = time.monotonic()
        if now - self._last_error > 10.0:
            self._last_error = now
            log.error("approvals: the store failed: %s", exc)

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._ending:
            await asyncio.wait(set(self._ending), timeout=2.0)
        await self._webhooks.aclose()
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)


def _answer(row: dict[str, Any]) -> Answer:
    return Answer(Status(row["status"]), row.get("decided_by"), row.get("decision_reason"))


# One desk per process: every policy that asks a person asks here, across reloads.
DESK = ApprovalDesk()
