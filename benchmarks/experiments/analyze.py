"""Per-variant figures over several grpc_floor.py result files.

CPU per message depends on the rest of the machine: on this 2-core VM it is ~10-15 %
*lower* while other work keeps the CPUs busy (fewer idle wake-ups). So the table gives
every run's median, and the median of the quiet runs alone (other work < 0.25 cores).

    python -m benchmarks.experiments.analyze benchmarks/experiments/results/floor*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

QUIET_CORES = 0.25


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "—"


def runs(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            point = row["point"]
            if isinstance(row["run"], int) and point.get("extproc_cpu_us_per_message"):
                out.setdefault(row["variant"], []).append(point)
    return out


def table(by_variant: dict[str, list[dict[str, Any]]], baseline: str) -> str:
    quiet_base = [
        p["extproc_cpu_us_per_message"]
        for p in by_variant.get(baseline, [])
        if p["cores"]["other"] < QUIET_CORES
    ]
    lines = [
        "| variant | runs | µs/msg median [min-max] | µs/event median | other cores median "
        f"| quiet runs | µs/msg quiet median | quiet vs {baseline} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, points in by_variant.items():
        per_msg = [p["extproc_cpu_us_per_message"] for p in points]
        per_event = [p["cpu_us_per_event"]["extproc"] for p in points]
        other = [p["cores"]["other"] for p in points]
        quiet = [
            p["extproc_cpu_us_per_message"] for p in points if p["cores"]["other"] < QUIET_CORES
        ]
        delta = "—"
        if quiet and quiet_base:
            diff = statistics.median(quiet) - statistics.median(quiet_base)
            delta = f"{diff:+.1f} ({100 * diff / statistics.median(quiet_base):+.0f}%)"
        lines.append(
            f"| {name} | {len(points)} | {_median(per_msg)} [{min(per_msg):.1f}-{max(per_msg):.1f}]"
            f" | {_median(per_event)} | {statistics.median(other):.2f} | {len(quiet)} "
            f"| {_median(quiet)} | {delta} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--baseline", default="echo_aio")
    args = parser.parse_args()
    print(table(runs(args.results), args.baseline))


if __name__ == "__main__":
    main()
