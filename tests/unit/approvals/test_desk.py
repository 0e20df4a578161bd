"""The approval desk (extproc/approvals/desk.py) over a real SQLite store: a person's
answer, read from the store, ends the wait; the timeout and the client going away end
the row; an answer at the very edge of the timeout wins; webhooks are told, and one that
fails breaks nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from extproc.approvals import desk as desk_module
from extproc.approvals.desk import ApprovalDesk, ApprovalUnavailable
from extproc.approvals.model import Answer, PendingApproval, Status
from extproc.core.storage import StoreError
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import eventually

ADMIN_URL = "http://127.0.0.1:1"
WEBHOOK_TOKEN = "hook-token-7f3a9c"
Received = list[dict[str, Any]]


@pytest_asyncio.fixture
async def desk(store: SqliteStore) -> AsyncIterator[ApprovalDesk]:
    d = ApprovalDesk()
    d.attach(store, ADMIN_URL + "/")
    yield d
    await d.aclose()


@pytest_asyncio.fixture
async def hook() -> AsyncIterator[tuple[str, Received]]:
    """A bot's webhook: its URL (with a token, as bots' URLs have) and what it received."""
    received: Received = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook?token={WEBHOOK_TOKEN}", received
    await runner.cleanup()


def pending(
    desk: ApprovalDesk, approval_id: str = "a1", timeout_s: float = 30.0
) -> PendingApproval:
    return PendingApproval(
        id=approval_id,
        holder=desk.holder,
        caller="alice",
        api="anthropic",
        model="claude-sonnet-4-6",
        request_id="req-1",
        policy="approve-deploys",
        tool="Bash",
        arguments='{"command": "kubectl apply -f prod.yaml"}',
        preceding_text="Deploying now.",
        why="rule: tools Bash",
        timeout_s=timeout_s,
    )


async def added(store: SqliteStore, approval_id: str) -> dict[str, Any]:
    """The row, once the desk has written it."""
    await eventually(lambda: store.approval(approval_id) is not None, f"row {approval_id}")
    row = store.approval(approval_id)
    assert row is not None
    return row


def answer(
    store: SqliteStore, approval_id: str, status: Status, by: str, reason: str | None
) -> None:
    row = store.answer_approval(approval_id, status, by, reason, time.time())
    assert row is not None and row["status"] == status, row


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(Status.APPROVED, "expected deploy"), (Status.DENIED, None)]
)
async def test_an_answer_in_the_store_ends_the_wait(
    desk: ApprovalDesk, store: SqliteStore, status: Status, reason: str | None
) -> None:
    call = pending(desk)
    started = time.monotonic()
    asking = asyncio.create_task(desk.ask(call))
    row = await added(store, call.id)
    assert row["status"] == Status.PENDING and row["holder"] == desk.holder
    assert desk.waiting == 1
    # Another task answers, as the admin API (in any process) does: through the store.
    await asyncio.to_thread(answer, store, call.id, status, "alice", reason)
    got = await asyncio.wait_for(asking, 5)
    assert (got.status, got.by, got.reason) == (status, "alice", reason)
    assert got.allowed is (status is Status.APPROVED)
    assert 0 < got.seconds <= time.monotonic() - started
    assert desk.waiting == 0
    ended = store.approval(call.id)
    assert ended is not None and ended["status"] == status and ended["decided_by"] == "alice"


async def test_concurrent_asks_each_get_their_own_answer(
    desk: ApprovalDesk, store: SqliteStore
) -> None:
    calls = [pending(desk, f"a{i}") for i in range(3)]
    asking = [asyncio.create_task(desk.ask(c)) for c in calls]
    for c in calls:
        await added(store, c.id)
    assert desk.waiting == 3
    answer(store, "a2", Status.DENIED, "bob", "no")
    answer(store, "a0", Status.APPROVED, "alice", None)
    answer(store, "a1", Status.APPROVED, "carol", "ok")
    got = await asyncio.wait_for(asyncio.gather(*asking), 5)
    assert [(a.status, a.by) for a in got] == [
        (Status.APPROVED, "alice"),
        (Status.APPROVED, "carol"),
        (Status.DENIED, "bob"),
    ]
    assert desk.waiting == 0


async def test_a_poke_reads_the_answer_at_once(
    desk: ApprovalDesk, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the poke the next read would be a minute away.
    monkeypatch.setattr(desk_module, "POLL_S", 60.0)
    call = pending(desk)
    asking = asyncio.create_task(desk.ask(call))
    await added(store, call.id)

    def poller_idle() -> bool:
        # The poller did its first read and now waits for a poke (or POLL_S). A poke
        # while it reads is lost (see the report), so the test waits for this point.
        poked = desk._poked
        return poked is not None and bool(poked._waiters)  # type: ignore[attr-defined]

    await eventually(poller_idle, "the poller to wait")
    answer(store, call.id, Status.APPROVED, "alice", None)
    desk.poke()
    got = await asyncio.wait_for(asking, 2)
    assert got.status is Status.APPROVED and got.by == "alice"
    assert got.seconds < 2


async def test_the_holder_keeps_its_rows_alive_while_waiting(
    desk: ApprovalDesk, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_module, "POLL_S", 0.02)
    call = pending(desk)
    asking = asyncio.create_task(desk.ask(call))
    first = await added(store, call.id)
    await eventually(
        lambda: (store.approval(call.id) or {})["seen_at"] > first["seen_at"], "a heartbeat"
    )
    assert [r["id"] for r in store.pending_approvals(time.time())] == [call.id]
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking


# -- the end without an answer -----------------------------------------------------------


async def test_no_answer_in_time_times_out(desk: ApprovalDesk, store: SqliteStore) -> None:
    call = pending(desk, timeout_s=0.3)
    got = await asyncio.wait_for(desk.ask(call), 5)
    assert got == Answer(Status.TIMED_OUT, None, None, got.seconds)
    assert got.seconds >= 0.3 and not got.allowed
    row = store.approval(call.id)
    assert row is not None and row["status"] == Status.TIMED_OUT
    assert row["decided_by"] is None and row["decided_at"] is not None
    assert desk.waiting == 0
    assert store.pending_approvals(time.time()) == []


class AnsweredAtTheEdge(SqliteStore):
    """A person's answer lands just before the holder ends its row on the timeout."""

    def end_approval(self, approval_id: str, status: Status, now: float) -> bool:
        row = self.approval(approval_id)
        assert row is not None
        just_in_time = row["expires_at"] - 0.001
        self.answer_approval(approval_id, Status.APPROVED, "alice", "just in time", just_in_time)
        return super().end_approval(approval_id, status, now)


async def test_an_answer_at_the_timeout_edge_wins(tmp_path: Path) -> None:
    store = AnsweredAtTheEdge(tmp_path / "audit.db")
    desk = ApprovalDesk()
    desk.attach(store, ADMIN_URL)
    try:
        call = pending(desk, timeout_s=0.2)
        got = await asyncio.wait_for(desk.ask(call), 5)
        assert (got.status, got.by, got.reason) == (Status.APPROVED, "alice", "just in time")
        assert got.seconds >= 0.2
        row = store.approval(call.id)
        assert row is not None and row["status"] == Status.APPROVED
    finally:
        await desk.aclose()
        store.close()


async def test_the_client_going_away_cancels_the_row(
    desk: ApprovalDesk, store: SqliteStore
) -> None:
    call = pending(desk)
    asking = asyncio.create_task(desk.ask(call))
    await added(store, call.id)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asking, 5)
    assert desk.waiting == 0
    await eventually(
        lambda: (store.approval(call.id) or {}).get("status") == Status.CANCELLED,
        "the row to be cancelled",
    )
    assert store.pending_approvals(time.time()) == []
    # Too late now: an answer changes nothing.
    late = store.answer_approval(call.id, Status.APPROVED, "alice", None, time.time())
    assert late is not None and late["status"] == Status.CANCELLED


# -- nothing to ask ----------------------------------------------------------------------


async def test_a_desk_without_a_store_cannot_ask() -> None:
    desk = ApprovalDesk()
    assert not desk.attached
    with pytest.raises(ApprovalUnavailable, match="no approval store"):
        await desk.ask(pending(desk))
    assert desk.waiting == 0


async def test_a_store_failing_to_add_cannot_ask(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    broken = SqliteStore(tmp_path / "file" / "audit.db")
    desk = ApprovalDesk()
    desk.attach(broken, ADMIN_URL)
    with pytest.raises(ApprovalUnavailable, match="SQLite at"):
        await desk.ask(pending(desk))
    assert desk.waiting == 0
    await desk.aclose()


class ReadsFail(SqliteStore):
    def approval_updates(self, holder: str, ids: Any, now: float) -> list[dict[str, Any]]:
        raise StoreError("SQLite at audit.db: OperationalError: disk I/O error")


async def test_a_store_failing_to_read_still_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(desk_module, "POLL_S", 0.02)
    store = ReadsFail(tmp_path / "audit.db")
    desk = ApprovalDesk()
    desk.attach(store, ADMIN_URL)
    try:
        with caplog.at_level(logging.ERROR, "extproc.approvals"):
            got = await asyncio.wait_for(desk.ask(pending(desk, timeout_s=0.3)), 5)
        assert got.status is Status.TIMED_OUT
        # Logged, and not once per read.
        failures = [r for r in caplog.records if "the store failed" in r.getMessage()]
        assert len(failures) == 1
    finally:
        await desk.aclose()
        store.close()


# -- webhooks ----------------------------------------------------------------------------


async def test_the_webhook_is_told_of_the_call_and_its_end(
    desk: ApprovalDesk, store: SqliteStore, hook: tuple[str, Received]
) -> None:
    url, received = hook
    call = pending(desk)
    asking = asyncio.create_task(desk.ask(call, url))
    await eventually(lambda: len(received) == 1, "the pending webhook")
    [opened] = received
    answer_url = f"{ADMIN_URL}/api/approvals/{call.id}"
    assert opened["type"] == "approval.pending"
    assert opened["approval"] == call.to_dict()
    assert opened["answer"]["method"] == "POST" and opened["answer"]["url"] == answer_url
    assert opened["answer"]["body"]["decision"] == "approve | deny"
    answer(store, call.id, Status.DENIED, "bob", "not on a Friday")
    got = await asyncio.wait_for(asking, 5)
    assert got.status is Status.DENIED
    await eventually(lambda: len(received) == 2, "the closed webhook")
    closed = received[1]
    assert closed["type"] == "approval.closed"
    assert closed["answer"]["url"] == answer_url
    assert closed["approval"] == {
        **call.to_dict(),
        "status": "denied",
        "decided_by": "bob",
        "decision_reason": "not on a Friday",
    }


async def test_the_webhook_hears_of_a_cancelled_call(
    desk: ApprovalDesk, store: SqliteStore, hook: tuple[str, Received]
) -> None:
    url, received = hook
    asking = asyncio.create_task(desk.ask(pending(desk), url))
    await eventually(lambda: len(received) == 1, "the pending webhook")
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    await eventually(lambda: len(received) == 2, "the closed webhook")
    assert received[1]["type"] == "approval.closed"
    assert received[1]["approval"]["status"] == "cancelled"


async def test_a_failing_webhook_breaks_nothing(
    desk: ApprovalDesk, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token={WEBHOOK_TOKEN}"
    call = pending(desk)
    with caplog.at_level(logging.WARNING, "extproc.approvals"):
        asking = asyncio.create_task(desk.ask(call, url))
        await added(store, call.id)
        answer(store, call.id, Status.APPROVED, "alice", None)
        got = await asyncio.wait_for(asking, 5)
        assert got.status is Status.APPROVED and got.by == "alice"
        await desk.aclose()  # waits for the webhooks' attempts
    failed = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert failed and all("127.0.0.1 failed" in m for m in failed)
    # Logged by host only: the URL carries the bot's token.
    assert WEBHOOK_TOKEN not in caplog.text


# -- known bugs (see the report) --------------------------------------------------------


class Paused(SqliteStore):
    """A store whose first write of a row (`add`) or first read of answers (`read`)
    stops in its thread, once the store's work is done, until `go_on` is set."""

    def __init__(self, path: Path, where: str) -> None:
        super().__init__(path)
        self.where = where
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def _pause(self, where: str) -> None:
        if where == self.where and not self.reached.is_set():
            self.reached.set()
            self.go_on.wait(5)

    def add_approval(self, pending: PendingApproval) -> None:
        super().add_approval(pending)
        self._pause("add")

    def approval_updates(self, holder: str, ids: Any, now: float) -> list[dict[str, Any]]:
        rows = super().approval_updates(holder, ids, now)
        self._pause("read")
        return rows


async def test_a_client_gone_while_its_row_is_written_leaves_no_pending_row(
    tmp_path: Path,
) -> None:
    store = Paused(tmp_path / "audit.db", "add")
    desk = ApprovalDesk()
    desk.attach(store, ADMIN_URL)
    try:
        asking = asyncio.create_task(desk.ask(pending(desk)))
        await asyncio.to_thread(store.reached.wait, 5)
        asking.cancel()
        store.go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await asking
        await eventually(
            lambda: (store.approval("a1") or {}).get("status") == Status.CANCELLED,
            "the row to be cancelled",
            within=1.5,
        )
    finally:
        store.go_on.set()
        await desk.aclose()
        store.close()


async def test_a_poke_during_a_read_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_module, "POLL_S", 30.0)
    store = Paused(tmp_path / "audit.db", "read")
    desk = ApprovalDesk()
    desk.attach(store, ADMIN_URL)
    try:
        asking = asyncio.create_task(desk.ask(pending(desk)))
        await asyncio.to_thread(store.reached.wait, 5)  # the poller has read: no answer yet
        answer(store, "a1", Status.APPROVED, "alice", None)
        desk.poke()  # as the admin API does right after writing the answer
        store.go_on.set()
        got = await asyncio.wait_for(asking, 2)
        assert got.status is Status.APPROVED
    finally:
        store.go_on.set()
        await desk.aclose()
        store.close()
