"""The admin API's handles on the running gateway: `POST /api/reload` (a real
LiveRuntime reloading) and `GET /api/usage` (the usage report over real counters),
each behind the admin key, each answering 503 when its process has no such handle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from extproc.admin import create_admin_app
from extproc.admin.control import Control
from extproc.config import Settings
from extproc.core.usage import Usage
from extproc.gateway import Gateway, GatewayError
from extproc.keys import digest
from extproc.limit_report import usage_report
from extproc.limits import Limiter, MemoryCounters, RedisCounters
from extproc.live import LiveRuntime
from extproc.observe.store.sqlite import SqliteStore
from extproc.stack import free_port
from tests.helpers.admin_app import ADMIN_KEY, AUTH, render_metrics
from tests.helpers.runtime import make_runtime

WRONG_KEY = {"Authorization": "Bearer not-the-admin-key"}


@asynccontextmanager
async def admin(store: SqliteStore, control: Control) -> AsyncIterator[TestClient]:
    app = create_admin_app(store, ADMIN_KEY, render_metrics, poll_interval_s=0.02, control=control)
    async with TestClient(TestServer(app)) as client:
        yield client


async def answer(client: TestClient, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    resp = await client.request(method, path, **kw)
    return resp.status, await resp.json()


# -- reload -----------------------------------------------------------------------------


class Loads:
    """A LiveRuntime's `load`: each call gives the next gateway, or raises."""

    def __init__(self, *steps: Gateway | Exception) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self) -> Gateway:
        self.calls += 1
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def live(loads: Loads) -> LiveRuntime:
    return LiveRuntime(make_runtime(), loads, lambda gateway: gateway.runtime())


async def test_reload_answers_200_with_what_now_serves(store: SqliteStore) -> None:
    loads = Loads(Gateway.load(Settings(), env={}))
    runtime = live(loads)
    async with admin(store, Control(reload=runtime.reload)) as client:
        status, body = await answer(client, "POST", "/api/reload", headers=AUTH)
    assert status == 200
    assert body == {
        "reloaded": True,
        "message": "configuration 2 serves new requests (policies: noop)",
        "generation": 2,
    }
    assert loads.calls == 1 and runtime.generation == 2


async def test_a_refused_reload_answers_422_naming_the_problem(store: SqliteStore) -> None:
    error = GatewayError("policy.yaml: policies[0] (pii): patterns: unknown kind 'ssn'\nand more")
    loads = Loads(error)
    runtime = live(loads)
    first = runtime.current
    async with admin(store, Control(reload=runtime.reload)) as client:
        status, body = await answer(client, "POST", "/api/reload", headers=AUTH)
    assert status == 422
    assert body == {
        "reloaded": False,
        "message": "policy.yaml: policies[0] (pii): patterns: unknown kind 'ssn'; and more",
        "generation": 1,
    }
    assert runtime.current is first


async def test_reload_without_a_handle_answers_503(store: SqliteStore) -> None:
    async with admin(store, Control()) as client:
        status, body = await answer(client, "POST", "/api/reload", headers=AUTH)
    assert status == 503
    # The message says who reloads instead (its wording is the app's to choose).
    assert body["error"]["type"] == "unavailable"
    assert "reload" in body["error"]["message"]


async def test_reload_needs_the_admin_key(store: SqliteStore) -> None:
    loads = Loads()
    async with admin(store, Control(reload=live(loads).reload)) as client:
        for headers in ({}, WRONG_KEY):
            status, body = await answer(client, "POST", "/api/reload", headers=headers)
            assert status == 401 and body["error"]["type"] == "unauthorized"
        status, _ = await answer(client, "GET", "/api/reload", headers=AUTH)
        assert status == 405
    assert loads.calls == 0  # nothing was reloaded


# -- usage ------------------------------------------------------------------------------


def limited_gateway(tmp_path: Path) -> Gateway:
    """Two callers with a daily token budget and one without limits. Per-day windows
    only: the report reads the wall clock, which a minute window would race."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "policies: [{type: noop}]\n"
        "chains: {metered: [{type: noop}]}\n"
        "limits:\n  chains: {metered: {tokens: {per_day: 1000}}}\n"
    )
    keys = tmp_path / "keys.yaml"
    entries = [
        ("bot", "sk-bot", "metered", ""),
        ("alice", "sk-alice", "default", ", limits: {requests: {per_day: 50}}"),
        ("free", "sk-free", "default", ""),
    ]
    keys.write_text(
        "callers:\n"
        + "".join(
            f"  - {{name: {n}, key_sha256: '{digest(k).hex()}', chain: {c}{extra}}}\n"
            for n, k, c, extra in entries
        )
    )
    return Gateway.load(Settings(policy_config=str(policy), keys_file=str(keys)), env={})


async def test_usage_reports_each_limited_caller_or_the_one_asked_for(
    store: SqliteStore, tmp_path: Path
) -> None:
    gateway = limited_gateway(tmp_path)
    counters = MemoryCounters()
    limiter = Limiter(gateway.limits, counters)
    bot = next(c for c in gateway.keys.callers if c.name == "bot")
    assert (await limiter.admit("bot", gateway.limits_for(bot), "claude-x")).allowed
    await limiter.charge("bot", gateway.limits_for(bot), "claude-x", Usage(300, 45))

    async def usage(caller: str | None) -> list[dict[str, Any]]:
        return await usage_report(gateway, counters, caller)

    async with admin(store, Control(usage=usage)) as client:
        status, everyone = await answer(client, "GET", "/api/usage", headers=AUTH)
        assert status == 200
        assert [(c["caller"], c["chain"]) for c in everyone["usage"]] == [
            ("bot", "metered"),
            ("alice", "default"),
        ]
        status, one = await answer(client, "GET", "/api/usage?caller=bot", headers=AUTH)
        assert status == 200
        (report,) = one["usage"]
        (window,) = report["windows"]
        assert {k: window[k] for k in ("limit", "used", "max", "remaining")} == {
            "limit": "tokens.per_day",
            "used": 345,
            "max": 1000,
            "remaining": 655,
        }
        assert window["resets_at"].endswith("T00:00:00Z")
        # An empty filter is no filter; an unknown or unlimited caller has no report.
        status, empty = await answer(client, "GET", "/api/usage?caller=", headers=AUTH)
        assert status == 200 and empty == everyone
        for caller in ("nobody", "free"):
            status, none = await answer(client, "GET", f"/api/usage?caller={caller}", headers=AUTH)
            assert (status, none) == (200, {"usage": []})


async def test_usage_answers_503_when_the_counters_cannot_be_read(
    store: SqliteStore, tmp_path: Path
) -> None:
    gateway = limited_gateway(tmp_path)
    # A real Redis client, pointed where nothing listens; its URL holds a password.
    counters = RedisCounters(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")

    async def usage(caller: str | None) -> list[dict[str, Any]]:
        return await usage_report(gateway, counters, caller)

    try:
        async with admin(store, Control(usage=usage)) as client:
            resp = await client.get("/api/usage?caller=bot", headers=AUTH)
            text = await resp.text()
            assert resp.status == 503, text
            error = (await resp.json())["error"]
    finally:
        await counters.aclose()
    assert error["type"] == "store_unavailable"
    assert error["message"].startswith("the limit counters cannot be read: Redis at 127.0.0.1:")
    assert "s3cret-pw" not in text


async def test_usage_without_a_handle_answers_503(store: SqliteStore) -> None:
    async with admin(store, Control()) as client:
        status, body = await answer(client, "GET", "/api/usage", headers=AUTH)
    assert status == 503
    assert body["error"] == {
        "type": "unavailable",
        "message": "no limits are configured in this gateway",
    }


async def test_usage_needs_the_admin_key(store: SqliteStore) -> None:
    asked: list[str | None] = []

    async def usage(caller: str | None) -> list[dict[str, Any]]:
        asked.append(caller)
        return []

    async with admin(store, Control(usage=usage)) as client:
        for headers in ({}, WRONG_KEY):
            status, body = await answer(client, "GET", "/api/usage", headers=headers)
            assert status == 401 and body["error"]["type"] == "unauthorized"
        assert await answer(client, "GET", "/api/usage", headers=AUTH) == (200, {"usage": []})
    assert asked == [None]
