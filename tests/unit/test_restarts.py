"""The supervisor's restart policy: growing backoff, and a crash loop stops the gateway;
and `Stack.supervise` acting on it with real (short-lived) child processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from extproc.config import Settings
from extproc.restarts import BACKOFF_S, CRASH_LIMIT, CRASH_WINDOW_S, EXIT_CONFIG, RestartPolicy
from extproc.stack import Stack
from tests.helpers.pipeline import gateway_with

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]


def test_backoff_grows_and_a_crash_loop_gives_up() -> None:
    policy = RestartPolicy()
    delays = [policy.crashed("extproc", float(t)) for t in range(CRASH_LIMIT)]
    assert delays == list(BACKOFF_S[:CRASH_LIMIT])
    assert policy.crashed("extproc", float(CRASH_LIMIT)) is None  # one more: a loop
    assert policy.total == CRASH_LIMIT


def test_crashes_outside_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    for t in range(CRASH_LIMIT):
        policy.crashed("extproc", float(t))
    later = CRASH_LIMIT + CRASH_WINDOW_S
    assert policy.crashed("extproc", later) == BACKOFF_S[0]
    # Each worker has its own history.
    assert policy.crashed("extproc-1", later) == BACKOFF_S[0]


def _stack(tmp_path: Path) -> Stack:
    stack = Stack(gateway_with(settings=Settings(extproc_workers=1)), log_dir=tmp_path)
    stack.procs["extproc"] = stack._spawn("extproc", CRASH)
    return stack


def test_supervise_restarts_a_dead_worker_after_its_backoff(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    try:
        first = stack.procs["extproc"]
        first.wait(10)
        assert stack.supervise(now=100.0) is None  # dead: scheduled, not yet started
        assert stack.procs["extproc"] is first
        assert stack.supervise(now=100.0 + BACKOFF_S[0]) is None
        again = stack.procs["extproc"]
        assert again is not first  # started again, with the same command
        assert again.args == CRASH
        assert stack.restarts.total == 1
    finally:
        stack.stop()


def test_a_crash_looping_worker_stops_the_gateway(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    try:
        now, verdict = 0.0, None
        for _ in range(4 * CRASH_LIMIT):
            stack.procs["extproc"].wait(10)
            verdict = stack.supervise(now=now)
            if verdict is not None:
                break
            now += 10.0  # past any backoff, well inside the window
            assert stack.supervise(now=now) is None
        assert verdict is not None and "crashed more than" in verdict
    finally:
        stack.stop()


def test_a_dead_envoy_stops_the_gateway(tmp_path: Path) -> None:
    stack = Stack(gateway_with(), log_dir=tmp_path)
    try:
        envoy = stack._spawn("envoy", CRASH)
        envoy.wait(10)
        assert stack.supervise(now=0.0) == "envoy exited with code 3"
    finally:
        stack.stop()


def test_a_restarted_worker_is_told_so(tmp_path: Path) -> None:
    """It counts itself in gateway_worker_restarts_total (metrics of a dead worker's
    counters survive in the multiprocess directory, so the sum is the restarts)."""
    stack = Stack(gateway_with(), log_dir=tmp_path)
    probe = [
        sys.executable,
        "-c",
        "import os; print(os.environ.get('LLM_GATEWAY_WORKER_RESTARTED'))",
    ]
    try:
        proc = stack._spawn("extproc", probe, again=True)
        proc.wait(10)
        stack.stop()
        assert (tmp_path / "extproc.log").read_text().strip() == "1"
    finally:
        stack.stop()
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "None"


def test_a_worker_refusing_its_files_waits_for_a_fix_and_is_no_crash(tmp_path: Path) -> None:
    """Exit status 78 (EX_CONFIG): the files are wrong, not the worker. It is tried
    again at the longest backoff, forever, and never counts toward a crash loop."""
    refusing = [sys.executable, "-c", f"raise SystemExit({EXIT_CONFIG})"]
    stack = Stack(gateway_with(settings=Settings(extproc_workers=1)), log_dir=tmp_path)
    try:
        stack._spawn("extproc", refusing)
        now = 0.0
        for _ in range(3 * CRASH_LIMIT):
            stack.procs["extproc"].wait(10)
            assert stack.supervise(now=now) is None
            now += BACKOFF_S[-1]
            assert stack.supervise(now=now) is None  # started again
        assert stack.restarts.total == 0
    finally:
        stack.stop()
