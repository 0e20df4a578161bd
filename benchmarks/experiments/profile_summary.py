"""Where ext_proc's time goes, from a py-spy `--native --format raw` profile.

Each sample is one Python thread's stack (py-spy does not see gRPC's own C threads,
`event_engine`: compare with the per-thread CPU of grpc_floor.py). Idle samples (a
thread waiting in epoll or on a lock) are counted apart. Every busy sample goes to the
innermost frame that names a place: a system call made from grpcio, grpcio's
extension (Cython glue and C core: its symbols are stripped), protobuf, uvloop, or a
Python module; CPython's own frames (ceval, refcounts) are charged to the caller.

    python -m benchmarks.experiments.profile_summary benchmarks/experiments/profile.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>[^()]*)\)$")
IDLE_CALLS = ("epoll_wait", "epoll_pwait", "pthread_cond_timedwait", "PyThread_acquire_lock")
SYSCALLS = ("sendmsg", "eventfd_write", "write", "recv", "read", "syscall", "sem_post")
CPYTHON = ("libpython", "object.h", "ceval", "abstract.c", "genobject.c", "call.c")


def parse(line: str) -> tuple[list[tuple[str, str]], int]:
    stack, count = line.rsplit(" ", 1)
    frames = []
    for raw in stack.split(";"):
        m = FRAME.match(raw)
        frames.append((m["func"], m["where"]) if m else (raw, ""))
    return frames, int(count)


def is_idle(frames: list[tuple[str, str]]) -> bool:
    return any(f.startswith(IDLE_CALLS) for f, _ in frames[-4:])


def module(where: str) -> str:
    path = where.rsplit(":", 1)[0]
    if path.endswith(".py"):
        name = path.removesuffix(".py").replace("/", ".")
        return name.removesuffix(".__init__")
    return path


def place(frames: list[tuple[str, str]]) -> str:
    """The innermost frame that names where the time went."""
    for i in range(len(frames) - 1, -1, -1):
        where = frames[i][1]
        if "libc.so" in where:
            # The outermost of the libc frames here (eventfd_write, not its write).
            j = i
            while j > 0 and "libc.so" in frames[j - 1][1]:
                j -= 1
            names = [f for f, w in frames[j : i + 1] if f in SYSCALLS]
            if not names:
                continue
            caller = frames[j - 1][1] if j else ""
            by = "grpcio" if "cygrpc" in caller else module(caller)
            return f"syscall {names[0]} (from {by})"
        if "cygrpc" in where:
            return "grpcio extension (Cython + C core)"
        if "_message.abi3" in where or "_upb" in where:
            return "protobuf (upb)"
        if "orjson" in where:
            return "orjson"
        if where.startswith(("loop.c", "core.c", "linux.c", "uv", "queue.h")) or "uvloop" in where:
            return "uvloop"
        if where.startswith("_asynciomodule"):
            return "asyncio C (_asynciomodule)"
        if where.startswith("socketmodule"):
            return "socket module"
        if ".py:" in where or where.endswith(".py"):
            return module(where)
        if where.startswith(CPYTHON) or not where:
            continue
    return "other native"


def ours(frames: list[tuple[str, str]]) -> str | None:
    """The innermost frame in extproc/ (inclusive time of our code), or None."""
    for func, where in reversed(frames):
        if where.startswith("extproc/") and not where.startswith(("extproc/cli", "extproc/__")):
            return f"{module(where)}.{func.rsplit('.', 1)[-1]}"
    return None


def summarize(path: Path, top: int) -> str:
    busy: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    idle = total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = parse(line)
        total += count
        if is_idle(frames):
            idle += count
            continue
        busy[place(frames)] += count
        where = ours(frames)
        if where is not None and place(frames).startswith(("extproc", "syscall", "grpcio")):
            where = f"{where} -> {place(frames)}"
        inclusive[where or "(no extproc frame)"] += count
    n = sum(busy.values())
    out = [f"{path}: {total} samples, {idle} idle, {n} busy (100% below)", ""]
    out += ["| where (innermost named frame) | busy samples | % |", "|---|---|---|"]
    out += [f"| {k} | {v} | {100 * v / n:.1f} |" for k, v in busy.most_common(top)]
    out += ["", "| innermost extproc frame -> where | busy samples | % |", "|---|---|---|"]
    out += [f"| {k} | {v} | {100 * v / n:.1f} |" for k, v in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.profile, args.top))


if __name__ == "__main__":
    main()
