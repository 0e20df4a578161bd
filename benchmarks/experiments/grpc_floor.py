"""How much of ext_proc's CPU per gRPC message is grpcio, and what other server setups give.

N paced streams (benchmarks/paced.py: the C upstream and client) through the gateway's
Envoy bootstrap, with ext_proc replaced per variant: our real server (RESPONSE_PROCESSING
=always, noop chain) or `echo_server.py` in one of its setups. Per variant and run:
ext_proc CPU us per gRPC message (Envoy's ext_proc counters) and per event, the cores of
ext_proc / Envoy / other work on the machine, and ext_proc's CPU by thread name.

    python -m benchmarks.experiments.grpc_floor [--runs 2] [--hold 10] [--only a,b]
    python -m benchmarks.experiments.grpc_floor --runs 0 --profile real:flamegraph,real:perf

Profiles go to benchmarks/experiments/profile-<variant>.svg / .txt (py-spy) and
/tmp/perf-<variant>.data with its report in /tmp/perf-<variant>.txt (perf).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from benchmarks.gateway import REPO, BenchTarget, Config, start_envoy
from benchmarks.paced import measure_point
from benchmarks.paced_tools import PacedStream, PacedUpstream, build_tools
from benchmarks.plans import MODES, Plan
from benchmarks.procs import Group
from extproc.config import Settings
from extproc.envoy_config import render
from extproc.gateway import Gateway
from extproc.processes import tcp_ready, unix_ready
from extproc.stack import free_port

HERE = Path(__file__).resolve().parent
NOOP = REPO / "config" / "noop.yaml"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    # echo_server.py options; for the real server, real_server.py's
    echo_args: tuple[str, ...] = ()
    real: bool = False
    uds: bool = False


def variants(streams: int) -> list[Variant]:
    opt = "--option"
    return [
        Variant("real", "python -m extproc serve, noop, RESPONSE_PROCESSING=always", real=True),
        Variant("real_uds", "the same over a Unix socket (EXTPROC_UDS_DIR)", real=True, uds=True),
        Variant(
            "real_nochannelz",
            "the real server with grpc.enable_channelz=0 (benchmarks/experiments/real_server.py)",
            (opt, "grpc.enable_channelz=0"),
            real=True,
        ),
        Variant(
            "real_prebuilt",
            "the real server, body replies hand-encoded (benchmarks/experiments/real_server.py)",
            ("--prebuilt",),
            real=True,
        ),
        Variant("echo_aio", "echo servicer, grpc.aio + uvloop, async generator (as ours)"),
        Variant(
            "echo_sync",
            "echo servicer, sync grpc.server",
            ("--server", "sync", "--max-workers", str(streams + 16)),
        ),
        Variant("echo_aio_uds", "echo_aio over a Unix socket", uds=True),
        Variant("echo_aio_asyncio", "echo_aio on asyncio's own loop", ("--loop", "asyncio")),
        Variant("echo_aio_rw", "echo_aio with context.read()/write()", ("--rw",)),
        Variant(
            "echo_aio_throughput",
            "echo_aio, grpc.optimization_target=throughput",
            (opt, "grpc.optimization_target=throughput"),
        ),
        Variant(
            "echo_aio_nobdp", "echo_aio, grpc.http2.bdp_probe=0", (opt, "grpc.http2.bdp_probe=0")
        ),
        Variant(
            "echo_aio_nochannelz",
            "echo_aio, grpc.enable_channelz=0",
            (opt, "grpc.enable_channelz=0"),
        ),
        Variant(
            "echo_aio_prebuilt",
            "echo_aio, replies hand-encoded (identity serializer)",
            ("--prebuilt",),
        ),
        Variant(
            "echo_aio_raw",
            "echo_aio_prebuilt, requests read by hand too (no protobuf at all)",
            ("--prebuilt", "--raw"),
        ),
        Variant(
            "echo_aio_best",
            "echo_aio_prebuilt + context.read/write + grpc.enable_channelz=0",
            ("--prebuilt", "--rw", opt, "grpc.enable_channelz=0"),
        ),
    ]


def match_provider_names(rendered: str, provider_of: dict[str, str]) -> str:
    """Routes match the provider's name in x-gateway-upstream (what the benchmark
    requests carry) instead of the cluster name our ext_proc would set: the echo
    servicer changes no header. The ext_proc filter stays."""
    doc: dict[str, Any] = yaml.safe_load(rendered)
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for net_filter in chain["filters"]:
                for host in net_filter["typed_config"]["route_config"]["virtual_hosts"]:
                    for route in host["routes"]:
                        for header in route.get("match", {}).get("headers", []):
                            exact = header.get("string_match", {}).get("exact")
                            if exact in provider_of:
                                header["string_match"]["exact"] = provider_of[exact]
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class FloorTarget(BenchTarget):
    """A BenchTarget whose ext_proc is the variant's process."""

    variant: Variant = field(default_factory=lambda: Variant("real", "", real=True))
    socket_dir: Path | None = None

    def start(self) -> None:
        v = self.variant
        log_dir = self.run_dir / v.name
        log_dir.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            gateway_port=free_port(),
            admin_port=free_port(),
            extproc_port=free_port(),
            mock_port=free_port(),
            upstream_anthropic_url=self.upstream.url,
            upstream_openai_url=self.upstream.url,
            policy_config=str(NOOP),
            response_processing="always",
            audit_db=str(log_dir / "audit.db"),
            gateway_admin_port=0,
            extproc_max_streams=self.max_streams or 512,
            # A short path: sun_path holds 108 bytes.
            extproc_uds_dir=str(self.socket_dir) if v.uds and self.socket_dir else None,
        )
        address = settings.extproc_address(settings.extproc_port)
        self.group = group = Group(log_dir)
        try:
            if v.real and v.echo_args:  # the real server with changes (real_server.py)
                argv = [sys.executable, "-m", "benchmarks.experiments.real_server", *v.echo_args]
            elif v.real:
                argv = [sys.executable, "-m", "extproc", "serve"]
            else:
                argv = [sys.executable, "-m", "benchmarks.experiments.echo_server"]
                argv += ["--address", address, *v.echo_args]
            self.extproc_pid = group.spawn("extproc", argv, settings.to_env())
            path = settings.extproc_socket(settings.extproc_port)
            group.wait(
                (lambda: unix_ready(path))
                if path is not None
                else (lambda: tcp_ready("127.0.0.1", settings.extproc_port)),
                "ext_proc",
            )
            gateway = Gateway.load(settings)
            rendered = render(gateway)
            if not v.real:
                routes = gateway.router.upstreams.values()
                rendered = match_provider_names(rendered, {u.cluster: u.name for u in routes})
            self.envoy_pid, self.admin_url = start_envoy(
                group, rendered, settings, self.envoy_concurrency
            )
            # Envoy's first gRPC health check marks the ext_proc endpoint healthy.
            time.sleep(1.0)
        except BaseException:
            group.stop()
            raise
        self.url = f"http://127.0.0.1:{settings.gateway_port}"


def main_switches(pid: int) -> int:
    """Context switches of the main thread (the event loop's): one per wake-up or
    preemption. Fewer per message = more messages handled per wake-up."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            total += int(line.split()[1])
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, summed by thread name (schedstat, ns)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The main thread runs the event loop; the others are named by grpc.
                name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
                ns = int((task / "schedstat").read_text().split()[0])
                out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def py_spy(pid: int, duration_s: float, output: Path, fmt: str) -> None:
    """Sample ext_proc's Python threads (native frames too) for `duration_s`."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [binary, "record", "--pid", str(pid), "--native", "--rate", "100"]
    argv += ["--duration", str(round(duration_s)), "--format", fmt, "-o", str(output)]
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)


def perf(pid: int, duration_s: float, output: Path) -> None:
    """Sample every thread of ext_proc, kernel included (perf, 499 Hz), and write the
    shares by thread and by shared object beside `output` (the .data file is kept)."""
    argv = ["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(output)]
    subprocess.run([*argv, "--", "sleep", str(duration_s)], capture_output=True, check=False)
    report = ["perf", "report", "-i", str(output), "--stdio", "--no-children"]
    text = []
    for sort in ("comm", "comm,dso", "dso,sym"):
        done = subprocess.run(
            [*report, "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
            capture_output=True,
            text=True,
            check=False,
        )
        text.append(f"## perf report --sort {sort}\n{done.stdout}")
    output.with_suffix(".txt").write_text("\n".join(text))


Sampler = Callable[[int, float], None]  # (pid, duration_s)

SAMPLERS: dict[str, Callable[[str], Sampler]] = {
    "flamegraph": lambda v: partial(py_spy, output=HERE / f"profile-{v}.svg", fmt="flamegraph"),
    "raw": lambda v: partial(py_spy, output=HERE / f"profile-{v}.txt", fmt="raw"),
    "perf": lambda v: partial(perf, output=Path(tempfile.gettempdir()) / f"perf-{v}.data"),
}


def run_one(
    variant: Variant,
    upstream: PacedUpstream,
    stream: PacedStream,
    plan: Plan,
    tools: dict[str, Path],
    run_dir: Path,
    socket_dir: Path,
    streams: int,
    sampler: Sampler | None = None,
) -> dict[str, Any]:
    config = Config(variant.name, "extproc", variant.description, NOOP, "always")
    gw = FloorTarget(
        config, upstream, run_dir, max_streams=2 * streams, variant=variant, socket_dir=socket_dir
    )
    gw.start()
    try:
        assert gw.extproc_pid is not None
        files = stream.client_files(run_dir / variant.name, gw.url, "noop_streamed")
        spy = None
        if sampler is not None:
            # In the hold window: after the ramp, for the hold minus a second.
            pid, delay, length = gw.extproc_pid, stream.duration_s + 0.5, plan.paced_hold_s - 1
            spy = threading.Timer(delay, sampler, args=(pid, length))
            spy.start()
        before, switches = thread_cpu(gw.extproc_pid), main_switches(gw.extproc_pid)
        point = measure_point(
            tools["paced_client"],
            stream,
            upstream,
            gw,
            streams,
            plan,
            files,
            run_dir / variant.name,
        )
        after, switches = thread_cpu(gw.extproc_pid), main_switches(gw.extproc_pid) - switches
        if spy is not None:
            spy.join()
        gw.check_alive()
    finally:
        gw.stop()
    point["threads_cpu_s"] = {k: after[k] - before.get(k, 0.0) for k in after}
    # Over the whole point (ramp and drain too), like the thread CPU above.
    counters = point.get("envoy_ext_proc_counters", {})
    messages = counters.get("stream_msgs_sent", 0) + counters.get("stream_msgs_received", 0)
    point["main_switches_per_message"] = switches / messages if messages else None
    return point


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| variant | run | µs/msg | µs/event | msgs in/out | ext_proc cores | Envoy cores "
        "| other cores | delay p50/p99 ms | errors | main-thread switches/msg "
        "| ext_proc threads (share of CPU) |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        p = row["point"]
        if "cpu_s" not in p:
            lines.append(f"| {row['variant']} | {row['run']} | failed: {p.get('problems')} |")
            continue
        msgs = p["extproc_messages_in_window"]
        cores = p["cores"]
        threads = p["threads_cpu_s"]
        total = sum(threads.values()) or 1.0
        top = sorted(threads.items(), key=lambda kv: -kv[1])[:3]
        shares = ", ".join(f"{name} {100 * s / total:.0f}%" for name, s in top)
        delay = p["event_delay_ms"]
        lines.append(
            f"| {row['variant']} | {row['run']} | {_f(p['extproc_cpu_us_per_message'])} "
            f"| {_f(p['cpu_us_per_event']['extproc'])} | {msgs['received']}/{msgs['sent']} "
            f"| {_f(cores['extproc'], 2)} | {_f(cores['gateway_envoy'], 2)} "
            f"| {_f(cores['other'], 2)} | {_f(delay['p50'], 2)}/{_f(delay['p99'], 2)} "
            f"| {p['errors']} | {_f(p.get('main_switches_per_message'), 2)} | {shares} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--runs", type=int, default=2, help="runs of every variant")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument(
        "--profile",
        default="",
        help="variant:flamegraph|raw|perf, comma-separated: one extra run each, sampled",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results" / "floor.json")
    args = parser.parse_args()
    chosen = [v for v in variants(args.streams) if not args.only or v.name in args.only.split(",")]
    plan = replace(MODES["full"], paced_hold_s=args.hold, paced_conc=(args.streams,))
    stream = PacedStream.make(plan.paced_chunks, plan.paced_interval_ms)
    tools = build_tools()
    run_dir = Path(tempfile.mkdtemp(prefix="grpc-floor-"))
    socket_dir = Path(tempfile.mkdtemp(prefix="gf", dir="/tmp"))
    upstream = PacedUpstream(run_dir, tools["paced_upstream"], stream)
    upstream.start()
    rows: list[dict[str, Any]] = []
    try:
        for run in range(1, args.runs + 1):  # every variant once, then again
            for v in chosen:
                started = time.strftime("%H:%M:%S")
                print(f"[{started}] {v.name} run {run}", file=sys.stderr, flush=True)
                point = run_one(v, upstream, stream, plan, tools, run_dir, socket_dir, args.streams)
                rows.append({"variant": v.name, "run": run, "point": point})
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        for item in filter(None, args.profile.split(",")):
            name, _, kind = item.partition(":")
            v = next(v for v in variants(args.streams) if v.name == name)
            print(f"profiling {v.name} ({kind})", file=sys.stderr, flush=True)
            sampler = SAMPLERS[kind](v.name)
            point = run_one(
                v, upstream, stream, plan, tools, run_dir, socket_dir, args.streams, sampler
            )
            rows.append({"variant": v.name, "run": f"profiled ({kind})", "point": point})
    finally:
        upstream.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"streams": args.streams, "hold_s": args.hold, "run_dir": str(run_dir), "rows": rows}
    args.output.write_text(json.dumps(doc, indent=1, default=str))
    print(table(rows))


if __name__ == "__main__":
    main()
