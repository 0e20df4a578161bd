"""Start and stop the whole gateway: mock LLM (when needed), ext_proc server, Envoy.

Used by `llm-gateway run` in the foreground and by the end-to-end tests on free ports.
Each part is a child process, so a crash in one is visible and Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from extproc.config import RESTARTED_ENV, SUPERVISOR_ENV, Settings
from extproc.core.reloading import ReloadResult
from extproc.envoy_config import dynamic, render_dynamic
from extproc.envoy_config.bootstrap import STAT_PREFIX
from extproc.gateway import Gateway, GatewayError
from extproc.observe.metrics import MULTIPROC_ENV, mark_process_dead, prepare_multiprocess_dir
from extproc.processes import (
    StackError,
    config_dump,
    envoy_binary,
    envoy_ready,
    free_port,
    port_in_use,
    start_drain,
    stop_processes,
    tcp_ready,
    unix_ready,
    wait_idle,
    wait_ready,
)
from extproc.restarts import EXIT_CONFIG, RestartPolicy

# What tests, benchmarks and the command line import from here.
__all__ = ["Stack", "StackError", "envoy_binary", "free_port", "port_in_use"]
from extproc.routing import Upstream

log = logging.getLogger("extproc.stack")

# How long a reload waits for Envoy to take the new listener, routes and clusters.
ENVOY_APPLY_TIMEOUT_S = 10.0


def _ignore_hangup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@dataclass
class Stack:
    """The gateway's processes for one configuration. `gateway` must have been loaded
    with the environment the children get (settings and `extra_env`), as
    `Stack.load` does."""

    gateway: Gateway
    # Where children write their output: None inherits this process's stdout/stderr.
    log_dir: Path | None = None
    envoy_concurrency: int | None = None
    # More variables for the children (keys named by a provider's key_env).
    extra_env: dict[str, str] = field(default_factory=dict)
    # Forces Envoy's response body mode (tests of a mismatch); None derives it.
    response_body: bool | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _files: list[IO[bytes]] = field(default_factory=list)
    config_path: Path | None = None
    metrics_dir: Path | None = None
    # Where Envoy's listener, routes and clusters live as files it follows.
    xds_dir: Path | None = None
    # Every provider cluster Envoy was given: a reload adds clusters, never removes one,
    # so a stream still on a provider the new configuration dropped keeps its cluster.
    served: dict[str, Upstream] = field(default_factory=dict)
    generation: int = 1
    # This process handles SIGHUP by calling `reload` (`llm-gateway run`); otherwise the
    # program embedding the stack reloads it, and the admin API cannot.
    supervised: bool = False
    restarts: RestartPolicy = field(default_factory=RestartPolicy)
    _argv: dict[str, list[str]] = field(default_factory=dict)
    _logs: dict[str, IO[bytes]] = field(default_factory=dict)
    # Crashed workers waiting out their backoff: name -> when to start them again.
    _restart_at: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        settings: Settings,
        extra_env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        envoy_concurrency: int | None = None,
        response_body: bool | None = None,
    ) -> Stack:
        """The stack for these settings: the configuration loaded once, here, with the
        environment the ext_proc children will see."""
        extra = dict(extra_env or {})
        gateway = Gateway.load(settings, env={**os.environ, **settings.to_env(), **extra})
        return cls(gateway, log_dir, envoy_concurrency, extra, response_body)

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.gateway_port}"

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            **self.settings.to_env(),
            **self.extra_env,
            "PYTHONUNBUFFERED": "1",
            # The workers leave file watching and reload orders to this process (when
            # it handles SIGHUP), or to whoever embeds the stack and calls `reload`.
            SUPERVISOR_ENV: str(os.getpid()) if self.supervised else "embedded",
        }
        if self.metrics_dir is not None:
            # Each ext_proc worker writes its metrics there; the admin child sums them.
            env[MULTIPROC_ENV] = str(self.metrics_dir)
        return env

    @property
    def has_admin(self) -> bool:
        return self.settings.gateway_admin_port != 0

    @property
    def admin_child(self) -> bool:
        """Whether the admin server runs as a child of its own (several workers)."""
        return self.has_admin and self.settings.extproc_workers > 1

    @property
    def admin_url(self) -> str:
        s = self.settings
        return f"http://{s.gateway_admin_host}:{s.gateway_admin_port}"

    def _spawn(self, name: str, argv: list[str], again: bool = False) -> subprocess.Popen[bytes]:
        out: IO[bytes] | int | None = None
        if self.log_dir is not None:
            # A restarted worker's log goes on after its predecessor's last words.
            mode = "ab" if again else "wb"
            handle = open(self.log_dir / f"{name}.log", mode)  # noqa: SIM115 - closed in stop()
            previous = self._logs.pop(name, None)
            if previous is not None:  # the crashed predecessor's: no one writes it now
                previous.close()
                self._files.remove(previous)
            self._files.append(handle)
            self._logs[name] = handle
            out = handle
        env = self._env()
        if again:
            env[RESTARTED_ENV] = "1"  # the worker counts itself in the restart metric
        # A worker ignores SIGHUP from its first instruction (an ignored signal survives
        # exec): a reload order sent while it starts must not end it. It takes SIGHUP
        # once it serves, and reloads at once if the files changed meanwhile.
        worker = name.startswith("extproc")
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            preexec_fn=_ignore_hangup if worker else None,
        )
        self.procs[name] = proc
        self._argv[name] = argv
        return proc

    @property
    def needs_mock(self) -> bool:
        return self.gateway.router.needs_mock

    def check_ports(self) -> None:
        s = self.settings
        wanted = {
            "gateway": s.gateway_port,
            "envoy admin": s.admin_port,
        }
        if s.extproc_uds_dir is None:
            wanted.update({f"ext_proc {i}": s.extproc_port + i for i in range(s.extproc_workers)})
        if self.needs_mock:
            wanted["mock LLM"] = s.mock_port
        if self.has_admin:
            wanted["gateway admin"] = s.gateway_admin_port
        last = s.extproc_port + s.extproc_workers - 1
        if last > 65535:
            raise StackError(
                f"EXTPROC_WORKERS={s.extproc_workers} from EXTPROC_PORT={s.extproc_port} "
                f"needs ports up to {last}, beyond 65535: choose a lower EXTPROC_PORT"
            )
        owners: dict[int, str] = {}
        for name, port in wanted.items():
            if port in owners:
                # EXTPROC_WORKERS > 1 takes EXTPROC_PORT, EXTPROC_PORT + 1, ...
                raise StackError(
                    f"port {port} is configured for both {owners[port]} and {name}: "
                    "choose ports apart (see README, 'Configuration')"
                )
            owners[port] = name
        for name, port in wanted.items():
            if port_in_use(s.host, port):
                raise StackError(
                    f"port {port} ({name}) on {s.host} is already in use: stop what holds it "
                    f"or choose another port (see README, 'Configuration')"
                )

    def start(self, timeout: float = 30.0) -> None:
        s = self.settings
        self.check_ports()
        deadline = time.monotonic() + timeout
        try:
            run_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="llm-gateway-"))
            if self.needs_mock:
                self._spawn(
                    "mock-llm",
                    [
                        sys.executable,
                        "-m",
                        "extproc.mock_llm",
                        "--host",
                        s.mock_host,
                        "--port",
                        str(s.mock_port),
                    ],
                )
            if self.admin_child:
                self.metrics_dir = run_dir / "metrics"
                prepare_multiprocess_dir(self.metrics_dir)
                self._spawn("admin", [sys.executable, "-m", "extproc", "admin"])
            for i in range(s.extproc_workers):
                name = "extproc" if i == 0 else f"extproc-{i}"
                argv = [sys.executable, "-m", "extproc", "serve", "--port", str(s.extproc_port + i)]
                # Several workers: one admin child serves the admin API and their summed
                # metrics. One worker serves them itself (and its own limit counters).
                argv += ["--no-admin"] if self.admin_child or not self.has_admin else []
                self._spawn(name, argv)
            procs = self.procs
            if self.needs_mock:
                wait_ready(lambda: tcp_ready(s.mock_host, s.mock_port), "mock LLM", deadline, procs)
            if self.has_admin:
                admin_ready = partial(tcp_ready, s.gateway_admin_host, s.gateway_admin_port)
                wait_ready(admin_ready, "admin server", deadline, procs)
            for port in range(s.extproc_port, s.extproc_port + s.extproc_workers):
                path = s.extproc_socket(port)
                ready = (
                    partial(unix_ready, path)
                    if path is not None
                    else partial(tcp_ready, s.extproc_host, port)
                )
                wait_ready(ready, "ext_proc", deadline, procs)
            self.xds_dir = run_dir / "xds"
            self.xds_dir.mkdir(exist_ok=True)
            self._write_envoy_files()
            self.config_path = run_dir / "envoy.yaml"
            self.config_path.write_text(render_dynamic(self.gateway, str(self.xds_dir)))
            argv = [
                envoy_binary(),
                "-c",
                str(self.config_path),
                "--log-level",
                "warn",
                # Several Envoys may run on one machine (tests, benchmarks).
                "--disable-hot-restart",
                # A reload that changes the listener (responses switched on or off for
                # ext_proc) drains the old one: its connections are told to close after
                # their current request at once, not gradually over the drain time.
                "--drain-strategy",
                "immediate",
            ]
            if self.envoy_concurrency:
                argv += ["--concurrency", str(self.envoy_concurrency)]
            try:
                self._spawn("envoy", argv)
            except OSError as exc:
                raise StackError(f"cannot start envoy ({argv[0]}): {exc.strerror}") from exc
            wait_ready(lambda: envoy_ready("127.0.0.1", s.admin_port), "envoy", deadline, procs)
            wait_ready(lambda: tcp_ready(s.host, s.gateway_port), "envoy listener", deadline, procs)
        except BaseException:
            self.stop()
            raise

    @property
    def _response_body(self) -> bool:
        body = self.response_body
        return self.gateway.reads_responses if body is None else body

    def _write_envoy_files(self) -> dict[str, str]:
        assert self.xds_dir is not None
        for upstream in self.gateway.router.clusters(self.gateway.brings_own_key_callers):
            self.served[upstream.cluster] = upstream
        files = dynamic.resources(
            self.gateway, str(self.xds_dir), self._response_body, self.served.values()
        )
        return dynamic.write(self.xds_dir, files)

    def _wait_envoy_applied(self, versions: dict[str, str]) -> bool:
        deadline = time.monotonic() + ENVOY_APPLY_TIMEOUT_S
        clusters = set(self.served)
        while time.monotonic() < deadline:
            try:
                if dynamic.applied(config_dump(self.settings.admin_port), versions, clusters):
                    return True
            except (OSError, ValueError):
                pass  # Envoy busy, or half an answer: asked again
            time.sleep(0.05)
        return False

    def _env_for_load(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), **self.extra_env}

    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for name, p in self.procs.items() if name.startswith("extproc")]

    def reload(self) -> ReloadResult:
        """Read and check the files again; if they are good, give Envoy the new
        listener, routes and clusters, wait until it has them, then tell every worker
        to reload (SIGHUP). A bad file changes nothing and says what is wrong."""
        try:
            gateway = Gateway.load(self.settings, env=self._env_for_load()).checked()
        except GatewayError as exc:
            message = "; ".join(line for line in str(exc).splitlines() if line.strip())
            log.error("reload refused, the running configuration stays: %s", message)
            # The workers find the same problem, keep their configuration, and count
            # the refusal in the metrics (this process has none).
            self._signal_workers()
            return ReloadResult(False, message, self.generation)
        self.gateway = gateway
        note = ""
        if self.xds_dir is not None and "envoy" in self.procs:
            try:
                versions = self._write_envoy_files()
            except OSError as exc:
                versions, note = {}, f"; Envoy's files could not be written: {exc.strerror}"
            if versions and not self._wait_envoy_applied(versions):
                note = f"; Envoy did not apply its new files in {ENVOY_APPLY_TIMEOUT_S:g}s"
            if note:
                # The workers reload anyway: a route to a cluster Envoy lacks fails in
                # format (502), while old policies kept would be silently wrong.
                log.error("reload: %s", note.removeprefix("; "))
        self._signal_workers()
        self.generation += 1
        message = f"configuration {self.generation} sent to {len(self.workers())} worker(s){note}"
        log.info("reload: %s", message)
        # The workers did reload: a problem with Envoy is in the message and the log.
        return ReloadResult(True, message, self.generation)

    def _signal_workers(self) -> None:
        for proc in self.workers():
            if proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    def supervise(self, now: float | None = None) -> str | None:
        """Start crashed ext_proc workers again (after their backoff); None while the
        gateway can go on, else why it must stop: Envoy, the mock or the admin server
        died, or a worker crash-loops. Call it every fraction of a second."""
        now = time.monotonic() if now is None else now
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            if not name.startswith("extproc"):
                return f"{name} exited with code {proc.returncode}"
            due = self._restart_at.get(name)
            if due is not None:
                if now >= due:
                    del self._restart_at[name]
                    self._spawn(name, self._argv[name], again=True)
                continue
            if self.metrics_dir is not None:
                # Its open streams are gone: the summed gauges stop counting them.
                mark_process_dead(proc.pid, self.metrics_dir)
            if proc.returncode == EXIT_CONFIG:
                # The files changed since the last accepted reload and are wrong: the
                # other workers go on with what they have; this one waits for a fix.
                wait = self.restarts.backoff_s[-1]
                log.error(
                    "%s cannot start: its configuration files are refused (see its log); "
                    "trying again in %gs",
                    name,
                    wait,
                )
                self._restart_at[name] = now + wait
                continue
            delay = self.restarts.crashed(name, now)
            if delay is None:
                return (
                    f"{name} crashed more than {self.restarts.limit} times in "
                    f"{self.restarts.window_s:g}s: stopping"
                )
            log.error(
                "%s (pid %d) exited with code %s; starting it again in %gs (restart %d)",
                name,
                proc.pid,
                proc.returncode,
                delay,
                self.restarts.total,
            )
            self._restart_at[name] = now + delay
        return None

    def drain(self, timeout_s: float | None = None) -> int:
        """A graceful shutdown's first half: /healthz turns 503 and Envoy's listener
        drains, then open streams get up to `timeout_s` (DRAIN_TIMEOUT_S) to finish.
        Returns the requests still open; `stop` then ends those in format."""
        timeout = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        port = self.settings.admin_port
        try:
            start_drain(port)
            left = wait_idle(port, STAT_PREFIX, timeout, meanwhile=self.supervise)
        except (OSError, ValueError) as exc:
            log.error("draining Envoy failed (%s): stopping now", exc)
            return -1
        if left:
            log.warning("%d requests still open after %gs: ending them", left, timeout)
        return left

    def stop(self, grace: float = 5.0) -> None:
        """Stop every child: the workers first, which end the streams still open in
        format at their next chunk, while Envoy still carries those to the clients."""
        workers = self.workers()
        for proc in workers:
            if proc.poll() is None:
                proc.terminate()
        end = time.monotonic() + grace
        for proc in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, end - time.monotonic()))
        stop_processes(self.procs, self._files, grace)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
