"""The audit JSON API over a real SQLite store: decisions with every filter and page,
one request's detail, the counts behind the charts, and a 400 for every bad parameter."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import AUTH, decision, redaction, request_summary

NOW = time.time()


async def _get(client: TestClient, path: str, status: int = 200) -> Any:
    resp = await client.get(path, headers=AUTH)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def _decisions(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    body = await _get(client, f"/api/decisions{query}")
    return list(body["decisions"])


# ---- /api/decisions ------------------------------------------------------------------


async def test_decisions_newest_first_with_every_field(
    client: TestClient, store: SqliteStore
) -> None:
    store.write([], [decision("r1", time_s=NOW - 5), redaction("r2", time_s=NOW - 1)])
    body = await _get(client, "/api/decisions")
    assert body["next_cursor"] is None
    first, second = body["decisions"]
    assert first["id"] > second["id"]
    assert first["action"] == "redact" and first["target"]["kind"] == "email"
    assert first["target"]["examples"][0]["after"] == "mail [EMAIL] today"
    assert second == {
        "id": second["id"],
        **decision("r1", time_s=NOW - 5).to_dict(),
    }


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("caller", "bob", {"r3"}),
        ("policy", "pii", {"r2", "r4"}),
        ("action", "redact", {"r2", "r4"}),
        ("action", "block_tool_call", {"r1", "r3"}),
        ("model", "gpt-5", {"r4"}),
        ("request_id", "r3", {"r3"}),
        ("caller", "nobody", set()),
    ],
)
async def test_each_filter(
    client: TestClient, store: SqliteStore, name: str, value: str, expected: set[str]
) -> None:
    store.write(
        [],
        [
            decision("r1"),
            redaction("r2"),
            decision("r3", caller="bob"),
            redaction("r4", model="gpt-5", api="openai.chat"),
        ],
    )
    rows = await _decisions(client, f"?{name}={value}")
    assert {r["request_id"] for r in rows} == expected


async def test_filters_combine(client: TestClient, store: SqliteStore) -> None:
    store.write([], [decision("r1"), decision("r2", caller="bob"), redaction("r3", caller="bob")])
    rows = await _decisions(client, "?caller=bob&action=block_tool_call")
    assert [r["request_id"] for r in rows] == ["r2"]


@pytest.mark.parametrize(
    "spell",
    [
        lambda t: f"{t:.3f}",
        lambda t: str(int(t)),
        lambda t: datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z"),
        lambda t: datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(),  # naive: UTC
        lambda t: datetime.fromtimestamp(t, timezone(timedelta(hours=5, minutes=30))).isoformat(),
    ],
    ids=["float", "int", "iso-z", "iso-naive", "iso-offset"],
)
async def test_since_and_until_in_every_spelling(
    client: TestClient, store: SqliteStore, spell: Any
) -> None:
    base = 1_750_000_000.0
    store.write([], [decision(f"r{i}", time_s=base + i * 100) for i in range(5)])
    since, until = spell(base + 100), spell(base + 300)
    params = f"?since={since}&until={until}".replace("+", "%2B")
    rows = await _decisions(client, params)
    # since inclusive, until exclusive
    assert sorted(r["request_id"] for r in rows) == ["r1", "r2"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?action=block", "action"),
        ("?action=", "action"),
        ("?since=yesterday", "since"),
        ("?until=2024-13-45", "until"),
        ("?since=nan", "since"),
        ("?since=200&until=100", "until"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=-5", "limit"),
        ("?cursor=abc", "cursor"),
        ("?cursor=0", "cursor"),
        ("?caller=", "caller"),
        ("?policy=" + "p" * 600, "policy"),
        ("?calller=alice", "calller"),
        ("?caller=a&caller=b", "caller"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: TestClient, store: SqliteStore, query: str, names: str
) -> None:
    store.write([], [decision()])
    body = await _get(client, f"/api/decisions{query}", status=400)
    assert body["error"]["type"] == "invalid_request"
    assert names in body["error"]["message"]


async def test_limit_bounds_are_accepted(client: TestClient, store: SqliteStore) -> None:
    store.write([], [decision(f"r{i}") for i in range(3)])
    assert len(await _decisions(client, "?limit=1")) == 1
    assert len(await _decisions(client, "?limit=1000")) == 3


async def test_cursor_pages_through_everything_once(client: TestClient, store: SqliteStore) -> None:
    store.write([], [decision(f"r{i}", caller="bob" if i % 2 else "alice") for i in range(7)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor is not None else "")
        body = await _get(client, f"/api/decisions{query}")
        seen += [r["id"] for r in body["decisions"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["decisions"]) == 3
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 7
    # A cursor with a filter keeps the filter.
    body = await _get(client, "/api/decisions?caller=bob&limit=2")
    more = await _get(client, f"/api/decisions?caller=bob&limit=2&cursor={body['next_cursor']}")
    rows = body["decisions"] + more["decisions"]
    assert len(rows) == 3 and {r["caller"] for r in rows} == {"bob"}


# ---- /api/requests/{id} --------------------------------------------------------------


async def test_request_detail_has_summary_and_decisions(
    client: TestClient, store: SqliteStore
) -> None:
    store.write(
        [request_summary("req-9", policies_acted=("bash-guard", "pii"))],
        [decision("req-9"), redaction("req-9"), decision("other")],
    )
    body = await _get(client, "/api/requests/req-9")
    assert body["request"]["status"] == 200
    assert body["request"]["policies_acted"] == ["bash-guard", "pii"]
    assert body["request"]["ttfb_ms"] == 231.5
    assert [d["action"] for d in body["decisions"]] == ["block_tool_call", "redact"]
    assert body["decisions"][0]["target"]["arguments"] == {"command": "rm -rf ~"}


async def test_request_with_decisions_only(client: TestClient, store: SqliteStore) -> None:
    store.write([], [decision("in-flight")])
    body = await _get(client, "/api/requests/in-flight")
    assert body["request"] is None and len(body["decisions"]) == 1


async def test_unknown_request_is_404(client: TestClient, store: SqliteStore) -> None:
    body = await _get(client, "/api/requests/nope", status=404)
    assert body["error"]["type"] == "not_found"


async def test_request_detail_refuses_query_parameters(client: TestClient) -> None:
    await _get(client, "/api/requests/req-1?verbose=1", status=400)


# ---- /api/stats ----------------------------------------------------------------------


async def test_stats_counts_and_series(client: TestClient, store: SqliteStore) -> None:
    now = time.time()
    store.write(
        [request_summary("a", time_s=now - 30), request_summary("b", time_s=now - 400)],
        [
            decision("a", time_s=now - 30),
            redaction("a", time_s=now - 30, mode="shadow"),
            decision("b", time_s=now - 400),
            decision("old", time_s=now - 7200),  # outside the default hour
        ],
    )
    body = await _get(client, "/api/stats")
    assert body["bucket_s"] == 60
    assert body["until"] - body["since"] == pytest.approx(3600)
    assert sum(g["count"] for g in body["decisions"]) == 3
    assert sum(g["count"] for g in body["requests"]) == 2
    assert sum(p["decisions"] for p in body["series"]) == 3
    assert sum(p["requests"] for p in body["series"]) == 2
    shadow = [g for g in body["decisions"] if g["mode"] == "shadow"]
    assert shadow == [
        {"policy": "pii", "action": "redact", "mode": "shadow", "caller": "alice", "count": 1}
    ]

    narrow = await _get(client, "/api/stats?window=120&bucket=10")
    assert narrow["bucket_s"] == 10
    assert sum(p["decisions"] for p in narrow["series"]) == 2
    assert 12 <= len(narrow["series"]) <= 13


async def test_stats_with_since_and_until(client: TestClient, store: SqliteStore) -> None:
    base = 1_749_999_600.0  # on a minute: one decision per bucket
    store.write([], [decision(f"r{i}", time_s=base + i * 60) for i in range(10)])
    body = await _get(client, f"/api/stats?since={base}&until={base + 300}&bucket=60")
    assert [p["decisions"] for p in body["series"]] == [1, 1, 1, 1, 1]
    iso = datetime.fromtimestamp(base, UTC).isoformat()
    body = await _get(client, f"/api/stats?since={iso.replace('+', '%2B')}&until={base + 120}")
    assert sum(p["decisions"] for p in body["series"]) == 2


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("?bucket=0", "bucket"),
        ("?bucket=1.5", "bucket"),
        ("?window=abc", "window"),
        ("?window=0", "window"),
        ("?window=86400&bucket=1", "bucket"),  # 86400 buckets
        ("?window=60&since=100", "window"),
        ("?since=9999999999", "since"),  # in the future
        ("?since=200&until=100", "until"),
        ("?span=60", "span"),
    ],
)
async def test_bad_stats_parameters_are_400(client: TestClient, query: str, name: str) -> None:
    body = await _get(client, f"/api/stats{query}", status=400)
    assert body["error"]["type"] == "invalid_request"
    assert name in body["error"]["message"]
