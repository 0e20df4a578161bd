"""scripts/test_gateway.sh's Responses API checks (on by default, CHECK_RESPONSES=0
skips them) against the real stack. The default run is tests/e2e/test_smoke_script.py's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test_gateway.sh"
RESPONSES_CHECKS = {
    "openai_responses",
    "openai_responses_stream",
    "missing_input_responses",
    "bad_key_responses",
}
LINE = re.compile(r"^(PASS|FAIL) (\S+)(?:: (.+))?$")


def _run(base_url: str, api_key: str, **extra: str) -> subprocess.CompletedProcess[str]:
    skip = ("GATEWAY_URL", "EXPECT_MOCK", "CLAUDE_MODEL", "OPENAI_MODEL", "CHECK_RESPONSES")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(GATEWAY_API_KEY=api_key, **extra)
    return subprocess.run(
        ["bash", str(SCRIPT), base_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _checks(out: str) -> dict[str, str]:
    """Check name -> "PASS" or the FAIL reason (the summary line left out)."""
    checks: dict[str, str] = {}
    for line in out.strip().splitlines()[:-1]:
        found = LINE.match(line)
        assert found, f"unexpected output line: {line!r}"
        checks[found.group(2)] = "PASS" if found.group(1) == "PASS" else str(found.group(3))
    return checks


def test_responses_checks_pass_against_stack(stack: Stack) -> None:
    done = _run(stack.base_url, DEV_GATEWAY_KEY, CHECK_RESPONSES="1")
    checks = _checks(done.stdout)
    assert set(checks) >= RESPONSES_CHECKS, done.stdout
    assert all(v == "PASS" for v in checks.values()), done.stdout
    assert done.stdout.strip().splitlines()[-1] == f"{len(checks)} passed, 0 failed"
    assert done.returncode == 0, done.stdout + done.stderr


def test_responses_checks_can_be_skipped(stack: Stack) -> None:
    """For a gateway or provider without the Responses API."""
    done = _run(stack.base_url, DEV_GATEWAY_KEY, CHECK_RESPONSES="0")
    assert not set(_checks(done.stdout)) & RESPONSES_CHECKS
    assert done.returncode == 0, done.stdout


def test_responses_checks_with_a_reasoning_model(stack: Stack) -> None:
    done = _run(stack.base_url, DEV_GATEWAY_KEY, CHECK_RESPONSES="1", OPENAI_MODEL="o4-mini")
    checks = _checks(done.stdout)
    assert {k: v for k, v in checks.items() if k in RESPONSES_CHECKS} == dict.fromkeys(
        RESPONSES_CHECKS, "PASS"
    ), done.stdout


def test_wrong_key_fails_the_responses_checks(stack: Stack) -> None:
    wrong = "sk-wrong-responses-smoke-key"
    done = _run(stack.base_url, wrong, CHECK_RESPONSES="1")
    checks = _checks(done.stdout)
    assert checks["openai_responses"].startswith("status 401")
    assert checks["openai_responses_stream"].startswith("status 401")
    assert checks["bad_key_responses"] == "PASS"
    assert wrong not in done.stdout + done.stderr
    assert done.returncode == 1


def test_bad_flag_is_a_usage_error() -> None:
    done = _run(f"http://127.0.0.1:{free_port()}", DEV_GATEWAY_KEY, CHECK_RESPONSES="yes")
    assert done.returncode == 2 and "CHECK_RESPONSES" in done.stderr


def test_closed_port_fails_every_responses_check() -> None:
    done = _run(f"http://127.0.0.1:{free_port()}", DEV_GATEWAY_KEY, CHECK_RESPONSES="1")
    checks = _checks(done.stdout)
    assert all("cannot connect" in checks[name] for name in RESPONSES_CHECKS), done.stdout
