"""Whole stacks for the end-to-end tests (mock LLM + ext_proc + the real Envoy) on free
local ports, the `llm-gateway` command line in a child, and Envoy's counters."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from extproc.config import Settings
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


def start_logged(st: Stack, timeout: float = 60) -> None:
    """Start `st`; when it fails, print the tail of each child's log before raising."""
    try:
        st.start(timeout=timeout)
    except Exception:
        if st.log_dir is not None:
            for log in sorted(st.log_dir.glob("*.log")):
                print(f"----- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise


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
        # Every stack records its decisions (the hot path as users run it), in its own
        # directory; the admin server only where a test asks for it (a port).
        "audit_db": str(log_dir / "audit.db"),
        "gateway_admin_port": 0,
        **overrides,
    }
    settings = Settings.model_validate(values)
    st = Stack.load(
        settings,
        extra_env=dict(extra_env or {}),
        log_dir=log_dir,
        envoy_concurrency=1,
        response_body=response_body,
    )
    start_logged(st)
    try:
        yield st
    finally:
        st.stop()


def envoy_stats(admin_url: str, match: str) -> dict[str, int]:
    """Envoy's counters and gauges whose names match the regex `match`."""
    text = httpx.get(f"{admin_url}/stats", params={"filter": match}, timeout=5).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


class Supervisor(threading.Thread):
    """What `llm-gateway run` does in its loop: `Stack.supervise` every tenth second."""

    def __init__(self, st: Stack) -> None:
        super().__init__(daemon=True, name="soak-supervisor")
        self.st = st
        self.stopped = threading.Event()
        self.verdict: str | None = None

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.verdict = self.st.supervise() or self.verdict

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
