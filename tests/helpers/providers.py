"""Mock LLM processes of their own, playing named providers on free ports; each records
the requests it receives (routing and reload tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from extproc.stack import free_port
from tests.helpers.wait import wait_for


class MockProvider:
    """A mock LLM process on its own port that records the requests it receives."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / f"provider-{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "extproc.mock_llm",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, f"mock provider {name}", timeout=30)

    def _up(self) -> bool:
        assert self.proc.poll() is None, f"mock provider {self.name} exited"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def requests(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = httpx.get(f"{self.url}/_mock/requests").json()
        return records

    def clear(self) -> None:
        httpx.delete(f"{self.url}/_mock/requests")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._log.close()
