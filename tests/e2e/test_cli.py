"""`llm-gateway run`: the whole stack in the foreground, and a clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import free_port, port_in_use
from tests.helpers.stack import run_cli
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e


def _env(**extra: str) -> dict[str, str]:
    ports = {
        "GATEWAY_PORT": str(free_port()),
        "ENVOY_ADMIN_PORT": str(free_port()),
        "EXTPROC_PORT": str(free_port()),
        "MOCK_LLM_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        # Not the working directory's .llm-gateway/: each run its own store.
        "AUDIT_DB": str(Path(tempfile.mkdtemp(prefix="gw-cli-")) / "audit.db"),
    }
    env = {**os.environ, **ports, **extra}
    env.pop("GATEWAY_ADMIN_KEY", None)
    return env


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(env: dict[str, str], sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`sigint_ignored`: started as a script's background job is, SIGINT ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "extproc", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(seen)
    raise AssertionError(f"stack not ready; output: {''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_every_child(sig: signal.Signals) -> None:
    env = _env()
    # Ctrl-C stops it however it was started.
    proc = _start(env, sigint_ignored=True)
    try:
        banner = _wait_ready(proc)
        port = env["GATEWAY_PORT"]
        assert f"http://127.0.0.1:{port}" in banner and DEV_GATEWAY_KEY in banner
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/messages",
            headers={"x-api-key": DEV_GATEWAY_KEY},
            json={
                "model": "claude-sonnet-5-5",
                "max_tokens": 9,
                "messages": [{"role": "user", "content": "Count to 2"}],
            },
            timeout=30,
        )
        assert resp.json()["content"][0]["text"] == "1, 2"
        # The admin server, with the key made up for this run and printed in the banner.
        admin = f"http://127.0.0.1:{env['GATEWAY_ADMIN_PORT']}"
        key = re.search(r"admin key:\s+(\S+)", banner)
        assert key is not None and f"{admin}/#key={key.group(1)}" in banner
        bearer = {"authorization": f"Bearer {key.group(1)}"}
        wait_for(
            lambda: (
                httpx.get(f"{admin}/api/stats", headers=bearer, timeout=5).json()["requests"] != []
            ),
            "the request's summary in the admin API",
        )
        assert httpx.get(f"{admin}/api/stats", timeout=5).status_code == 401
        proc.send_signal(sig)
        # The stack and its children write to these pipes: read them while it stops,
        # or a full pipe would block a child's last log line and the stop with it.
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode in (0, 130), stderr[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    for name in ("GATEWAY_PORT", "ENVOY_ADMIN_PORT", "EXTPROC_PORT", "MOCK_LLM_PORT"):
        assert not port_in_use("127.0.0.1", int(env[name])), f"{name} still held after stop"


def test_port_taken_exits_with_clear_message() -> None:
    env = _env()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["GATEWAY_PORT"])))
        holder.listen()
        done = run_cli("run", env)
    assert done.returncode == 1
    assert f"port {env['GATEWAY_PORT']} (gateway)" in done.stderr
    assert "already in use" in done.stderr


def test_overlapping_ports_exit_with_clear_message() -> None:
    """Two ext_proc workers take EXTPROC_PORT and the port after it."""
    env = _env(EXTPROC_WORKERS="2")
    env["GATEWAY_PORT"] = str(int(env["EXTPROC_PORT"]) + 1)
    done = run_cli("run", env)
    assert done.returncode == 1
    assert f"port {env['GATEWAY_PORT']} is configured for both gateway and ext_proc 1" in (
        done.stderr
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"EXTPROC_PORT": "65535", "EXTPROC_WORKERS": "2"}, "needs ports up to 65536"),
        ({"GATEWAY_PORT": "70000"}, "invalid configuration in gateway_port"),
    ],
)
def test_ports_out_of_range_exit_with_clear_message(extra: dict[str, str], message: str) -> None:
    done = run_cli("run", _env(**extra))
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr


def test_envoy_failing_to_start_exits_with_clear_message() -> None:
    env = _env(ENVOY_BIN="/bin/false")
    done = run_cli("run", env)
    assert done.returncode == 1
    assert "envoy exited with code 1 during start-up" in done.stderr
    # What it had started before Envoy is stopped again.
    for name in ("EXTPROC_PORT", "MOCK_LLM_PORT"):
        assert not port_in_use("127.0.0.1", int(env[name]))


def test_invalid_setting_names_the_variable_not_the_value() -> None:
    env = _env(UPSTREAM_OPENAI_URL="ftp://secret-host-value")
    done = run_cli("run", env)
    assert done.returncode != 0
    assert "upstream_openai_url" in done.stderr
