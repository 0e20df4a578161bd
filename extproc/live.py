"""The configuration a serving process hands to new requests, swapped whole on reload.

A request takes the current `Runtime` when it starts and gives it back when it ends
(`acquire`/`release`), so an open stream keeps its chains however many reloads happen
meanwhile. A replaced runtime's policies are closed once its last request is over.
Loading is all-or-nothing: the files are read and checked, and the chains built, before
anything is swapped; a bad file leaves the running configuration alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from extproc.core.reloading import ReloadResult
from extproc.gateway import Gateway, GatewayError, Runtime
from extproc.policies.recording import SHADOW_TIMEOUT_S, drain_shadow_work

log = logging.getLogger("extproc.reload")


class LiveRuntime:
    def __init__(
        self,
        runtime: Runtime,
        load: Callable[[], Gateway],
        build: Callable[[Gateway], Runtime],
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> None:
        self.current = runtime
        self.generation = 1
        # Reads and checks the files (blocking: run in a thread), then instantiates.
        self._load = load
        self._build = build
        self._on_reload = on_reload
        self._users: dict[int, int] = {}
        self._retired: dict[int, Runtime] = {}
        # Replaced runtimes being closed (after their shadow work), by their task.
        self._closing: dict[asyncio.Task[None], Runtime] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def fixed(cls, runtime: Runtime) -> LiveRuntime:
        """A runtime that never changes (tests, benchmarks of the bare server)."""

        def nothing_to_load() -> Gateway:
            raise GatewayError("this process was given its configuration: nothing to reload")

        return cls(runtime, nothing_to_load, lambda gateway: runtime)

    def acquire(self) -> Runtime:
        runtime = self.current
        key = id(runtime)
        self._users[key] = self._users.get(key, 0) + 1
        return runtime

    def release(self, runtime: Runtime) -> None:
        key = id(runtime)
        left = self._users.get(key, 0) - 1
        if left > 0:
            self._users[key] = left
            return
        self._users.pop(key, None)
        retired = self._retired.pop(key, None)
        if retired is not None:
            self._close(retired)

    @property
    def retiring(self) -> int:
        """Replaced runtimes still serving requests that started before a reload."""
        return len(self._retired)

    async def reload(self) -> ReloadResult:
        async with self._lock:  # one reload at a time: signals and file changes race
            try:
                gateway = await asyncio.to_thread(self._load)
                runtime = self._build(gateway)
            except GatewayError as exc:
                result = ReloadResult(False, _one_line(str(exc)), self.generation)
                log.error("reload refused, the running configuration stays: %s", result.message)
            except Exception as exc:  # a policy's constructor failing, say
                result = ReloadResult(
                    False, f"{type(exc).__name__}: {_one_line(str(exc))}", self.generation
                )
                log.error("reload refused, the running configuration stays: %s", result.message)
                log.debug("the failed reload", exc_info=True)
            else:
                old, self.current = self.current, runtime
                self.generation += 1
                if id(old) in self._users:
                    self._retired[id(old)] = old
                else:
                    self._close(old)
                result = ReloadResult(
                    True,
                    f"configuration {self.generation} serves new requests "
                    f"(policies: {', '.join(runtime.chains.default.names)})",
                    self.generation,
                )
                log.info("reloaded: %s", result.message)
        if self._on_reload is not None:
            self._on_reload(result)
        return result

    def _close(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(_close_after_shadow_work(runtime))
        self._closing[task] = runtime
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    async def aclose(self) -> None:
        """Close every runtime: at shutdown, once no request runs any more (the server
        drained shadow work for as long as shutdown allows: no more waiting here)."""
        closing = dict(self._closing)
        for task in closing:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)
        for runtime in [self.current, *self._retired.values(), *closing.values()]:
            await runtime.aclose()
        self._retired.clear()


async def _close_after_shadow_work(runtime: Runtime) -> None:
    """Shadow checks of the runtime's last requests may still be asking its judges (up
    to SHADOW_TIMEOUT_S after their request ended): they finish first."""
    await drain_shadow_work(SHADOW_TIMEOUT_S + 1)
    await runtime.aclose()


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return "; ".join(lines) or "unknown error"
