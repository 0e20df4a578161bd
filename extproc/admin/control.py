"""The admin API's handles on the running gateway, beside the audit data: reload the
configuration (`POST /api/reload`) and read callers' use of their limits
(`GET /api/usage`). Whoever starts the admin server says how each is done in its
process (in the worker itself, or by signalling the supervisor); absent, the route
answers 503 saying so."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from extproc.admin.errors import ApiError, json_response
from extproc.core.reloading import ReloadResult
from extproc.limits import CounterStoreError

Reload = Callable[[], Awaitable[ReloadResult]]
# One caller's (or, for None, every caller's) use of each limit window.
Usage = Callable[[str | None], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Control:
    reload: Reload | None = None
    usage: Usage | None = None


CONTROL = web.AppKey("admin_control", Control)


async def reload(request: web.Request) -> web.Response:
    act = request.app[CONTROL].reload
    if act is None:
        raise ApiError(
            503,
            "unavailable",
            "this gateway is reloaded by the program that runs it (an embedded stack)",
        )
    result = await act()
    body = {"reloaded": result.ok, "message": result.message, "generation": result.generation}
    # 422: the files were read and refused; the running configuration stays.
    return json_response(body, 200 if result.ok else 422)


async def usage(request: web.Request) -> web.Response:
    read = request.app[CONTROL].usage
    if read is None:
        raise ApiError(503, "unavailable", "no limits are configured in this gateway")
    caller = request.query.get("caller") or None
    try:
        report = await read(caller)
    except CounterStoreError as exc:
        raise ApiError(
            503, "store_unavailable", f"the limit counters cannot be read: {exc}"
        ) from None
    return json_response({"usage": report})


def add_control_routes(app: web.Application, control: Control) -> None:
    app[CONTROL] = control
    app.router.add_post("/api/reload", reload)
    app.router.add_get("/api/usage", usage)
