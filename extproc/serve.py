"""Run the ext_proc server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from extproc.config import Settings
from extproc.server import start_server

log = logging.getLogger("extproc")


async def serve_forever(settings: Settings) -> None:
    try:
        server, _, port = await start_server(settings)
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        raise OSError(f"cannot listen on port {settings.extproc_port}: {exc}") from exc
    log.info("ext_proc listening on %s:%d", settings.extproc_listen, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("ext_proc stopping")
    with contextlib.suppress(Exception):
        await server.stop(grace=2)
