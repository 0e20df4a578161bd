"""`llm-gateway reload` signals only a gateway: a pid file left by one that crashed may
name another process now, which SIGHUP would end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from extproc import cli


def test_reload_refuses_a_process_that_is_no_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("POLICY_CONFIG", "GATEWAY_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert cli.main(["reload", "--pid", str(bystander.pid)]) == 1
        assert "not a running gateway" in capsys.readouterr().err
        assert bystander.poll() is None  # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_reload_without_a_running_gateway_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("POLICY_CONFIG", "GATEWAY_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["reload"]) == 1
    assert "no running gateway found" in capsys.readouterr().err
