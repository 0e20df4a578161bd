"""A real, throwaway redis-server for tests: no persistence, on a free 127.0.0.1 port,
in a temporary directory. Without the binary the tests that need it are skipped,
saying why."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.wait import wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One server; `stop()`/`start()` take it away and bring it back on the same port,
    empty (nothing is saved)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.root / "redis.log"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.root)]
        args += ["--logfile", str(log)]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._process = process

        def ready() -> bool:
            if process.poll() is not None:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {process.returncode}:\n{text}")
            return _pong(self.port)

        wait_for(ready, f"redis-server to answer PING on port {self.port}")

    def stop(self) -> None:
        """Kill the server (SIGKILL, as a crash) and wait until it is gone."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started server, stopped and deleted afterwards; skips without redis-server."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found on PATH")
    root = Path(tempfile.mkdtemp(prefix="redistest-"))
    server = RedisServer(binary, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
