"""The runtime a serving process hands to new requests, swapped whole on reload: a
request keeps the runtime it started with, a replaced runtime's policies are closed
once its last request is over, and a bad configuration changes nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from extproc.core.reloading import ReloadResult
from extproc.gateway import Gateway, GatewayError, Runtime
from extproc.live import LiveRuntime
from extproc.policies.base import Policy, PolicyConfig
from tests.helpers.runtime import chain_of, make_runtime

CLOSE_WITHIN_S = 5.0


class Closes(Policy[PolicyConfig]):
    """Does nothing to traffic; counts how often it was closed."""

    type = "closes"

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0
        self.closed = asyncio.Event()

    async def aclose(self) -> None:
        self.closes += 1
        self.closed.set()


def runtime() -> tuple[Runtime, Closes]:
    policy = Closes()
    return make_runtime(chain_of(policy)), policy


async def closed(policy: Closes) -> None:
    await asyncio.wait_for(policy.closed.wait(), CLOSE_WITHIN_S)


async def settled() -> None:
    """Let tasks already scheduled (a close started by `release` or `reload`) run
    their step: closing a `Closes` policy completes in it."""
    for _ in range(3):
        await asyncio.sleep(0)


class Configs:
    """What `load` and `build` hand a LiveRuntime: one runtime (or error) per reload,
    in order."""

    def __init__(self, *steps: Runtime | Exception) -> None:
        self.steps = list(steps)
        self.loads = 0

    def load(self) -> Gateway:
        self.loads += 1
        step = self.steps[0]
        if isinstance(step, Exception):
            self.steps.pop(0)
            raise step
        return step.gateway

    def build(self, gateway: Gateway) -> Runtime:
        step = self.steps.pop(0)
        assert isinstance(step, Runtime) and step.gateway is gateway
        return step

    def live(
        self, first: Runtime, on_reload: Callable[[ReloadResult], None] | None = None
    ) -> LiveRuntime:
        return LiveRuntime(first, self.load, self.build, on_reload)


async def test_a_request_keeps_its_runtime_across_reloads() -> None:
    (first, first_policy), (second, second_policy), (third, _) = runtime(), runtime(), runtime()
    live = Configs(second, third).live(first)
    held = live.acquire()
    assert held is first

    assert (await live.reload()).ok
    assert live.current is second and held is first
    assert live.acquire() is second  # new requests get the new one
    assert (await live.reload()).ok
    assert live.current is third
    assert live.retiring == 2  # both replaced runtimes still serve a request
    await settled()
    assert first_policy.closes == 0 and second_policy.closes == 0

    live.release(second)
    await closed(second_policy)
    assert live.retiring == 1 and first_policy.closes == 0
    live.release(first)
    await closed(first_policy)
    assert live.retiring == 0
    assert first_policy.closes == 1 and second_policy.closes == 1


async def test_a_replaced_runtime_is_closed_when_its_last_user_releases_it() -> None:
    (first, policy), (second, _) = runtime(), runtime()
    live = Configs(second).live(first)
    a, b = live.acquire(), live.acquire()
    assert (await live.reload()).ok
    live.release(a)
    await settled()
    assert policy.closes == 0 and live.retiring == 1  # b still streams on it
    live.release(b)
    await closed(policy)
    assert policy.closes == 1 and live.retiring == 0
    live.release(b)  # a stray second release closes nothing twice
    await settled()
    assert policy.closes == 1


async def test_a_runtime_nobody_uses_is_closed_at_once_when_replaced() -> None:
    (first, first_policy), (second, second_policy) = runtime(), runtime()
    live = Configs(second).live(first)
    live.release(live.acquire())  # a request came and went
    assert (await live.reload()).ok
    await closed(first_policy)
    assert live.retiring == 0 and second_policy.closes == 0


async def test_releasing_the_current_runtime_does_not_close_it() -> None:
    first, policy = runtime()
    live = Configs().live(first)
    live.release(live.acquire())
    await settled()
    assert policy.closes == 0 and live.current is first


async def test_a_refused_configuration_keeps_the_running_one() -> None:
    first, policy = runtime()
    error = GatewayError("policy.yaml: policies[0] (guard): threshold\n  must be <= 1\n")
    results: list[ReloadResult] = []
    configs = Configs(error)
    live = configs.live(first, results.append)

    result = await live.reload()
    assert result == ReloadResult(
        False, "policy.yaml: policies[0] (guard): threshold; must be <= 1", 1
    )
    assert "\n" not in result.message
    assert configs.loads == 1
    assert live.current is first and live.generation == 1
    await settled()
    assert policy.closes == 0
    assert results == [result]


async def test_a_failure_building_the_chains_is_named_with_its_type() -> None:
    first, _ = runtime()

    def broken_build(gateway: Gateway) -> Runtime:
        raise ValueError("judge: cannot read the prompt file")

    live = LiveRuntime(first, lambda: first.gateway, broken_build)
    result = await live.reload()
    assert result == ReloadResult(False, "ValueError: judge: cannot read the prompt file", 1)
    assert live.current is first


async def test_an_empty_error_message_still_says_something() -> None:
    first, _ = runtime()
    live = Configs(GatewayError("\n \n")).live(first)
    assert (await live.reload()).message == "unknown error"


async def test_generation_counts_successful_reloads_only() -> None:
    first, _ = runtime()
    (second, _), (third, _) = runtime(), runtime()
    results: list[ReloadResult] = []
    live = Configs(second, GatewayError("bad"), third).live(first, results.append)
    assert live.generation == 1

    ok = await live.reload()
    assert (ok.ok, ok.generation, live.generation) == (True, 2, 2)
    assert ok.message == "configuration 2 serves new requests (policies: closes)"
    refused = await live.reload()
    assert (refused.ok, refused.generation, live.generation) == (False, 2, 2)
    assert live.current is second
    again = await live.reload()
    assert (again.ok, again.generation, live.generation) == (True, 3, 3)
    assert live.current is third
    # on_reload hears every result, in order.
    assert results == [ok, refused, again]


async def test_concurrent_reloads_run_one_at_a_time() -> None:
    """The first reload's load is held in its thread; the second must wait for the whole
    first reload (load, build, swap) before its own load starts."""
    first, _ = runtime()
    (second, _), (third, _) = runtime(), runtime()
    configs = Configs(second, third)
    entered = [threading.Event(), threading.Event()]
    release_first = threading.Event()
    generation_seen: list[int] = []
    live: LiveRuntime

    def load() -> Gateway:
        n = len(generation_seen)
        generation_seen.append(live.generation)
        entered[n].set()
        if n == 0:
            assert release_first.wait(CLOSE_WITHIN_S), "the test never released the load"
        return configs.load()

    live = LiveRuntime(first, load, configs.build)
    reloads = [asyncio.create_task(live.reload()), asyncio.create_task(live.reload())]
    try:
        assert await asyncio.to_thread(entered[0].wait, CLOSE_WITHIN_S)
        # Both reloads are under way; unserialized, the second load would start now.
        # (A wait whose expected outcome is its deadline: passing never depends on it.)
        assert not await asyncio.to_thread(entered[1].wait, 0.3)
    finally:
        release_first.set()
    done = await asyncio.wait_for(asyncio.gather(*reloads), CLOSE_WITHIN_S)
    assert [r.generation for r in done] == [2, 3]
    assert all(r.ok for r in done)
    # The second load started only once the first reload was in place.
    assert generation_seen == [1, 2]
    assert live.current is third


async def test_fixed_runtime_never_reloads() -> None:
    first, policy = runtime()
    live = LiveRuntime.fixed(first)
    result = await live.reload()
    assert not result.ok and "nothing to reload" in result.message
    assert live.current is first and live.generation == 1
    await settled()
    assert policy.closes == 0


async def test_aclose_closes_the_current_and_every_retiring_runtime() -> None:
    (first, first_policy), (second, second_policy) = runtime(), runtime()
    live = Configs(second).live(first)
    live.acquire()  # a request that never ends before shutdown
    assert (await live.reload()).ok
    await live.aclose()
    assert first_policy.closes == 1 and second_policy.closes == 1
    assert live.retiring == 0


@pytest.mark.parametrize("failing", [GatewayError("x"), RuntimeError("y")])
async def test_a_failed_reload_still_reports(failing: Exception) -> None:
    first, _ = runtime()
    results: list[ReloadResult] = []
    live = Configs(failing).live(first, results.append)
    result = await live.reload()
    assert results == [result] and not result.ok
