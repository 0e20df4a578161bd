"""Run the ext_proc server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from extproc.admin.app import AdminServer, create_admin_app
from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.gateway import Gateway
from extproc.observe.metrics import render_metrics
from extproc.observe.setup import audit_store, build_observer
from extproc.policies.recording import drain_shadow_work
from extproc.server import start_server

log = logging.getLogger("extproc")

# How long shutdown waits for shadow policies' decisions still under way.
SHADOW_DRAIN_S = 3.0


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


async def _start_admin(settings: Settings) -> AdminServer:
    """The admin server (metrics, admin API, web view) in this process's loop."""
    key = settings.gateway_admin_key
    app = create_admin_app(
        audit_store(settings),
        key.get_secret_value() if key is not None else None,
        render_metrics,
    )
    admin = AdminServer(app, settings.gateway_admin_host, settings.gateway_admin_port)
    try:
        port = await admin.start()
    except OSError as exc:
        raise OSError(
            f"admin server cannot listen on {settings.gateway_admin_host}:"
            f"{settings.gateway_admin_port}: {exc.strerror or exc}"
        ) from exc
    log.info(
        "admin server on http://%s:%d (metrics, admin API%s, web view)",
        settings.gateway_admin_host,
        port,
        "" if key is not None else " off: GATEWAY_ADMIN_KEY is not set",
    )
    return admin


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_forever(gateway: Gateway, admin: bool = True) -> None:
    """The ext_proc server, and the admin server beside it unless `admin` is False (the
    stack runs one admin server for all its workers) or its port is 0."""
    settings = gateway.settings
    observer = build_observer(
        settings,
        gateway.policy_file.audit.store_originals,
        models=gateway.router.named_models(),
    )
    runtime = gateway.runtime(observer)
    admin_server = None
    try:
        if admin and settings.gateway_admin_port:
            admin_server = await _start_admin(settings)
        server, _, port = await start_server(runtime)
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        observer.close()
        raise OSError(f"cannot listen on port {settings.extproc_port}: {exc}") from exc
    except OSError:
        observer.close()
        raise
    log.info(
        "ext_proc listening on %s:%d, policies: %s%s",
        settings.extproc_listen,
        port,
        ", ".join(runtime.chains.default.names),
        " (validating streams)" if gateway.validate_streams else "",
    )
    _log_providers(gateway)
    await _until_stopped()
    log.info("ext_proc stopping")
    with contextlib.suppress(Exception):
        await server.stop(grace=2)
    # Shadow decisions still under way are recorded before their clients close.
    await drain_shadow_work(SHADOW_DRAIN_S)
    await runtime.chains.aclose()
    if admin_server is not None:
        await admin_server.stop()
    # The records of the last requests are written before the process goes.
    await asyncio.to_thread(observer.close)


async def serve_admin_forever(settings: Settings) -> None:
    """Only the admin server: the stack's, beside its ext_proc workers, or one for
    several replicas sharing a PostgreSQL store."""
    admin = await _start_admin(settings)
    await _until_stopped()
    await admin.stop()
