"""(g) After a mixed load (complete streams, clients hanging up mid-stream, upstreams
dying or ending early, upstream errors, refused keys), each worker's file descriptors
and Envoy's open ext_proc gRPC streams come back to what they were before."""

from __future__ import annotations

import asyncio

from extproc.stack import Stack
from soak.client import Outcome, send
from soak.load import TextStream, text_streams
from soak.report import Result
from soak.stacks import TEXT_KEY, Context, envoy_gauge, fd_count, open_requests, wait_until, workers
from soak.streams import PATHS

GRPC_STREAMS = "cluster.extproc.upstream_rq_active"
GRPC_CONNECTIONS = "cluster.extproc.upstream_cx_active"
SETTLE_S = 15.0


def _mix(count: int) -> list[tuple[TextStream, bool]]:
    """(stream, hang up after its first byte) of every kind, `count` of each."""
    kinds: dict[str, tuple[str, dict[str, str], bool]] = {
        "complete": (TEXT_KEY, {}, False),
        "abandoned": (TEXT_KEY, {"x-mock-chunk-delay-ms": "20"}, True),
        "dies": (TEXT_KEY, {"x-mock-die-after": "10"}, False),
        "truncated": (TEXT_KEY, {"x-mock-truncate-after": "10"}, False),
        "error-500": (TEXT_KEY, {"x-mock-error": "500"}, False),
        "bad-key": ("sk-soak-nobody", {}, False),
    }
    out = []
    for name, (key, more, hang_up) in kinds.items():
        out += [(s, hang_up) for s in text_streams(f"g-{name}", count, 100, key, 2, more)]
    return out


def _snapshot(st: Stack) -> dict[str, int]:
    values = {f"{name} fds": fd_count(pid) for name, pid in workers(st).items()}
    values[GRPC_STREAMS] = envoy_gauge(st, GRPC_STREAMS)
    return values


def run(st: Stack, ctx: Context) -> Result:
    plan = ctx.plan
    res = Result("g", "file descriptors and ext_proc streams after the load")
    if wait_until(lambda: open_requests(st) == 0, SETTLE_S) is None:
        res.note("requests still open before the load")
    before = _snapshot(st)
    connections = envoy_gauge(st, GRPC_CONNECTIONS)
    mix = _mix(plan.resource_streams)

    async def scenario() -> list[Outcome]:
        sends = [
            send(st.base_url, PATHS[s.api], s.headers, s.body, s.rid, 60.0, None, hang_up)
            for s, hang_up in mix
        ]
        return list(await asyncio.gather(*sends))

    outcomes = asyncio.run(scenario())
    res.zero("requests that hung (no outcome in 60 s)", sum(o.error == "timeout" for o in outcomes))
    settled = wait_until(lambda: _snapshot(st) == before, SETTLE_S, every_s=0.1)
    after = _snapshot(st)
    res.info("requests in the mixed load", len(outcomes))
    for name, start in before.items():
        label = "Envoy's open ext_proc gRPC streams" if name == GRPC_STREAMS else name
        res.info(f"{label}: before / after", f"{start} / {after[name]}")
        res.zero(
            f"{label}: above the start {SETTLE_S:g} s after the load", max(0, after[name] - start)
        )
    res.info("back to the start values after", -1.0 if settled is None else settled, " s")
    res.info(
        "Envoy's ext_proc connections before / after",
        f"{connections} / {envoy_gauge(st, GRPC_CONNECTIONS)}",
    )
    return res
