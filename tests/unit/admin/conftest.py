"""A real SQLite audit store in a temporary directory and the admin app over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from extproc.admin import create_admin_app
from extproc.observe.store.sqlite import SqliteStore
from tests.helpers.admin_app import ADMIN_KEY, render_metrics


@pytest_asyncio.fixture
async def client(store: SqliteStore) -> AsyncIterator[TestClient]:
    app = create_admin_app(store, ADMIN_KEY, render_metrics, poll_interval_s=0.02)
    async with TestClient(TestServer(app)) as c:
        yield c
