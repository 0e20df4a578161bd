"""Fallback load generator when wrk is not installed: `python -m benchmarks.pyload SPEC`.

SPEC is the JSON `benchmarks.load` passes; prints one `BENCH_JSON {...}` line with the
same fields as the wrk script. Slower than wrk (Python), so it saturates sooner.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.client import Connection, build_request
from benchmarks.load import MARK


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def run(spec: dict[str, Any], body: bytes) -> dict[str, Any]:
    raw = build_request(spec["url"], spec["path"], spec["headers"], body)
    term = spec["terminator"].encode()
    min_len = int(spec["min_len"])
    limit = int(spec["requests"])
    counts = {"ok": 0, "bad": 0, "read": 0, "connect": 0, "timeout": 0}
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + float(spec["duration_s"])
    issued = 0

    async def worker() -> None:
        nonlocal issued
        conn = Connection(spec["url"])
        while time.monotonic() < deadline and (not limit or issued < limit):
            issued += 1
            try:
                resp = await asyncio.wait_for(conn.request(raw), 60)
            except TimeoutError:
                counts["timeout"] += 1
                conn.close()
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError):
                counts["read"] += 1
                conn.close()
                continue
            good = resp.status == 200 and len(resp.body) >= min_len and resp.body.endswith(term)
            counts["ok" if good else "bad"] += 1
            latencies.append(resp.ttlb)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
    elapsed = time.monotonic() - started
    return {
        **counts,
        "write": 0,
        "duration_us": int(elapsed * 1e6),
        "p50_us": int(_percentile(latencies, 50) * 1e6),
        "p99_us": int(_percentile(latencies, 99) * 1e6),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = asyncio.run(run(spec, Path(spec["body"]).read_bytes()))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
