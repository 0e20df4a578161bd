"""One real stack per test session: mock LLM + ext_proc server + the real Envoy."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.stack import Stack, free_port, port_in_use

# Small enough to test 413 cheaply, large enough that a 10 MiB request passes.
MAX_REQUEST_BYTES = 12 * 1024 * 1024
MAX_SSE_FRAME_BYTES = 256 * 1024


def run_cli(
    command: str, env: dict[str, str], check: bool = False, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`llm-gateway COMMAND` in a child with exactly `env`, run to its end (a start-up
    failure for `run`)."""
    return subprocess.run(
        [sys.executable, "-m", "extproc", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        cwd=cwd,
    )


def _distinct_ports(workers: int) -> dict[str, int]:
    """Free ports for a stack; ext_proc takes `workers` consecutive ones, none of which
    may be another of the stack's ports."""
    while True:
        ports = {name: free_port() for name in ("gateway_port", "admin_port", "mock_port")}
        first = free_port()
        extproc = set(range(first, first + workers))
        if (
            len(set(ports.values())) == len(ports)
            and extproc.isdisjoint(ports.values())
            and not any(port_in_use("127.0.0.1", p) for p in extproc)
        ):
            return {**ports, "extproc_port": first}


@contextmanager
def running_stack(
    log_dir: Path,
    response_body: bool | None = None,
    extra_env: dict[str, str] | None = None,
    **overrides: object,
) -> Iterator[Stack]:
    """A whole stack on free ports; `overrides` are Settings fields, `extra_env` more
    variables for the children (keys named by a provider's key_env)."""
    values: dict[str, object] = {
        **_distinct_ports(int(str(overrides.get("extproc_workers", 1)))),
        "max_request_bytes": MAX_REQUEST_BYTES,
        "max_sse_frame_bytes": MAX_SSE_FRAME_BYTES,
        **overrides,
    }
    settings = Settings.model_validate(values)
    st = Stack(
        settings,
        log_dir=log_dir,
        envoy_concurrency=1,
        response_body=response_body,
        extra_env=dict(extra_env or {}),
    )
    try:
        st.start(timeout=60)
    except Exception:
        for log in sorted(log_dir.glob("*.log")):
            print(f"----- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every response through ext_proc, so the core's body handling is what is tested;
    # test_fast_path.py covers the default, where noop keeps bodies out of ext_proc.
    with running_stack(tmp_path_factory.mktemp("stack"), response_processing="always") as st:
        yield st


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.base_url


@pytest.fixture(scope="session")
def mock_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.mock_port}"


@pytest.fixture(scope="session")
def admin_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.admin_port}"


@pytest.fixture(scope="session")
def log_dir(stack: Stack) -> Path:
    assert stack.log_dir is not None
    return stack.log_dir


@pytest.fixture(scope="session")
def anthropic_client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)


@pytest.fixture(scope="session")
def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll a condition until it holds; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def envoy_stats(admin_url: str, match: str) -> dict[str, int]:
    text = httpx.get(f"{admin_url}/stats", params={"filter": match}, timeout=5).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out
