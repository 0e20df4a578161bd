"""ext_proc's CPU by thread and by kind of work, from a `perf record -g -p PID` file.

Kernel samples are named by the system call they are in (the frame under
do_syscall_64) and what the kernel was doing there: switching threads (`__schedule`),
delivering loopback packets to the peer (`net_rx_action`: the receiver's TCP work,
charged to the sender), waking another thread (`try_to_wake_up`, `__wake_up_common`).
User samples are named by their shared object (user stacks are not unwound: no frame
pointers). Threads: `main` (the event loop), `poller` (grpc.aio's completion-queue
thread), `event_engine` (gRPC core's I/O threads), others by name.

    python -m benchmarks.experiments.perf_summary /tmp/perf-real.data
"""

from __future__ import annotations

import argparse
import subprocess
from collections import Counter
from pathlib import Path

KINDS = (
    ("__schedule", "thread switch"),
    ("net_rx_action", "loopback receive (peer's TCP)"),
    ("try_to_wake_up", "waking a thread"),
    ("__wake_up_common", "waking a thread"),
)


def samples(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(thread label, [(symbol, dso)] innermost first) per sample."""
    argv = ["perf", "script", "-i", str(path), "-F", "comm,pid,tid,ip,sym,dso"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not lines:
            continue
        head = lines[0].split()
        comm, pid_tid = head[0], head[1]
        pid, _, tid = pid_tid.partition("/")
        label = comm if comm != "python" else ("main" if pid == tid else "poller")
        frames = []
        for line in lines[1:]:
            parts = line.split(maxsplit=1)
            rest = parts[1] if len(parts) > 1 else ""
            sym, _, dso = rest.rpartition(" (")
            frames.append((sym.split("+0x")[0], dso.rstrip(")")))
        out.append((label, frames))
    return out


def classify(frames: list[tuple[str, str]]) -> str:
    if not frames:
        return "?"
    sym, dso = frames[0]
    if "kernel" not in dso:
        return f"user: {Path(dso).name or '?'}"
    names = [s for s, _ in frames]
    call = "no syscall (interrupt, preemption)"
    if "do_syscall_64" in names:
        i = names.index("do_syscall_64")
        call = names[i - 1] if i else sym
        if call in ("syscall_exit_to_user_mode", "exit_to_user_mode_loop", "schedule"):
            call = "on syscall exit"
    kind = next((k for marker, k in KINDS if marker in names), "other")
    return f"kernel: {call} / {kind}"


def summarize(path: Path, top: int) -> str:
    data = samples(path)
    n = len(data)
    threads: Counter[str] = Counter(label for label, _ in data)
    kinds: Counter[str] = Counter()
    overall: Counter[str] = Counter()
    for label, frames in data:
        where = classify(frames)
        kinds[f"{label} | {where}"] += 1
        overall[where.split(" / ")[-1] if where.startswith("kernel") else "user space"] += 1
    kernel = sum(v for k, v in kinds.items() if "| kernel:" in k)
    out = [f"{path}: {n} samples; kernel {100 * kernel / n:.0f}%", ""]
    out += ["| thread | % |", "|---|---|"]
    out += [f"| {k} | {100 * v / n:.1f} |" for k, v in threads.most_common()]
    out += ["", "| kind (all threads) | % |", "|---|---|"]
    out += [f"| {k} | {100 * v / n:.1f} |" for k, v in overall.most_common()]
    out += ["", "| thread / where | % |", "|---|---|"]
    out += [f"| {k} | {100 * v / n:.1f} |" for k, v in kinds.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    print(summarize(args.data, args.top))


if __name__ == "__main__":
    main()
