"""A crashed ext_proc worker, end to end through the real Envoy: kill -9 one of two
workers while streams are open. Only its streams fail (none hangs), new requests
succeed again within 2 s (Envoy's health checks and outlier detection take the dead
worker out), and the supervisor starts it again, after which it serves again."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.stack import Supervisor, running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("supervision"), response_processing="always", extproc_workers=2
    ) as st:
        yield st


def _claude(st: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0, timeout=30
    )


def _ask(st: Stack) -> bool:
    try:
        reply = _claude(st).messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Count to 3"}]
        )
    except anthropic.APIError:
        return False
    return reply.stop_reason == "end_turn"


class Streaming(threading.Thread):
    def __init__(self, st: Stack) -> None:
        super().__init__(daemon=True)
        self.st = st
        self.started = threading.Event()
        self.ended_at: float | None = None
        self.outcome = ""

    def run(self) -> None:
        try:
            with _claude(self.st).messages.stream(
                model=MODEL,
                max_tokens=2048,
                messages=[{"role": "user", "content": "Count to 200"}],
                extra_headers={"x-mock-chunk-delay-ms": "20"},
            ) as stream:
                for _ in stream.text_stream:
                    self.started.set()
                self.outcome = str(stream.get_final_message().stop_reason)
        except Exception as exc:  # what the client saw
            self.outcome = type(exc).__name__
        finally:
            self.ended_at = time.monotonic()
            self.started.set()


def test_a_killed_worker_costs_only_its_streams(pair: Stack) -> None:
    supervisor = Supervisor(pair)
    supervisor.start()
    try:
        assert all(_ask(pair) for _ in range(6))
        streams = [Streaming(pair) for _ in range(4)]
        for stream in streams:
            stream.start()
        wait_for(lambda: all(s.started.is_set() for s in streams), "the streams to start", 15)
        victim = pair.procs["extproc-1"]
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()

        # New requests: every one succeeds again within 2 s.
        failures, streak = 0, 0
        while streak < 10:
            assert time.monotonic() - killed < 10, "requests kept failing"
            if _ask(pair):
                streak += 1
            else:
                failures, streak = failures + 1, 0
        recovered = time.monotonic() - killed
        print(f"requests failed after the kill: {failures}; all succeed after {recovered:.2f}s")
        assert recovered < 2.0 + 10 * 0.5  # 2 s to recover, then ten requests in a row

        # Open streams: those on the dead worker fail, none hangs; the others finish.
        for stream in streams:
            stream.join(15)
            assert stream.ended_at is not None, "a stream hung"
        outcomes = [s.outcome for s in streams]
        print(f"stream outcomes: {outcomes}")
        assert "end_turn" in outcomes  # the live worker's streams were untouched
        for stream in streams:
            if stream.outcome != "end_turn":
                assert stream.ended_at is not None and stream.ended_at - killed < 5

        # The supervisor started it again; it serves again.
        wait_for(lambda: pair.procs["extproc-1"].pid != victim.pid, "the restart", 10)
        assert pair.restarts.total >= 1
        log = pair.log_dir / "extproc-1.log" if pair.log_dir else None
        assert log is not None
        before = log.read_text().count('"outcome"')
        wait_for(
            lambda: _ask(pair) and log.read_text().count('"outcome"') > before,
            "the restarted worker to serve a request",
            15,
        )
        assert supervisor.verdict is None
    finally:
        supervisor.stop()


def test_a_request_whose_worker_is_gone_is_answered_in_format(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """No worker to take it (the only one died, nobody restarts it): Envoy's own answer
    is made a retryable 503 in the API's format, not an empty 500."""
    with running_stack(tmp_path_factory.mktemp("no-worker")) as st:
        assert _ask(st)
        worker = st.procs["extproc"]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        with pytest.raises(anthropic.InternalServerError) as refused:
            _claude(st).messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "1"
        body = refused.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        assert "gateway worker was unavailable" in body["error"]["message"]
        oai = openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)
        with pytest.raises(openai.InternalServerError) as refused_chat:
            oai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused_chat.value.status_code == 503
        assert "gateway worker was unavailable" in str(refused_chat.value.message)
