"""The approvals API (extproc/admin/approvals.py) over a real SQLite store: the pending
calls, one call in any state, and answers in the name of the admin key that gave them,
of which only the first counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from extproc.admin import create_admin_app
from extproc.admin.approvals import MAX_BODY_BYTES
from extproc.approvals.model import MAX_REASON_CHARS, STALE_AFTER_S, PendingApproval, Status
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import render_metrics

ALICE_KEY = "alice-key-5b1e8c2d"
BOB_KEY = "bob-key-90fa3e71"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


@pytest_asyncio.fixture
async def client(store: SqliteStore) -> AsyncIterator[TestClient]:
    """The admin app with two named keys (store: tests/unit/admin/conftest.py)."""
    keys = {ALICE_KEY: "alice", BOB_KEY: "bob"}
    app = create_admin_app(store, keys, render_metrics, poll_interval_s=0.02)
    async with TestClient(TestServer(app)) as c:
        yield c


def pending(
    approval_id: str = "a1",
    *,
    age_s: float = 0.0,
    timeout_s: float = 300.0,
    holder: str = "gw-1:42:abc123",
    tool: str = "Bash",
) -> PendingApproval:
    """A call written `age_s` ago by a holder that last refreshed it then."""
    return PendingApproval(
        id=approval_id,
        holder=holder,
        caller="ci-bot",
        api="anthropic",
        model="claude-sonnet-4-6",
        request_id=f"req-{approval_id}",
        policy="approve-deploys",
        tool=tool,
        arguments='{"command": "kubectl apply -f prod.yaml"}',
        preceding_text="Deploying the release now.",
        why="rule: tools Bash",
        timeout_s=timeout_s,
        created_at=time.time() - age_s,
    )


async def _get(client: TestClient, path: str, status: int = 200) -> Any:
    resp = await client.get(path, headers=ALICE)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _post(
    client: TestClient,
    path: str,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await client.post(path, data=data, headers=ALICE if headers is None else headers)
    got = await resp.json()
    assert resp.status == status, got
    return got


def _error(body: dict[str, Any], kind: str) -> str:
    assert body["error"]["type"] == kind, body
    return str(body["error"]["message"])


# -- reading -----------------------------------------------------------------------------


async def test_the_listing_shows_live_pending_calls_oldest_first(
    client: TestClient, store: SqliteStore
) -> None:
    for row in (
        pending("newer", age_s=1),
        pending("older", age_s=3),
        pending("expired", age_s=6, timeout_s=5),
        pending("stale", age_s=STALE_AFTER_S + 2),  # its holder is gone
        pending("answered", age_s=2),
    ):
        store.add_approval(row)
    store.answer_approval("answered", Status.APPROVED, "bob", None, time.time())
    body = await _get(client, "/api/approvals")
    rows = body["approvals"]
    assert [r["id"] for r in rows] == ["older", "newer"]
    older = pending("older")
    assert rows[0]["status"] == "pending" and rows[0]["tool"] == older.tool
    assert rows[0]["arguments"] == older.arguments
    assert rows[0]["preceding_text"] == older.preceding_text
    assert rows[0]["holder"] == older.holder and rows[0]["decided_by"] is None


async def test_an_empty_listing(client: TestClient) -> None:
    assert await _get(client, "/api/approvals") == {"approvals": []}


async def test_one_call_in_any_state(client: TestClient, store: SqliteStore) -> None:
    added = pending("a1")
    store.add_approval(added)
    row = (await _get(client, "/api/approvals/a1"))["approval"]
    assert row == {
        **added.to_dict(),
        "seen_at": added.created_at,
        "decided_by": None,
        "decided_at": None,
        "decision_reason": None,
    }
    store.end_approval("a1", Status.TIMED_OUT, time.time())
    ended = (await _get(client, "/api/approvals/a1"))["approval"]
    assert ended["status"] == "timed_out"


async def test_an_unknown_call_is_404(client: TestClient) -> None:
    assert "no approval" in _error(await _get(client, "/api/approvals/nope", 404), "not_found")
    body = await _post(client, "/api/approvals/nope", {"decision": "approve"}, 404)
    _error(body, "not_found")
    too_long = "x" * 600
    _error(await _get(client, f"/api/approvals/{too_long}", 400), "invalid_request")


# -- answering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "status", "headers", "name"),
    [("approve", "approved", ALICE, "alice"), ("deny", "denied", BOB, "bob")],
)
async def test_an_answer_in_the_keys_name(
    client: TestClient,
    store: SqliteStore,
    decision: str,
    status: str,
    headers: dict[str, str],
    name: str,
) -> None:
    store.add_approval(pending("a1"))
    before = time.time()
    body = {"decision": decision, "reason": "  change ticket CHG-42  "}
    row = (await _post(client, "/api/approvals/a1", body, headers=headers))["approval"]
    assert row["status"] == status and row["decided_by"] == name
    assert row["decision_reason"] == "change ticket CHG-42"
    assert before <= row["decided_at"] <= time.time()
    assert store.approval("a1") == row
    assert (await _get(client, "/api/approvals"))["approvals"] == []


async def test_a_reason_is_optional_and_bounded(client: TestClient, store: SqliteStore) -> None:
    store.add_approval(pending("a1"))
    store.add_approval(pending("a2"))
    store.add_approval(pending("a3"))
    row = (await _post(client, "/api/approvals/a1", {"decision": "approve"}))["approval"]
    assert row["decision_reason"] is None
    blank = {"decision": "deny", "reason": "   "}
    row = (await _post(client, "/api/approvals/a2", blank))["approval"]
    assert row["decision_reason"] is None
    long = {"decision": "deny", "reason": "r" * (MAX_REASON_CHARS + 50)}
    row = (await _post(client, "/api/approvals/a3", long))["approval"]
    assert row["decision_reason"] == "r" * MAX_REASON_CHARS


async def test_a_second_answer_is_a_conflict_naming_who_answered(
    client: TestClient, store: SqliteStore
) -> None:
    store.add_approval(pending("a1"))
    first = await _post(client, "/api/approvals/a1", {"decision": "deny"}, headers=BOB)
    body = await _post(client, "/api/approvals/a1", {"decision": "approve"}, 409)
    message = _error(body, "conflict")
    assert "already ended" in message and "denied by bob" in message
    # Even the same answer again: the first one stands, unchanged.
    again = await _post(client, "/api/approvals/a1", {"decision": "deny"}, 409, headers=BOB)
    _error(again, "conflict")
    assert store.approval("a1") == first["approval"]


async def test_a_call_its_holder_ended_is_a_conflict(
    client: TestClient, store: SqliteStore
) -> None:
    store.add_approval(pending("a1"))
    store.end_approval("a1", Status.CANCELLED, time.time())
    body = await _post(client, "/api/approvals/a1", {"decision": "approve"}, 409)
    message = _error(body, "conflict")
    assert message == "this approval has already ended: cancelled"


async def test_an_expired_call_says_it_timed_out(client: TestClient, store: SqliteStore) -> None:
    store.add_approval(pending("a1", age_s=6, timeout_s=5))
    body = await _post(client, "/api/approvals/a1", {"decision": "approve"}, 409)
    assert "timed out" in _error(body, "conflict")
    row = store.approval("a1")
    assert row is not None and row["status"] == "pending" and row["decided_by"] is None


async def test_a_call_whose_holder_is_gone_says_so(client: TestClient, store: SqliteStore) -> None:
    store.add_approval(pending("a1", age_s=STALE_AFTER_S + 1))
    body = await _post(client, "/api/approvals/a1", {"decision": "approve"}, 409)
    message = _error(body, "conflict")
    assert "gw-1:42:abc123" in message and "is gone" in message
    assert (await _get(client, "/api/approvals"))["approvals"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "must be JSON"),
        (b"", "must be JSON"),
        (b"[]", "JSON object"),
        (b'"approve"', "JSON object"),
        ({"decision": "approve", "by": "mallory"}, "unknown field: by"),
        ({"decision": "maybe"}, "decision: must be"),
        ({"decision": "APPROVE"}, "decision: must be"),
        ({"decision": 1}, "decision: must be"),
        ({"decision": None}, "decision: must be"),
        ({}, "decision: must be"),
        ({"decision": "approve", "reason": 5}, "reason: must be a string"),
        ({"decision": "deny", "reason": ["a"]}, "reason: must be a string"),
    ],
)
async def test_a_bad_body_is_400(
    client: TestClient, store: SqliteStore, body: Any, says: str
) -> None:
    store.add_approval(pending("a1"))
    got = await _post(client, "/api/approvals/a1", body, 400)
    assert says in _error(got, "invalid_request")
    row = store.approval("a1")
    assert row is not None and row["status"] == "pending"


async def test_a_huge_body_is_413(client: TestClient, store: SqliteStore) -> None:
    store.add_approval(pending("a1"))
    huge = {"decision": "approve", "reason": "x" * (MAX_BODY_BYTES + 10)}
    got = await _post(client, "/api/approvals/a1", huge, 413)
    assert str(MAX_BODY_BYTES) in _error(got, "too_large")
    row = store.approval("a1")
    assert row is not None and row["status"] == "pending"


# -- the keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-0000"}, {"Authorization": f"Basic {ALICE_KEY}"}],
)
async def test_no_answer_and_no_listing_without_a_right_key(
    client: TestClient, store: SqliteStore, headers: dict[str, str]
) -> None:
    store.add_approval(pending("a1"))
    got = await _post(client, "/api/approvals/a1", {"decision": "approve"}, 401, headers)
    _error(got, "unauthorized")
    for path in ("/api/approvals", "/api/approvals/a1"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    row = store.approval("a1")
    assert row is not None and row["status"] == "pending"


async def test_a_single_key_answers_as_admin(store: SqliteStore) -> None:
    app = create_admin_app(store, ALICE_KEY, render_metrics)
    async with TestClient(TestServer(app)) as single:
        store.add_approval(pending("a1"))
        row = (await _post(single, "/api/approvals/a1", {"decision": "approve"}))["approval"]
    assert row["decided_by"] == "admin"


async def test_a_body_in_several_pieces_is_read_whole(
    client: TestClient, store: SqliteStore
) -> None:
    store.add_approval(pending("a1"))
    body = orjson.dumps({"decision": "approve", "reason": "ticket CHG-42"})

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:10]
        await asyncio.sleep(0.05)  # the rest comes in a later segment, as from a slow client
        yield body[10:]

    resp = await client.post("/api/approvals/a1", data=pieces(), headers=ALICE)
    assert resp.status == 200, await resp.text()
