"""The fault suite: `python -m soak.run [--slice] [--output PATH] [--only a,b,...]`
(or `make soak`). Prints a markdown table, writes every figure as JSON, and exits 1
when a loss figure is not 0 or a bound does not hold.

(a) streams through the text policy, (d) judge faults, (e) upstream deaths, (g) file
descriptors and gRPC streams, (b) a worker killed, (c) a drain run in that order on one
supervised stack (mock LLM, two ext_proc workers, Envoy); (f) memory on a stack of its
own, the default path against the benchmark's fast upstream.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.report import machine
from extproc.stack import Stack
from soak import drain, judge, memory, report, resources, streaming, upstream_death, worker_kill
from soak.plan import MODES
from soak.report import Result
from soak.stacks import WORKERS, Context, policy_stack

RESULTS = Path(__file__).resolve().parent / "results"

# On the shared stack, in this order: the kill comes late, the drain last.
ON_STACK: list[tuple[str, str, Callable[[Stack, Context], Result]]] = [
    ("a", "streams through the text policy", streaming.run),
    ("d", "tool-call judge faults", judge.run),
    ("e", "upstream killed mid-stream", upstream_death.run),
    ("g", "file descriptors and ext_proc streams", resources.run),
    ("b", "kill -9 one worker", worker_kill.run),
    ("c", "drain under load", drain.run),
]


def _guarded(key: str, title: str, call: Callable[[], Result], ctx: Context) -> Result:
    ctx.log(f"({key}) {title}")
    started = time.monotonic()
    try:
        res = call()
    except Exception as exc:  # one broken scenario must not hide the others
        traceback.print_exc(file=sys.stderr)
        res = Result(key, title, error=f"{type(exc).__name__}: {exc}")
    res.wall_s = time.monotonic() - started
    ctx.log(f"({key}) {'ok' if res.ok else 'FAILED'} in {res.wall_s:.1f} s")
    return res


def run_all(ctx: Context, only: set[str]) -> list[Result]:
    results: list[Result] = []
    chosen = [s for s in ON_STACK if s[0] in only]
    if chosen:
        stack_res = Result("s", "the supervised stack itself")
        try:
            with policy_stack(ctx) as running:
                for key, title, fn in chosen:
                    results.append(_guarded(key, title, partial(fn, running.stack, ctx), ctx))
                verdict = running.supervisor.verdict
                stack_res.zero(
                    "processes that died (Envoy, mock) or crash-looped", int(verdict is not None)
                )
                if verdict is not None:
                    stack_res.note(verdict)
                stack_res.info(
                    "worker restarts (the kill's included)", running.stack.restarts.total
                )
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            stack_res.error = f"{type(exc).__name__}: {exc}"
        results.append(stack_res)
    if "f" in only:
        results.append(_guarded("f", "memory", lambda: memory.run(ctx), ctx))
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak.run", description=__doc__)
    parser.add_argument("--slice", action="store_true", help="every scenario scaled down (~30 s)")
    parser.add_argument("--output", type=Path, help="JSON file (default results/latest.json; "
                        "the slice: a temporary file)")  # fmt: skip
    parser.add_argument("--only", help="comma-separated scenarios (a-g)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = MODES["slice" if args.slice else "full"]
    only = set(args.only.split(",")) if args.only else set("abcdefg")
    run_dir = Path(tempfile.mkdtemp(prefix=f"soak-{plan.mode}-"))
    output = args.output or (run_dir / "latest.json" if args.slice else RESULTS / "latest.json")
    ctx = Context(plan, run_dir)
    ctx.log(f"{plan.mode} run, logs in {run_dir}")
    started = time.monotonic()
    results = run_all(ctx, only)
    ok = all(r.ok for r in results)
    result: dict[str, Any] = {
        "mode": plan.mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": time.monotonic() - started,
        "machine": machine(),
        "workers": WORKERS,
        "ok": ok,
        "must_be_zero": report.must_be_zero(results),
        "scenarios": {r.key: report.to_json(r) for r in results},
    }
    report.write_json(result, output)
    print(report.render(result, results))
    print(f"\nfigures: {output}")
    if ok and not args.keep_logs:
        shutil.rmtree(run_dir / "policy-stack", ignore_errors=True)
        shutil.rmtree(run_dir / "f", ignore_errors=True)
    else:
        print(f"logs: {run_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
