"""Graceful drain end to end through the real Envoy: at a drain, /healthz turns 503 at
once, open streams run to their end within DRAIN_TIMEOUT_S, and streams still open
after it end with an in-format error event (a valid terminator), never a cut."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack, free_port
from tests.helpers.gateway_run import GatewayRun
from tests.helpers.stack import running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
HEADERS = {"x-api-key": DEV_GATEWAY_KEY, "anthropic-version": "2023-06-01"}


def _stream_body(count: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": f"Count to {count}"}],
    }


class RawStream(threading.Thread):
    """A streamed Messages call read as raw SSE bytes, as a client gets them."""

    def __init__(self, st: Stack | str, count: int) -> None:
        super().__init__(daemon=True)
        self.base_url = st if isinstance(st, str) else st.base_url
        self.count = count
        self.started = threading.Event()
        self.data = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST",
                f"{self.base_url}/v1/messages",
                json=_stream_body(self.count),
                headers={**HEADERS, "x-mock-chunk-delay-ms": "20"},
                timeout=60,
            ) as resp:
                for chunk in resp.iter_raw():
                    self.data += chunk
                    self.started.set()
        except BaseException as exc:  # what the client saw
            self.error = exc
        finally:
            self.started.set()


def _healthz(st: Stack) -> int:
    return httpx.get(f"{st.base_url}/healthz", timeout=5).status_code


def test_a_drain_lets_open_streams_finish(tmp_path: Path) -> None:
    with running_stack(tmp_path, response_processing="always") as st:
        assert _healthz(st) == 200
        stream = RawStream(st, 100)  # about 2 s of events
        stream.start()
        wait_for(stream.started.is_set, "the stream to start", 15)
        left: list[int] = []
        drainer = threading.Thread(target=lambda: left.append(st.drain(30)), daemon=True)
        began = time.monotonic()
        drainer.start()
        # Load balancers and readiness probes see the drain at once.
        wait_for(lambda: _healthz(st) == 503, "/healthz to turn 503", 2)
        drainer.join(40)
        stream.join(10)
        assert left == [0]
        assert stream.error is None
        assert stream.data.rstrip().endswith(b'data: {"type":"message_stop"}')
        assert b"event: error" not in stream.data
        print(f"drain waited {time.monotonic() - began:.1f}s for the open stream")


def test_streams_past_the_drain_timeout_end_in_format(tmp_path: Path) -> None:
    with running_stack(tmp_path, response_processing="always") as st:
        stream = RawStream(st, 2000)  # far longer than the drain allows
        stream.start()
        wait_for(stream.started.is_set, "the stream to start", 15)
        assert st.drain(1.0) == 1
        stopped = time.monotonic()
        st.stop()
        stream.join(15)
        assert time.monotonic() - stopped < 10
        assert stream.error is None, stream.error
        # The last event is Anthropic's error event, which ends a stream validly.
        last = stream.data.rstrip().rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"event: error\n"), last
        assert b"shutting down" in last
        # The SDK reads it as an error, not as a cut connection.
        assert b"message_stop" not in stream.data


def test_the_sdk_sees_the_shutdown_as_an_api_error(tmp_path: Path) -> None:
    with running_stack(tmp_path, response_processing="always") as st:
        client = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
        seen: list[str] = []
        started = threading.Event()

        def read() -> None:
            try:
                with client.messages.stream(
                    model=MODEL,
                    max_tokens=4096,
                    messages=[{"role": "user", "content": "Count to 2000"}],
                    extra_headers={"x-mock-chunk-delay-ms": "20"},
                ) as events:
                    for _ in events.text_stream:
                        started.set()
            except anthropic.APIStatusError as exc:
                seen.append(str(exc.message))
            except Exception as exc:
                seen.append(f"unexpected {type(exc).__name__}")
            finally:
                started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(started.is_set, "the stream to start", 15)
        st.drain(0.5)
        st.stop()
        reader.join(15)
        assert len(seen) == 1 and "shutting down" in seen[0], seen


def test_sigterm_to_run_drains_then_exits(tmp_path: Path) -> None:
    """What a Kubernetes rolling update or `docker stop` does to `llm-gateway run`."""
    env = {
        **os.environ,
        "GATEWAY_PORT": str(free_port()),
        "ENVOY_ADMIN_PORT": str(free_port()),
        "EXTPROC_PORT": str(free_port()),
        "MOCK_LLM_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": "0",
        "RESPONSE_PROCESSING": "always",
        "AUDIT_DB": str(tmp_path / "audit.db"),
    }
    for name in ("GATEWAY_KEYS_FILE", "GATEWAY_API_KEYS", "EXTPROC_WORKERS", "POLICY_CONFIG"):
        env.pop(name, None)
    gateway = GatewayRun(env, tmp_path)
    try:
        base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        stream = RawStream(base, 100)
        stream.start()
        wait_for(stream.started.is_set, "the stream to start", 15)
        gateway.proc.send_signal(signal.SIGTERM)
        gateway.wait_count("llm-gateway: draining", 1)
        stream.join(30)
        assert stream.error is None
        assert stream.data.rstrip().endswith(b'data: {"type":"message_stop"}')
        assert gateway.proc.wait(timeout=30) == 0
        gateway.wait_count("llm-gateway: drained (0 streams ended early)", 1)
    finally:
        gateway.stop()
