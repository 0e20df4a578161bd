"""Run the ext_proc server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.policy_config import build_chains, default_config, load_config
from extproc.routing import Router
from extproc.server import start_server

log = logging.getLogger("extproc")


async def serve_forever(settings: Settings) -> None:
    config = load_config(settings.policy_config) if settings.policy_config else default_config()
    chains = build_chains(config)
    chain = chains["default"]
    router = Router.build(settings, config.providers, config.routes)
    validate = settings.validate_streams or config.validate_streams
    try:
        server, _, port = await start_server(
            settings, chains, validate_streams=validate, router=router
        )
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        raise OSError(f"cannot listen on port {settings.extproc_port}: {exc}") from exc
    log.info(
        "ext_proc listening on %s:%d, policies: %s%s",
        settings.extproc_listen,
        port,
        ", ".join(chain.names),
        " (validating streams)" if validate else "",
    )
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
            key = "not set: its callers get the mock, passthrough callers the real API"
        else:
            key = "not set: requests carry no provider key but a passthrough caller's own"
        log.info(
            "provider %s (%s API, key from %s: %s)",
            upstream.describe(),
            upstream.api,
            upstream.key_env or "nothing (no key_env)",
            key,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("ext_proc stopping")
    with contextlib.suppress(Exception):
        await server.stop(grace=2)
    for policy in {id(p): p for c in chains.values() for p in c.policies}.values():
        closer = getattr(policy, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
