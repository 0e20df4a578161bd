"""Child processes of the benchmark: start, wait until ready, stop; CPU time and memory."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from extproc.processes import stop_processes

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The processes of one role the harness watches: one pid, or several whose CPU time and
# memory are summed (the ext_proc workers of EXTPROC_WORKERS > 1).
Pids = int | tuple[int, ...]


def pids_of(pids: Pids) -> tuple[int, ...]:
    return (pids,) if isinstance(pids, int) else pids


class StartError(RuntimeError):
    pass


@dataclass
class Group:
    """Processes started together and stopped together, each logging to a file."""

    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _files: list[IO[bytes]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        handle = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._files.append(handle)
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.procs[name] = proc
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if check():
                return
            time.sleep(0.05)
        raise StartError(f"{what}: not ready after {timeout:.0f} s (logs in {self.log_dir})")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise StartError(f"{name} exited with code {proc.returncode}:\n{tail}")

    def stop(self, grace: float = 5.0) -> None:
        stop_processes(self.procs, self._files, grace)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def cpu_seconds(pids: Pids) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat;
    of several, their sum."""
    total = 0.0
    for pid in pids_of(pids):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of the man page (utime, stime); `fields` starts at field 3.
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _memory_one(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _sum(items: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        for key, value in item.items():
            out[key] = out.get(key, 0) + value
    return out


def memory_kib(pids: Pids) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc/<pid>/status; of several processes,
    their sums (for VmHWM the sum of each one's peak, which may have come at different
    moments: never below the total's true peak, equal when they peak together)."""
    return _sum(_memory_one(pid) for pid in pids_of(pids))


def memory_each_kib(pids: Pids) -> list[dict[str, int]]:
    """memory_kib of each process, in order."""
    return [_memory_one(pid) for pid in pids_of(pids)]


def reset_peak_rss(pids: Pids) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs) of every process;
    False if any refused."""
    done = True
    for pid in pids_of(pids):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            done = False
    return done


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (everything but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
