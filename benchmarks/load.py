"""Throughput load: wrk with a Lua script when installed, else a small Python generator.

Both POST the streaming request over `concurrency` keep-alive connections for a time
or for a number of requests, and count a response as bad unless its status is 200, its
body ends with the stream's terminator and is not implausibly short. The generator runs
as a child process; its CPU time is read from RUSAGE_CHILDREN around the run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import Pids, cpu_seconds, machine_busy_seconds

REPO = Path(__file__).resolve().parent.parent
MARK = "BENCH_JSON "
LIMIT_MARK = "BENCH_LIMIT"
# A body shorter than this share of the upstream's is bad (hold-back policies merge
# deltas, so bodies may shrink a little; a cut stream is much shorter).
MIN_BODY_SHARE = 0.8


@dataclass
class Target:
    """What one load run sends: where, which request, and what a good answer ends with."""

    url: str
    path: str
    headers: dict[str, str]
    body: bytes
    terminator: bytes
    min_len: int


@dataclass
class LoadResult:
    tool: str
    concurrency: int
    duration_s: float
    ok: int
    bad: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    loadgen_cpu_s: float = 0.0
    # CPU seconds each watched process used during the run (ext_proc, Envoys...).
    cpu_s: dict[str, float] = field(default_factory=dict)
    # CPU seconds the whole machine was busy: more than the sum of ours means other
    # work shared the CPUs during the run.
    machine_busy_s: float = 0.0

    @property
    def errors(self) -> int:
        return self.bad + sum(self.socket_errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps, "errors": self.errors}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def lua_script(target: Target, body_file: Path, limit_per_thread: int) -> str:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    return f"""
local f = assert(io.open("{body_file}", "rb"))
wrk.method = "POST"
wrk.path = "{target.path}"
wrk.body = f:read("*a")
f:close()
{headers}
local term = {_lua_bytes(target.terminator)}
local min_len = {target.min_len}
local limit = {limit_per_thread}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
end

function response(status, headers, body)
  if status == 200 and #body >= min_len and body:sub(-#term) == term then
    ok = ok + 1
  else
    bad = bad + 1
  end
  if limit > 0 and ok + bad == limit then
    io.write("{LIMIT_MARK}\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local okt, badt = 0, 0
  for _, t in ipairs(threads) do
    okt = okt + t:get("ok")
    badt = badt + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    '{MARK}{{"ok":%d,"bad":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d}}\\n',
    okt, badt, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(MARK):
            parsed: dict[str, Any] = json.loads(line[len(MARK) :])
            return parsed
    raise RuntimeError(f"load generator printed no result:\n{stdout[-2000:]}")


def _run_child(argv: list[str], limit_marks: int) -> tuple[str, float]:
    """Run the generator; with `limit_marks`, interrupt it once every thread hit its
    request limit (wrk keeps running for its -d otherwise). Returns (stdout, CPU s)."""
    # Only this child is reaped in between, so the RUSAGE_CHILDREN delta is its CPU.
    before = _children_cpu()
    # The fallback generator is `-m benchmarks.pyload`: run it from the repository.
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        seen = 0
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(LIMIT_MARK):
                seen += 1
                if seen == limit_marks:
                    # wrk's main thread sleeps for -d whatever its threads do: SIGINT
                    # ends the sleep (wrk then joins the threads and reports).
                    proc.send_signal(signal.SIGINT)
        proc.wait()
    return "".join(lines), _children_cpu() - before


def run_load(
    target: Target,
    concurrency: int,
    *,
    duration_s: float = 5.0,
    requests: int = 0,
    threads: int = 1,
    use_wrk: bool = True,
    max_duration_s: float = 3600.0,
    watch: Mapping[str, Pids] | None = None,
) -> LoadResult:
    """A load phase: for `duration_s`, or until `requests` responses when > 0 (then at
    most `max_duration_s`). `watch`: name -> pid(s) of processes whose CPU time to record
    (several pids: their sum)."""
    threads = max(1, min(threads, concurrency))
    watch = watch or {}
    cpu0 = {name: cpu_seconds(pid) for name, pid in watch.items()}
    busy0 = machine_busy_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(target.body)
        if use_wrk and wrk_available():
            tool = "wrk"
            per_thread = -(-requests // threads) if requests else 0
            script = Path(tmp) / "load.lua"
            script.write_text(lua_script(target, body_file, per_thread))
            run_for = max(1, round(max_duration_s if requests else duration_s))
            argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{run_for}s"]
            argv += ["--timeout", "60s", "-s", str(script), target.url]
            marks = threads if requests else 0
        else:
            tool = "python"
            spec = {**asdict(target), "body": str(body_file), "concurrency": concurrency}
            spec.update(
                terminator=target.terminator.decode(),
                duration_s=max_duration_s if requests else duration_s,
            )
            spec["requests"] = requests
            argv = [sys.executable, "-m", "benchmarks.pyload", json.dumps(spec)]
            marks = 0
        stdout, cpu = _run_child(argv, marks)
    raw = _parse(stdout)
    result = LoadResult(
        tool=tool,
        concurrency=concurrency,
        duration_s=raw["duration_us"] / 1e6,
        ok=raw["ok"],
        bad=raw["bad"],
        socket_errors={k: raw[k] for k in ("connect", "read", "write", "timeout") if raw[k]},
        latency_p50_ms=raw["p50_us"] / 1000,
        latency_p99_ms=raw["p99_us"] / 1000,
        loadgen_cpu_s=cpu,
    )
    result.cpu_s = {name: cpu_seconds(pid) - cpu0[name] for name, pid in watch.items()}
    result.machine_busy_s = machine_busy_seconds() - busy0
    return result


def env_threads() -> int:
    return int(os.environ.get("BENCH_WRK_THREADS", "1"))
