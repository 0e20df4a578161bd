"""The mock LLM's command line: `python -m extproc.mock_llm`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from extproc.mock_llm import MockConfig
from extproc.mock_llm.__main__ import serve

ROOT = Path(__file__).resolve().parents[3]


async def test_cli_listens_stops_and_rejects_taken_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "extproc.mock_llm", "--host", "127.0.0.1", "--port", "0",
        "--chunking", "random:1", env=env, cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=8)).decode()
        assert line.startswith("mock-llm listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).text == "ok"
        assert await serve("127.0.0.1", int(url.rsplit(":", 1)[1]), MockConfig()) == 1
        err = capsys.readouterr().err
        assert "address already in use" in err and len(err.strip().splitlines()) == 1
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=5) == 0
