"""The admin app's edges: the key on /api/, the open routes (health, metrics, the web
view's files), JSON errors for everything that goes wrong, and the embeddable server."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from extproc.admin import AdminServer, create_admin_app
from extproc.core.storage import StoreError
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import ADMIN_KEY, AUTH, METRICS_TYPE, decision, render_metrics

API_ROUTES = [
    "/api/decisions",
    "/api/decisions/stream",
    "/api/requests/req-1",
    "/api/stats",
    "/api/nowhere",
]


def _assert_unauthorized(status: int, headers: object, body: dict[str, object]) -> str:
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"  # type: ignore[index]
    error = body["error"]
    assert isinstance(error, dict) and error["type"] == "unauthorized"
    return str(error["message"])


# ---- the key -------------------------------------------------------------------------


@pytest.mark.parametrize("path", API_ROUTES)
async def test_api_without_key_is_refused(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    message = _assert_unauthorized(resp.status, resp.headers, await resp.json())
    assert "Authorization: Bearer" in message


@pytest.mark.parametrize(
    ("header", "presented"),
    [
        ("Bearer wrong-key-4f1c", "wrong-key-4f1c"),
        (f"Bearer {ADMIN_KEY}x", f"{ADMIN_KEY}x"),
        (f"Bearer {ADMIN_KEY[:-1]}", ADMIN_KEY[:-1]),
        (f"Basic {ADMIN_KEY}", ADMIN_KEY),
        (ADMIN_KEY, ADMIN_KEY),
        ("Bearer ", None),
        ("Bearer k\u00e9y-9d2e", "k\u00e9y-9d2e"),
    ],
)
async def test_wrong_key_is_refused_and_never_echoed(
    client: TestClient, header: str, presented: str | None
) -> None:
    resp = await client.get("/api/decisions", headers={"Authorization": header})
    text = await resp.text()
    _assert_unauthorized(resp.status, resp.headers, await resp.json())
    if presented is not None:
        assert presented not in text


async def test_right_key_is_accepted_case_insensitive_scheme(client: TestClient) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        resp = await client.get(
            "/api/decisions", headers={"Authorization": f"{scheme} {ADMIN_KEY}"}
        )
        assert resp.status == 200, scheme


async def test_unknown_api_route_with_key_is_json_404(client: TestClient) -> None:
    resp = await client.get("/api/nowhere", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"]["type"] == "not_found"


@pytest.mark.parametrize("admin_key", [None, ""])
async def test_admin_api_off_without_a_key(store: SqliteStore, admin_key: str | None) -> None:
    app = create_admin_app(store, admin_key, render_metrics)
    async with TestClient(TestServer(app)) as c:
        for path in API_ROUTES:
            for headers in ({}, AUTH, {"Authorization": "Bearer "}):
                resp = await c.get(path, headers=headers)
                message = _assert_unauthorized(resp.status, resp.headers, await resp.json())
                assert message == "the admin API is off: set GATEWAY_ADMIN_KEY"
        # What needs no key still works.
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/metrics")).status == 200


# ---- open routes ---------------------------------------------------------------------


async def test_healthz_needs_no_key(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_metrics_need_no_key_and_keep_their_content_type(client: TestClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == METRICS_TYPE
    assert b"gateway_up 1.0" in await resp.read()


async def test_web_view_and_its_files_need_no_key(client: TestClient) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    for needle in ('id="decisions"', 'id="admin-key"', 'id="detail"', "/static/app.js"):
        assert needle in page
    # The page runs only its own script and cannot be framed.
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    files = [(f"{m}.js", "javascript") for m in ("app", "dom", "detail", "charts")]
    for name, kind in [*files, ("style.css", "text/css")]:
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
        assert kind in resp.content_type
        assert len(await resp.read()) > 500


@pytest.mark.parametrize(
    "path", ["/static/missing.js", "/static/../app.py", "/static/%2e%2e/app.py"]
)
async def test_static_files_stay_inside_their_folder(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status in (403, 404)
    assert b"create_admin_app" not in await resp.read()


# ---- errors --------------------------------------------------------------------------


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert (await resp.json())["error"]["type"] == "not_found"


async def test_wrong_method_is_json_405(client: TestClient) -> None:
    resp = await client.post("/api/decisions", headers=AUTH, data=b"{}")
    assert resp.status == 405
    assert (await resp.json())["error"]["type"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def test_unexpected_error_is_500_without_details(
    client: TestClient,
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(store, "decisions", broken)
    resp = await client.get("/api/decisions", headers=AUTH)
    assert resp.status == 500
    body = await resp.text()
    assert (await resp.json())["error"]["type"] == "internal_error"
    assert "secret internal detail" not in body and "Traceback" not in body
    assert "secret internal detail" in caplog.text  # logged for the operator


async def test_store_failure_is_503(
    client: TestClient, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object) -> None:
        raise StoreError("SQLite at /tmp/x: OperationalError: database is locked")

    monkeypatch.setattr(store, "stats", down)
    resp = await client.get("/api/stats", headers=AUTH)
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert error["type"] == "store_unavailable"
    assert "database is locked" in error["message"]


async def test_api_answers_are_never_cached(client: TestClient) -> None:
    resp = await client.get("/api/decisions", headers=AUTH)
    assert resp.headers["Cache-Control"] == "no-store"


# ---- the embeddable server -----------------------------------------------------------


async def test_admin_server_binds_a_free_port_and_stops(store: SqliteStore) -> None:
    store.write([], [decision()])
    server = AdminServer(create_admin_app(store, ADMIN_KEY, render_metrics), "127.0.0.1", 0)
    port = await server.start()
    assert port > 0 and server.port == port
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            async with session.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"{base}/api/decisions", headers=AUTH) as resp:
                assert len((await resp.json())["decisions"]) == 1
    finally:
        await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/healthz")
    await server.stop()  # twice is harmless
