"""Run the ext_proc server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from extproc.config import DEV_GATEWAY_KEY
from extproc.gateway import Gateway
from extproc.server import start_server

log = logging.getLogger("extproc")


def _log_providers(gateway: Gateway) -> None:
    settings, router = gateway.settings, gateway.router
    dev_key_open = [k.get_secret_value() for k in settings.env_keys] == [DEV_GATEWAY_KEY]
    keyed = [u.name for u in router.upstreams.values() if u.api_key is not None]
    if dev_key_open and keyed:
        log.warning(
            "the public development key is accepted while the gateway holds provider keys "
            "(%s): anyone who can reach the gateway spends them; set GATEWAY_API_KEYS or "
            "GATEWAY_KEYS_FILE",
            ", ".join(keyed),
        )
    for upstream in router.upstreams.values():
        if upstream.api_key is not None:
            key = "set"
        elif upstream.is_mock:
            key = "not set: its callers get the mock, callers with their own key the real API"
        else:
            key = "not set: requests carry no provider key but a caller's own"
        log.info(
            "provider %s (%s API, key from %s: %s)",
            upstream.describe(),
            upstream.api,
            upstream.key_env or "nothing (no key_env)",
            key,
        )


async def serve_forever(gateway: Gateway) -> None:
    settings = gateway.settings
    runtime = gateway.runtime()
    try:
        server, _, port = await start_server(runtime)
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        raise OSError(f"cannot listen on port {settings.extproc_port}: {exc}") from exc
    log.info(
        "ext_proc listening on %s:%d, policies: %s%s",
        settings.extproc_listen,
        port,
        ", ".join(runtime.chains.default.names),
        " (validating streams)" if gateway.validate_streams else "",
    )
    _log_providers(gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("ext_proc stopping")
    with contextlib.suppress(Exception):
        await server.stop(grace=2)
    await runtime.chains.aclose()
