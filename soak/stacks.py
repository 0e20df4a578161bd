"""The stacks the scenarios run against, supervised as `llm-gateway run` does, and what
is read from their processes (RSS, file descriptors, Envoy's gauges)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import memory_kib
from extproc.envoy_config.bootstrap import STAT_PREFIX
from extproc.processes import active_requests
from extproc.stack import Stack, free_port
from soak.plan import Plan
from soak.streams import policy_yaml
from tests.helpers.stack import Supervisor, envoy_stats, running_stack

WORKERS = 2
TEXT_KEY = "sk-soak-text"  # the default chain: string_replacement
JUDGE_FAULTS = ("dead", "slow", "garbage")
FAIL_MODES = ("block", "allow")


def judge_chain(fault: str, mode: str | None = None) -> str:
    return f"judge-{fault}" + (f"-{mode}" if mode else "")


def key_of(chain: str) -> str:
    return f"sk-soak-{chain}"


@dataclass
class Context:
    plan: Plan
    run_dir: Path

    def log(self, message: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _judge_entry(chain: str, fault: str, mode: str, timeout_s: float, dead_port: int) -> str:
    port = str(dead_port) if fault == "dead" else "${MOCK_LLM_PORT}"
    # A model of its own per chain: each gets its own circuit breaker (base_url + model).
    # Named after its chain, so the workers' log lines say which chain decided.
    return (
        f"    - type: tool_call_judge\n"
        f"      name: {chain}\n"
        f"      judge: {{base_url: 'http://127.0.0.1:{port}/v1', "
        f"model: judge-soak-{fault}-{mode}, timeout_s: {timeout_s}}}\n"
        f"      on_judge_error: {mode}\n"
    )


def write_config(directory: Path, plan: Plan) -> tuple[Path, Path]:
    """The policy file (default chain: the text policy; a chain per judge fault and fail
    mode) and the keys file (a caller per chain)."""
    directory.mkdir(parents=True, exist_ok=True)
    dead_port = free_port()  # nothing listens there: a dead judge
    healthy = judge_chain("healthy")
    chains = {healthy: _judge_entry(healthy, "healthy", "block", 10.0, dead_port)}
    for fault in JUDGE_FAULTS:
        for mode in FAIL_MODES:
            name = judge_chain(fault, mode)
            chains[name] = _judge_entry(name, fault, mode, plan.judge_timeout_s, dead_port)
    policy = "policies:\n" + policy_yaml() + "chains:\n"
    policy += "".join(f"  {name}:\n{entry}" for name, entry in chains.items())
    callers = [("text", TEXT_KEY, "default")]
    callers += [(name, key_of(name), name) for name in chains]
    keys = "callers:\n" + "".join(
        f"  - {{name: soak-{name}, key_sha256: '{hashlib.sha256(key.encode()).hexdigest()}', "
        f"chain: {chain}}}\n"
        for name, key, chain in callers
    )
    policy_path, keys_path = directory / "policy.yaml", directory / "keys.yaml"
    policy_path.write_text(policy)
    keys_path.write_text(keys)
    return policy_path, keys_path


@dataclass
class Supervised:
    stack: Stack
    supervisor: Supervisor


@contextmanager
def policy_stack(ctx: Context) -> Iterator[Supervised]:
    """Mock LLM, two ext_proc workers and Envoy, with the text policy as default chain
    and the judge chains; supervised for as long as it runs."""
    policy, keys = write_config(ctx.run_dir / "config", ctx.plan)
    log_dir = ctx.run_dir / "policy-stack"
    log_dir.mkdir(parents=True, exist_ok=True)
    with running_stack(
        log_dir, extproc_workers=WORKERS, policy_config=str(policy), keys_file=str(keys)
    ) as st:
        supervisor = Supervisor(st)
        supervisor.start()
        try:
            yield Supervised(st, supervisor)
        finally:
            # Before the stack stops its workers, or they would be started again.
            supervisor.stop()


def workers(st: Stack) -> dict[str, int]:
    return {name: p.pid for name, p in st.procs.items() if name.startswith("extproc")}


def rss_kib(pid: int) -> int:
    return memory_kib(pid)["VmRSS"]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def envoy_gauge(st: Stack, name: str) -> int:
    admin = f"http://127.0.0.1:{st.settings.admin_port}"
    return envoy_stats(admin, f"^{re.escape(name)}$").get(name, 0)


def open_requests(st: Stack) -> int:
    """Requests Envoy's listener is serving."""
    return active_requests(st.settings.admin_port, STAT_PREFIX)


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> float | None:
    """Seconds until `check()` held, or None if it did not within `timeout_s`."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            return None
        time.sleep(every_s)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def request_log(st: Stack, worker: str) -> dict[str, str]:
    """Request id -> outcome, from a worker's one line per request."""
    assert st.log_dir is not None
    path = st.log_dir / f"{worker}.log"
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        found = re.search(r'"id":"([^"]*)".*"outcome":"([^"]*)"', line)
        if found:
            out[found.group(1)] = found.group(2)
    return out
