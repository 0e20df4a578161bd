"""The live stream of decisions: what arrives, from where it resumes, and that one
viewer going away, falling behind or the app shutting down never hurts the others."""

from __future__ import annotations

import asyncio
import json
import types
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from extproc.admin import AdminServer, create_admin_app
from extproc.admin.api import FEED
from extproc.admin.stream import DecisionFeed
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import (
    ADMIN_KEY,
    AUTH,
    SseReader,
    decision,
    eventually,
    redaction,
    render_metrics,
)

STREAM = "/api/decisions/stream"


def _feed(client: TestClient) -> DecisionFeed:
    return client.app[FEED]  # type: ignore[index]


async def _open(client: TestClient, headers: dict[str, str] | None = None, query: str = "") -> Any:
    resp = await client.get(f"{STREAM}{query}", headers={**AUTH, **(headers or {})})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    return resp


async def test_delivers_decisions_written_after_connecting(
    client: TestClient, store: SqliteStore
) -> None:
    store.write([], [decision("before")])
    resp = await _open(client)
    reader = SseReader(resp)
    assert int(resp.headers["X-Stream-After"]) == store.last_decision_id()
    store.write([], [decision("after-1"), redaction("after-2")])
    first, second = await reader.event(), await reader.event()
    assert first.event == second.event == "decision"
    one, two = json.loads(first.data), json.loads(second.data)
    assert (one["request_id"], two["request_id"]) == ("after-1", "after-2")
    assert first.id == str(one["id"]) and int(second.id or 0) == one["id"] + 1
    assert two["target"]["examples"][1]["before"] == "cc: eve@example.org"
    resp.close()


async def test_resumes_after_last_event_id(client: TestClient, store: SqliteStore) -> None:
    store.write([], [decision(f"old-{i}") for i in range(4)])
    first_id = store.last_decision_id() - 3
    resp = await _open(client, {"Last-Event-ID": str(first_id + 1)})
    reader = SseReader(resp)
    got = [json.loads((await reader.event()).data)["request_id"] for _ in range(2)]
    assert got == ["old-2", "old-3"]
    store.write([], [decision("new")])
    assert json.loads((await reader.event()).data)["request_id"] == "new"
    resp.close()


async def test_resumes_after_query_parameter_and_header_wins(
    client: TestClient, store: SqliteStore
) -> None:
    store.write([], [decision(f"old-{i}") for i in range(3)])
    last = store.last_decision_id()
    resp = await _open(client, query=f"?after={last - 1}")
    assert json.loads((await SseReader(resp).event()).data)["request_id"] == "old-2"
    resp.close()
    # The browser's Last-Event-ID is newer than the URL it first opened.
    resp = await _open(client, {"Last-Event-ID": str(last - 1)}, query="?after=0")
    assert json.loads((await SseReader(resp).event()).data)["request_id"] == "old-2"
    resp.close()


async def test_catch_up_longer_than_one_batch_is_in_order(
    client: TestClient, store: SqliteStore
) -> None:
    store.write([], [decision(f"r{i}") for i in range(1200)])
    resp = await _open(client, query="?after=0")
    reader = SseReader(resp)
    ids = [int((await reader.event()).id or 0) for _ in range(1200)]
    assert ids == list(range(ids[0], ids[0] + 1200))
    store.write([], [decision("live")])
    assert json.loads((await reader.event()).data)["request_id"] == "live"
    resp.close()


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Last-Event-ID": "abc"}, ""), ({}, "?after=-1"), ({}, "?after=x"), ({}, "?since=1")],
)
async def test_bad_resume_point_is_400(
    client: TestClient, headers: dict[str, str], query: str
) -> None:
    resp = await client.get(f"{STREAM}{query}", headers={**AUTH, **headers})
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request"


async def test_keep_alive_comment_while_quiet(store: SqliteStore) -> None:
    app = create_admin_app(store, ADMIN_KEY, render_metrics, poll_interval_s=0.02, keepalive_s=0.05)
    async with TestClient(TestServer(app)) as client:
        reader = SseReader(await _open(client))
        comments: list[str] = []
        for _ in range(3):
            comments += (await reader.frame(within=5)).comments
        assert "keep-alive" in comments


async def test_a_viewer_leaving_does_not_break_the_poller(
    client: TestClient, store: SqliteStore
) -> None:
    feed = _feed(client)
    leaving = await _open(client)
    staying = await _open(client)
    await eventually(lambda: feed.subscribers == 2, "two viewers")
    store.write([], [decision("one")])
    assert json.loads((await SseReader(leaving).event()).data)["request_id"] == "one"
    leaving.close()
    await eventually(lambda: feed.subscribers == 1, "the leaving viewer to be dropped")
    store.write([], [decision("two")])
    reader = SseReader(staying)
    got = [json.loads((await reader.event()).data)["request_id"] for _ in range(2)]
    assert got == ["one", "two"]
    assert feed.running
    # A newcomer after the departure is served as well.
    newcomer = SseReader(await _open(client))
    store.write([], [decision("three")])
    assert json.loads((await newcomer.event()).data)["request_id"] == "three"
    assert json.loads((await reader.event()).data)["request_id"] == "three"
    staying.close()
    newcomer.response.close()
    await eventually(lambda: feed.subscribers == 0, "every viewer gone")


def _suspended_in(task: asyncio.Task[Any]) -> str:
    """The innermost coroutine a task waits in: `Event.wait`, `sleep`, `to_thread`..."""
    name = ""
    coro: object = task.get_coro()
    while isinstance(coro, types.CoroutineType):
        name = coro.cr_code.co_qualname
        coro = coro.cr_await
    return name


async def test_nothing_is_polled_while_nobody_watches(
    client: TestClient, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = _feed(client)
    resp = await _open(client)
    await eventually(lambda: feed.running, "the poller")
    (poller,) = [t for t in asyncio.all_tasks() if t.get_name() == "admin-decision-feed"]
    resp.close()
    await eventually(lambda: feed.subscribers == 0, "the viewer gone")
    calls: list[int] = []
    real = store.decisions_after

    def counting(after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        calls.append(after_id)
        return real(after_id, limit)

    # Any poll from now on is one begun with nobody watching (a poll already under way
    # holds the real method).
    monkeypatch.setattr(store, "decisions_after", counting)
    # The poller ends the round it was in and parks on its wake event, which only a new
    # viewer sets: from there on it cannot poll. A poller that kept polling never parks.
    await eventually(lambda: _suspended_in(poller) == "Event.wait", "the poller to park")
    assert calls == []
    # Written while nobody watched: a new viewer does not get it, only what follows.
    store.write([], [decision("unwatched")])
    reader = SseReader(await _open(client))
    store.write([], [decision("watched")])
    assert json.loads((await reader.event()).data)["request_id"] == "watched"
    reader.response.close()


async def test_a_slow_viewer_is_cut_off_not_the_others(store: SqliteStore) -> None:
    feed = DecisionFeed(store, poll_interval_s=0.01, queue_limit=5)
    subs = []
    for _ in range(2):
        joined = feed.subscribe(store.last_decision_id())
        assert joined is not None
        subs.append(joined[0])
    fast, slow = subs
    try:
        got: list[int] = []
        for batch in range(4):
            store.write([], [decision(f"r{batch}-{i}") for i in range(3)])
            while len(got) < 3 * (batch + 1):
                events = await fast.next(5.0)
                assert events is not None
                got += [event_id for event_id, _ in events]
        assert len(got) == 12 and got == sorted(got)
        assert slow.closed and slow.reason == "too slow"
        assert await slow.next(0.01) is None
        assert feed.subscribers == 1
    finally:
        await feed.stop()


async def test_shutdown_ends_open_streams_promptly(store: SqliteStore) -> None:
    server = AdminServer(create_admin_app(store, ADMIN_KEY, render_metrics), "127.0.0.1", 0)
    port = await server.start()
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"http://127.0.0.1:{port}{STREAM}", headers=AUTH)
        assert resp.status == 200
        reader = SseReader(resp)
        await reader.frame()  # the stream is open
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop()
        assert loop.time() - started < 1.5  # well inside the 2 s shutdown timeout
        assert await reader.ended(within=5)
