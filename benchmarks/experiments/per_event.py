"""Our Python's cost per SSE event, timed alone (no gRPC, no I/O, one core).

The benchmark's own streams (`benchmarks/scenarios.py`: Anthropic 206 events, OpenAI
chat 203, Responses) go through a whole `RequestPipeline` (request headers and body as
Envoy sends them, response headers, then the response body), and every `BodyOut` through
`server._body_replies` and protobuf serialization, as grpc would send it. Chains:

* `noop_streamed`: config/noop.yaml with RESPONSE_PROCESSING=always (as `make bench`);
* `string_replacement`: the bench's own policy file (`scenarios.STRING_REPLACEMENT_YAML`);
* `strict`: config/strict.yaml (stream validation on; the judge is never called on
  text-only streams).

Two chunkings: `burst` (the whole stream in one chunk) and `event` (one event per chunk,
as the paced upstream writes them). Figures are µs of CPU (process time, so other work
on the machine counts less) per upstream event, best of N runs.

    python -m benchmarks.experiments.per_event [--runs 7] [--only strict] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from benchmarks import scenarios
from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.gateway import Gateway, Runtime
from extproc.pipeline import Continue, RequestPipeline
from extproc.server import _body_replies

REPO = Path(__file__).resolve().parents[2]
CHAINS = ("noop_streamed", "string_replacement", "strict")
CHUNKINGS = ("burst", "event")


def runtime(chain: str, directory: Path) -> Runtime:
    if chain == "noop_streamed":
        policy, always = REPO / "config" / "noop.yaml", "always"
    elif chain == "string_replacement":
        policy = directory / "string_replacement.yaml"
        policy.write_text(scenarios.STRING_REPLACEMENT_YAML)
        always = "auto"
    else:
        policy, always = REPO / "config" / "strict.yaml", "auto"
    settings = Settings.model_validate(
        {
            "gateway_keys": (SecretStr(DEV_GATEWAY_KEY),),
            "policy_config": str(policy),
            "response_processing": always,
            "audit_enabled": False,
        }
    )
    env = {**os.environ, **settings.to_env(), "MOCK_LLM_PORT": "9"}
    return Gateway.load(settings, env=env).runtime()


def started(rt: Runtime, api: scenarios.Api) -> RequestPipeline:
    p = RequestPipeline(rt, True)
    headers = {":method": "POST", ":path": api.path, **api.headers()}
    assert isinstance(p.on_request_headers(headers, False), Continue)
    out = asyncio.get_event_loop().run_until_complete(p.on_request_body(api.request))
    assert isinstance(out, Continue), out
    response = {":status": "200", "content-type": "text/event-stream"}
    assert isinstance(p.on_response_headers(response, False), Continue)
    return p


def chunks_of(api: scenarios.Api, chunking: str) -> list[bytes]:
    return [api.stream_body] if chunking == "burst" else list(api.stream_events)


async def _feed(p: RequestPipeline, chunks: list[bytes], serialize: bool) -> bytes:
    out: list[bytes] = []
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        body = await p.on_response_body(chunk, i == last)
        if serialize:
            for reply in _body_replies(body):
                out.append(reply if isinstance(reply, bytes) else reply.SerializeToString())
        else:
            out.append(body.data)
    return b"".join(out)


def measure(
    rt: Runtime, api: scenarios.Api, chunking: str, serialize: bool, runs: int, streams: int
) -> float:
    """Best of `runs` of `streams` streams, µs per upstream event (response body only)."""
    loop = asyncio.get_event_loop()
    chunks = chunks_of(api, chunking)
    best = float("inf")
    for _ in range(runs):
        pipes = [started(rt, api) for _ in range(streams)]
        gc.collect()
        t0 = time.process_time()
        for p in pipes:
            loop.run_until_complete(_feed(p, chunks, serialize))
        best = min(best, time.process_time() - t0)
        for p in pipes:
            p.close()
    return best / streams / api.events * 1e6


def check(rt: Runtime, api: scenarios.Api, chain: str) -> None:
    """The output is what the bench's own checks expect: same for every chunking."""
    loop = asyncio.get_event_loop()
    outs = {
        c: loop.run_until_complete(_feed(started(rt, api), chunks_of(api, c), False))
        for c in CHUNKINGS
    }
    assert outs["burst"] == outs["event"], f"{chain}/{api.name}: chunkings differ"
    if chain == "string_replacement":
        assert scenarios.MATCH_REPLACEMENT.encode() in outs["burst"], f"{api.name}: no rewrite"
    else:  # nothing in the bench text for the others to change
        assert outs["burst"] == api.stream_body, f"{chain}/{api.name}: not byte-identical"


def table(rows: Iterable[tuple[str, list[float]]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for name, vals in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--streams", type=int, default=20, help="streams per run")
    parser.add_argument("--only", default=",".join(CHAINS))
    parser.add_argument("--profile", default="", help="burst|event: loop that case forever")
    args = parser.parse_args(argv)
    asyncio.set_event_loop(asyncio.new_event_loop())
    apis = scenarios.apis()
    chains = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {c: runtime(c, Path(tmp)) for c in chains}
        for c in chains:
            for api in apis.values():
                check(runtimes[c], api, c)
        while args.profile:  # for py-spy: every chain and API, forever
            for c in chains:
                for api in apis.values():
                    measure(runtimes[c], api, args.profile, True, 1, args.streams)
        header = ["chain / chunking", *(f"{a} (+replies)" for a in apis), *apis]
        rows: list[tuple[str, list[float]]] = []
        for c in chains:
            for chunking in CHUNKINGS:
                vals = [
                    measure(runtimes[c], api, chunking, serialize, args.runs, args.streams)
                    for serialize in (True, False)
                    for api in apis.values()
                ]
                rows.append((f"{c} / {chunking}", vals))
                print(table(rows[-1:], header).splitlines()[-1], flush=True)
        print()
        print("µs per upstream event, best of", args.runs, "runs of", args.streams, "streams")
        print(table(rows, header))


if __name__ == "__main__":
    main()
