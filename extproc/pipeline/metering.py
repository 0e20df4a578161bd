"""Charging callers for what their responses used, after the response: the charge is a
call to the counter store (Redis, perhaps), which must neither delay the end of the
client's stream nor be lost when it ends, so it runs beside the traffic and shutdown
waits for what is still under way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("extproc.limits")

# A request whose usage the provider never reported is charged its input at this rate
# (bytes of the request body per token: JSON and English both run about four).
BYTES_PER_TOKEN = 4

_CHARGING: set[asyncio.Task[None]] = set()


def charge_later(charge: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(charge)
    _CHARGING.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task[None]) -> None:
    _CHARGING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("charging a caller failed", exc_info=task.exception())


async def drain_charges(timeout_s: float) -> None:
    """Wait (up to `timeout_s`) for charges still under way: at shutdown."""
    if _CHARGING:
        await asyncio.wait(list(_CHARGING), timeout=timeout_s)
