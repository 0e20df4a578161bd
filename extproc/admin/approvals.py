"""The approvals API: the tool calls waiting for a person, and their answers.

`GET /api/approvals` lists pending calls whose holder is alive, oldest first;
`GET /api/approvals/{id}` shows one in any state; `POST /api/approvals/{id}` with
`{"decision": "approve" | "deny", "reason": "..."}` answers it in the name of the admin
key that asked. The answer is written to the shared store, where the process holding
the stream reads it (at once when that is this process); a call already ended answers
409 with its state, so two approvers cannot both win.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from extproc.admin.errors import ApiError, invalid, json_response
from extproc.admin.params import MAX_TEXT
from extproc.approvals.desk import DESK
from extproc.approvals.model import (
    ANSWERS,
    APPROVALS_PATH,
    MAX_REASON_CHARS,
    STALE_AFTER_S,
    Status,
)
from extproc.approvals.store import ApprovalStore

APPROVALS = web.AppKey("admin_approvals", ApprovalStore)
# The name of the admin key a request was made with (set by the auth middleware).
ADMIN_NAME = web.RequestKey("admin_name", str)
MAX_BODY_BYTES = 16 * 1024


def _approval_id(request: web.Request) -> str:
    approval_id = request.match_info["id"]
    if len(approval_id) > MAX_TEXT:
        raise invalid(f"approval id: longer than {MAX_TEXT} characters")
    return approval_id


async def pending(request: web.Request) -> web.Response:
    rows = await asyncio.to_thread(request.app[APPROVALS].pending_approvals, time.time())
    return json_response({"approvals": rows})


async def one(request: web.Request) -> web.Response:
    row = await asyncio.to_thread(request.app[APPROVALS].approval, _approval_id(request))
    if row is None:
        raise ApiError(404, "not_found", "no approval with this id")
    return json_response({"approval": row})


async def _answer_body(request: web.Request) -> tuple[Status, str | None]:
    raw = bytearray()
    while len(raw) <= MAX_BODY_BYTES:  # a body may come in several pieces
        piece = await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid('the body must be JSON: {"decision": "approve" | "deny"}') from None
    if not isinstance(body, dict):
        raise invalid('the body must be a JSON object: {"decision": "approve" | "deny"}')
    unknown = sorted(set(body) - {"decision", "reason"})
    if unknown:
        raise invalid(f"unknown field: {unknown[0]}")
    decision = body.get("decision")
    status = ANSWERS.get(decision) if isinstance(decision, str) else None
    if status is None:
        raise invalid('decision: must be "approve" or "deny"')
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise invalid("reason: must be a string")
    reason = (reason or "").strip()[:MAX_REASON_CHARS] or None
    return status, reason


def _why_not(row: dict[str, Any], now: float) -> str:
    status = row["status"]
    if status != Status.PENDING:
        by = f" by {row['decided_by']}" if row.get("decided_by") else ""
        return f"this approval has already ended: {status}{by}"
    if row["expires_at"] <= now:
        return "this approval has timed out"
    if row["seen_at"] <= now - STALE_AFTER_S:
        return (
            f"the process holding this call ({row['holder']}) is gone; its client's "
            "request ended with it"
        )
    return "this approval could not be answered; try again"


async def answer(request: web.Request) -> web.Response:
    approval_id = _approval_id(request)
    status, reason = await _answer_body(request)
    by = request.get(ADMIN_NAME, "admin")
    now = time.time()
    store = request.app[APPROVALS]
    row = await asyncio.to_thread(store.answer_approval, approval_id, status, by, reason, now)
    if row is None:
        raise ApiError(404, "not_found", "no approval with this id")
    won = row["status"] == status and row["decided_by"] == by and row["decided_at"] == now
    if not won:
        raise ApiError(409, "conflict", _why_not(row, now))
    DESK.poke()  # the holder may be this process: it reads the answer now
    return json_response({"approval": row})


def add_approval_routes(app: web.Application) -> None:
    app.router.add_get(APPROVALS_PATH, pending)
    app.router.add_get(f"{APPROVALS_PATH}/{{id}}", one)
    app.router.add_post(f"{APPROVALS_PATH}/{{id}}", answer)
