"""scripts/test_gateway.sh, the smoke test for a running gateway, run against the real stack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test_gateway.sh"
TIMEOUT = 120
CHECK_LINE = re.compile(r"^(PASS \S+|FAIL \S+: .+)$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")
EXPECTED_CHECKS = {
    "anthropic_messages",
    "anthropic_messages_stream",
    "openai_chat_claude-sonnet-4-5",
    "openai_chat_stream_claude-sonnet-4-5",
    "openai_chat_gpt-4o-mini",
    "openai_chat_stream_gpt-4o-mini",
    "missing_messages_anthropic",
    "missing_messages_openai",
    "bad_key_anthropic",
    "bad_key_openai",
    "openai_responses",
    "openai_responses_stream",
    "missing_input_responses",
    "bad_key_responses",
}


def _run(
    base_url: str, api_key: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    skip = ("GATEWAY_URL", "EXPECT_MOCK", "CLAUDE_MODEL", "OPENAI_MODEL")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env["GATEWAY_API_KEY"] = api_key
    env.update(extra)
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), base_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    return done, time.monotonic() - started


def _parse(out: str) -> tuple[dict[str, str], tuple[int, int]]:
    """Check lines by name ("PASS" or the FAIL reason) and the final (passed, failed)."""
    lines = out.strip().splitlines()
    assert lines, "no output"
    summary = SUMMARY.match(lines[-1])
    assert summary, f"last line is not the summary: {lines[-1]!r}"
    checks: dict[str, str] = {}
    for line in lines[:-1]:
        assert CHECK_LINE.match(line), f"unexpected output line: {line!r}"
        verdict, rest = line.split(" ", 1)
        name, _, reason = rest.partition(": ")
        assert name not in checks, f"check {name} reported twice"
        checks[name] = "PASS" if verdict == "PASS" else reason
    passed, failed = int(summary.group(1)), int(summary.group(2))
    assert passed == sum(v == "PASS" for v in checks.values())
    assert failed == len(checks) - passed
    return checks, (passed, failed)


def test_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    done = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0 and "Usage:" in done.stdout


def test_all_checks_pass_against_stack(stack: Stack) -> None:
    done, _ = _run(stack.base_url, DEV_GATEWAY_KEY)
    checks, (passed, failed) = _parse(done.stdout)
    assert set(checks) == EXPECTED_CHECKS, done.stdout
    assert all(v == "PASS" for v in checks.values()), done.stdout
    assert (passed, failed) == (len(EXPECTED_CHECKS), 0)
    assert done.returncode == 0, done.stdout + done.stderr


def test_models_are_chosen_by_the_environment(stack: Stack) -> None:
    """For the real API, where the bug report's model has reached end of life."""
    done, _ = _run(
        stack.base_url, DEV_GATEWAY_KEY, CLAUDE_MODEL="claude-sonnet-5-5", OPENAI_MODEL="o4-mini"
    )
    checks, _ = _parse(done.stdout)
    assert {"openai_chat_claude-sonnet-5-5", "openai_chat_stream_o4-mini"} <= set(checks)
    assert all(v == "PASS" for v in checks.values()), done.stdout
    done, _ = _run(stack.base_url, DEV_GATEWAY_KEY, CLAUDE_MODEL='x"}, "injected": {"')
    assert done.returncode == 2 and "model names only" in done.stderr


def test_wrong_key_fails_without_leaking_it(stack: Stack) -> None:
    wrong_key = "sk-wrong-smoke-key-3f9c1e7a"
    done, _ = _run(stack.base_url, wrong_key)
    assert done.returncode != 0
    checks, (_, failed) = _parse(done.stdout)
    assert failed > 0
    assert "status 401" in checks["anthropic_messages"]
    assert "status 401" in checks["missing_messages_openai"]
    assert wrong_key not in done.stdout and wrong_key not in done.stderr
    # The bad-key checks use their own wrong key and still pass.
    assert checks["bad_key_anthropic"] == checks["bad_key_openai"] == "PASS"


def test_closed_port_fails_fast() -> None:
    done, elapsed = _run(f"http://127.0.0.1:{free_port()}", DEV_GATEWAY_KEY)
    assert done.returncode != 0
    checks, (passed, failed) = _parse(done.stdout)
    assert (passed, failed) == (0, len(EXPECTED_CHECKS))
    assert all("cannot connect" in reason for reason in checks.values()), done.stdout
    assert elapsed < 15, f"took {elapsed:.1f}s against a closed port"
