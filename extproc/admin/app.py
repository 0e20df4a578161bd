"""The admin application and the server that embeds it in the gateway's event loop.

Health and metrics are open (Prometheus scrapes them; the admin port is never
published publicly), as are the web view's static files: the page itself asks for the
key. Everything under /api/ needs `Authorization: Bearer <key>`: GATEWAY_ADMIN_KEY, or one of
the named GATEWAY_ADMIN_KEYS (approvals are answered in that name).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from extproc.admin.api import FEED, KEEPALIVE_S, STORE, add_api_routes
from extproc.admin.approvals import ADMIN_NAME, APPROVALS, add_approval_routes
from extproc.admin.control import Control, add_control_routes
from extproc.admin.errors import ApiError, error_response, json_response
from extproc.admin.stream import DecisionFeed
from extproc.core.storage import StoreError
from extproc.observe.store.base import AuditStore

log = logging.getLogger("extproc.admin")

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S_DEFAULT = 15.0

RenderMetrics = Callable[[], tuple[bytes, str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
# The page renders untrusted text (tool arguments, judge explanations): it runs only
# its own script, loads nothing from elsewhere and cannot be framed.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _presented_key(header: str | None) -> bytes | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # aiohttp decodes headers with surrogateescape: this gives back the bytes sent.
    return token.strip().encode("utf-8", "surrogateescape")


def _auth_middleware(admin_keys: Mapping[str, str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = [(key.encode(), name) for key, name in admin_keys.items() if key]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/") and request.path != "/api":
            return await handler(request)
        if not expected:
            raise ApiError(
                401, "unauthorized", "the admin API is off: set GATEWAY_ADMIN_KEY", _UNAUTHORIZED
            )
        presented = _presented_key(request.headers.get("Authorization"))
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing admin key: send Authorization: Bearer <GATEWAY_ADMIN_KEY>",
                _UNAUTHORIZED,
            )
        # Every key is compared, in constant time: which one matched shows in no timing.
        found = None
        for key, name in expected:
            if hmac.compare_digest(presented, key):
                found = name
        if found is None:
            raise ApiError(401, "unauthorized", "wrong admin key", _UNAUTHORIZED)
        request[ADMIN_NAME] = found
        return await handler(request)

    return auth


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.kind, exc.message, exc.headers)
    except StoreError as exc:
        log.warning("admin %s %s: the audit store failed: %s", request.method, request.path, exc)
        return error_response(503, "store_unavailable", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        kind = _ERROR_TYPES.get(exc.status, "http_error")
        return error_response(exc.status, kind, exc.reason, headers)
    except Exception:
        log.exception("admin %s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the gateway's log")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", _CSP)
    # Audit data is never cached; the page's files are revalidated so an upgrade shows.
    cache = "no-store" if request.path.startswith("/api/") else "no-cache"
    headers.setdefault("Cache-Control", cache)


def create_admin_app(
    store: AuditStore,
    admin_key: str | Mapping[str, str] | None,
    render_metrics: RenderMetrics,
    poll_interval_s: float = 0.5,
    keepalive_s: float = KEEPALIVE_S_DEFAULT,
    control: Control | None = None,
) -> web.Application:
    """The admin app over `store`, which it owns (closed when the app is cleaned up).
    `admin_key`: one key (its holder named `admin`), or key -> holder's name; None (or
    empty) turns the API off."""
    keys = {admin_key: "admin"} if isinstance(admin_key, str) else dict(admin_key or {})
    app = web.Application(middlewares=[_error_middleware, _auth_middleware(keys)])
    feed = DecisionFeed(store, poll_interval_s)
    app[STORE] = store
    app[APPROVALS] = store
    app[FEED] = feed
    app[KEEPALIVE_S] = keepalive_s

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        # Off the loop: rendering walks every series, and the loop carries traffic.
        body, content_type = await asyncio.to_thread(render_metrics)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def stop_feed(app: web.Application) -> None:
        await feed.stop()

    async def close_store(app: web.Application) -> None:
        await asyncio.to_thread(store.close)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    add_api_routes(app)
    add_control_routes(app, control or Control())
    add_approval_routes(app)
    app.on_response_prepare.append(_security_headers)
    # Before the server waits for open handlers: live streams end instead of holding
    # shutdown for its whole timeout.
    app.on_shutdown.append(stop_feed)
    app.on_cleanup.append(close_store)
    return app


class AdminServer:
    """The admin app on its own port, inside the caller's event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; the bound port (a free one when `port` is 0)."""
        # handler_cancellation: a viewer closing its tab ends its live stream at once.
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
