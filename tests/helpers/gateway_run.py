"""`llm-gateway run` as a child process, for tests of what only the command line does
(its file watch, signals, drain)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.helpers.wait import wait_for


class GatewayRun:
    """`llm-gateway run` in a child with `env`, its cwd `cwd`; its output (and its
    children's, which share its pipes) is read as it comes, so no pipe fills up."""

    def __init__(self, env: dict[str, str], cwd: Path, timeout: float = 60) -> None:
        self.env = env
        self.cwd = cwd
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extproc", "run"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            wait_for(self._ready, "llm-gateway run to be ready", timeout)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"llm-gateway run exited: {self.tail()}"
        return any("Ctrl-C stops everything" in line for line in self.out)

    def tail(self, lines: int = 30) -> str:
        return "".join(self.err[-lines:])

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.err)

    def wait_count(self, needle: str, at_least: int, timeout: float = 10) -> None:
        wait_for(lambda: self.count(needle) >= at_least, f"{at_least}x {needle!r}", timeout)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `llm-gateway` command with the same environment and cwd."""
        return subprocess.run(
            [sys.executable, "-m", "extproc", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
