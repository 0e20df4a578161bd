"""The mock judge over real HTTP, and policies built against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web

from extproc.mock_llm import MockConfig, create_app
from extproc.mock_llm.server import RECORDS_KEY
from extproc.policies.tool_call_judge import ToolCallJudgeConfig, ToolCallJudgePolicy
from extproc.policies.tool_call_judge.breaker import BreakerRegistry
from extproc.policies.tool_call_judge.client import JudgeConfig
from tests.helpers.judge import JUDGE_MODEL, PolicyFactory


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mock() -> AsyncIterator[tuple[str, web.Application]]:
    """The mock's base URL (ending in /v1) and its app (for the requests it recorded)."""
    app = create_app(MockConfig(max_recorded=1000))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", app
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def make(mock: tuple[str, web.Application]) -> AsyncIterator[PolicyFactory]:
    """Build policies against the mock judge; `judge_*` keywords go to the JudgeConfig.
    Each test has breakers of its own (`breakers=` gives others): failures one test
    provokes must not open the circuit for the next."""
    base_url, app = mock
    app[RECORDS_KEY].clear()
    made: list[ToolCallJudgePolicy] = []
    own = BreakerRegistry()

    def factory(**options: Any) -> ToolCallJudgePolicy:
        judge: dict[str, Any] = {"base_url": base_url, "model": JUDGE_MODEL, "timeout_s": 5}
        judge |= {k[6:]: options.pop(k) for k in list(options) if k.startswith("judge_")}
        breakers = options.pop("breakers", own)
        config = ToolCallJudgeConfig(type="tool_call_judge", judge=JudgeConfig(**judge), **options)
        made.append(ToolCallJudgePolicy(config, breakers))
        return made[-1]

    yield factory
    for policy in made:
        await policy.aclose()
