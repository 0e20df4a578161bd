"""The audit JSON API: decisions (filtered, paged, live), one request's detail, and the
counts behind the web view's charts. Store calls block, so each runs in a thread:
the admin server shares its event loop with the gateway's traffic."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from extproc.admin.errors import ApiError, invalid, json_response
from extproc.admin.params import (
    DECISION_PARAMS,
    MAX_TEXT,
    STATS_PARAMS,
    STREAM_PARAMS,
    decision_query,
    single_values,
    stats_range,
    stream_after,
)
from extproc.admin.stream import DecisionFeed, stream_response
from extproc.observe.store.base import AuditStore

STORE = web.AppKey("admin_store", AuditStore)
FEED = web.AppKey("admin_feed", DecisionFeed)
KEEPALIVE_S = web.AppKey("admin_keepalive_s", float)


async def decisions(request: web.Request) -> web.Response:
    query = decision_query(single_values(request.query.items(), DECISION_PARAMS))
    page = await asyncio.to_thread(request.app[STORE].decisions, query)
    return json_response({"decisions": page.rows, "next_cursor": page.next_cursor})


async def request_detail(request: web.Request) -> web.Response:
    single_values(request.query.items(), frozenset())
    request_id = request.match_info["id"]
    if len(request_id) > MAX_TEXT:
        raise invalid(f"request id: longer than {MAX_TEXT} characters")
    found: dict[str, Any] | None = await asyncio.to_thread(request.app[STORE].request, request_id)
    if found is None:
        raise ApiError(404, "not_found", "no request with this id is recorded")
    return json_response(found)


async def stats(request: web.Request) -> web.Response:
    since, until, bucket = stats_range(
        single_values(request.query.items(), STATS_PARAMS), time.time()
    )
    try:
        counts = await asyncio.to_thread(request.app[STORE].stats, since, until, bucket)
    except ValueError as exc:  # the store's own bounds on the range
        raise invalid(str(exc)) from None
    return json_response(counts)


async def decision_stream(request: web.Request) -> web.StreamResponse:
    after = stream_after(
        single_values(request.query.items(), STREAM_PARAMS), request.headers.get("Last-Event-ID")
    )
    app = request.app
    return await stream_response(request, app[STORE], app[FEED], after, app[KEEPALIVE_S])


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/decisions", decisions)
    app.router.add_get("/api/decisions/stream", decision_stream)
    app.router.add_get("/api/requests/{id}", request_detail)
    app.router.add_get("/api/stats", stats)
