"""Run the ext_proc server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from extproc.admin.app import AdminServer, create_admin_app
from extproc.admin.control import Control, Reload
from extproc.approvals.desk import DESK
from extproc.config import DEV_GATEWAY_KEY, RESTARTED_ENV, SUPERVISOR_ENV, Settings
from extproc.core.filewatch import FileWatch
from extproc.core.reloading import ReloadResult
from extproc.gateway import Gateway, GatewayError, Runtime
from extproc.limit_report import open_counters, usage_report
from extproc.limits import Counters
from extproc.live import LiveRuntime
from extproc.observe.hub import Observer
from extproc.observe.metrics import render_metrics
from extproc.observe.setup import audit_store, build_observer
from extproc.pipeline.metering import drain_charges
from extproc.policies.recording import drain_shadow_work
from extproc.server import start_server

log = logging.getLogger("extproc")

# How long shutdown waits for shadow policies' decisions still under way.
SHADOW_DRAIN_S = 3.0
# At SIGTERM: how long open streams get to be ended in format at their next chunk.
SHUTDOWN_GRACE_S = 3.0
# How often a process without a supervisor looks at its configuration files.
WATCH_INTERVAL_S = 1.0


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


async def _start_admin(settings: Settings, control: Control) -> AdminServer:
    """The admin server (metrics, admin API, web view) in this process's loop."""
    keys = settings.admin_keys()
    app = create_admin_app(
        audit_store(settings),
        keys,
        render_metrics,
        control=control,
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
        "" if keys else " off: GATEWAY_ADMIN_KEY is not set",
    )
    return admin


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _supervisor() -> int | None:
    """The `llm-gateway run` that started this process, which owns reloads; 0 for a
    stack embedded in another program (tests, benchmarks), which reloads it through
    `Stack.reload`; None for a process on its own."""
    value = os.environ.get(SUPERVISOR_ENV, "").strip()
    if not value:
        return None
    return int(value) if value.isdigit() else 0


def _file_watch(settings: Settings) -> FileWatch:
    return FileWatch([settings.policy_config or "", settings.keys_file or ""])


async def _watch_files(live: LiveRuntime, watch: FileWatch) -> None:
    """Reload when the policy or keys file changes (a process on its own: under
    `llm-gateway run`, the supervisor watches and tells every worker)."""
    if not watch.paths:
        return
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        if watch.changed(time.monotonic()):
            log.info("configuration files changed: reloading")
            await live.reload()


def _reload_through(settings: Settings, supervisor: int) -> Reload | None:
    return _signalling_reload(settings, supervisor) if supervisor else None


def _signalling_reload(settings: Settings, supervisor: int) -> Reload:
    """Reload through the supervisor: the files are checked here first, so a bad one
    is reported to the caller, then every worker is told (SIGHUP to the supervisor)."""

    async def reload() -> ReloadResult:
        try:
            gateway = await asyncio.to_thread(Gateway.load, settings)
            await gateway.check_policies()
        except GatewayError as exc:
            message = "; ".join(line for line in str(exc).splitlines() if line.strip())
            result = ReloadResult(False, message)
        else:
            result = ReloadResult(True, "the configuration checked; every worker is reloading")
        # Told either way: a refused reload is logged and counted where reloads are.
        os.kill(supervisor, signal.SIGHUP)
        return result

    return reload


async def serve_forever(gateway: Gateway, admin: bool = True) -> None:
    """The ext_proc server, and the admin server beside it unless `admin` is False (the
    stack runs one admin server for all its workers) or its port is 0."""
    settings = gateway.settings
    # The files as loaded: a change while the server starts is a change.
    watch = _file_watch(settings)
    observer = build_observer(
        settings,
        gateway.policy_file.audit.store_originals,
        models=gateway.router.named_models(),
    )
    if os.environ.get(RESTARTED_ENV) and observer.metrics is not None:
        observer.metrics.worker_restarted()
    # Callers' use of their limits outlives any configuration: one store per process.
    counters = open_counters(settings)
    if settings.audit_enabled:
        # Tool calls waiting for a person are kept beside the records, where every
        # worker's (and replica's) admin API finds them.
        DESK.attach(audit_store(settings), settings.admin_base_url())
        DESK.listener = observer.metrics
    runtime = gateway.runtime(observer, counters)
    live = LiveRuntime(
        runtime,
        load=lambda: Gateway.load(settings),
        build=lambda new: _runtime_for(new, observer, counters),
        on_reload=observer.reloaded,
    )
    supervisor = _supervisor()
    control = Control(
        # Under `llm-gateway run` the supervisor reloads Envoy and every worker; a
        # stack embedded in a program is reloaded by that program alone.
        reload=live.reload if supervisor is None else _reload_through(settings, supervisor),
        usage=lambda caller: usage_report(live.current.gateway, counters, caller),
    )
    admin_server = None
    try:
        if admin and settings.gateway_admin_port:
            admin_server = await _start_admin(settings, control)
        server, servicer, port = await start_server(live)
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        observer.close()
        where = settings.extproc_address(settings.extproc_port)
        raise OSError(f"cannot listen on {where}: {exc}") from exc
    except OSError:
        observer.close()
        raise
    log.info(
        "ext_proc listening on %s, policies: %s%s",
        # The bound port (the settings' may be 0); a socket is named by the settings'.
        settings.extproc_address(
            port if settings.extproc_uds_dir is None else settings.extproc_port
        ),
        ", ".join(runtime.chains.default.names),
        " (validating streams)" if gateway.validate_streams else "",
    )
    _log_providers(gateway)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[ReloadResult]] = set()

    def on_hangup() -> None:
        task = loop.create_task(live.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    if watch.differs():
        # Changed while this process started, when a reload order could not reach it.
        on_hangup()
    watcher = None if supervisor is not None else loop.create_task(_watch_files(live, watch))
    await _until_stopped()
    log.info("ext_proc stopping")
    if watcher is not None:
        watcher.cancel()
    # Streams still open end in format at their next chunk (the supervisor drained
    # Envoy first, so these are the ones that outlived the drain).
    await servicer.shut_down(SHUTDOWN_GRACE_S)
    with contextlib.suppress(Exception):
        await server.stop(grace=1)
    # Shadow decisions still under way are recorded before their clients close.
    await drain_shadow_work(SHADOW_DRAIN_S)
    await drain_charges(SHADOW_DRAIN_S)
    await live.aclose()
    await counters.aclose()
    await DESK.aclose()
    if admin_server is not None:
        await admin_server.stop()
    # The records of the last requests are written before the process goes.
    await asyncio.to_thread(observer.close)


def _runtime_for(gateway: Gateway, observer: Observer, counters: Counters) -> Runtime:
    # What the records may keep is the policy file's to say, like everything in it.
    observer.keep_originals = gateway.policy_file.audit.store_originals
    return gateway.runtime(observer, counters)


async def serve_admin_forever(settings: Settings) -> None:
    """Only the admin server: the stack's, beside its ext_proc workers, or one for
    several replicas sharing a PostgreSQL store."""
    supervisor = _supervisor()
    reload = _reload_through(settings, supervisor) if supervisor is not None else None
    # Shared counters can be read from here; a worker's own are only in that worker.
    counters = open_counters(settings) if settings.rate_limit_redis_url is not None else None

    async def usage(caller: str | None) -> list[dict[str, Any]]:
        assert counters is not None
        # The files as they are now: the callers of the last reload.
        gateway = await asyncio.to_thread(Gateway.load, settings)
        return await usage_report(gateway, counters, caller)

    control = Control(reload=reload, usage=usage if counters is not None else None)
    admin = await _start_admin(settings, control)
    await _until_stopped()
    if counters is not None:
        await counters.aclose()
    await admin.stop()
