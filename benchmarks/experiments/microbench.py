"""Per-message protobuf work, timed alone (no gRPC, no I/O): what building and
serializing a `streamed_response` reply, and parsing a `response_body` request, cost in
this process, for the events of the paced stream.

    python -m benchmarks.experiments.microbench
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from benchmarks import scenarios
from benchmarks.experiments.echo_server import body_reply, encoded_body_reply, raw_request
from extproc.pipeline import BodyOut
from extproc.server import _body_replies


def per_call_us(fn: Callable[[], object], items: int, repeat: int = 7) -> float:
    """Best of `repeat` of one pass over the events, per event."""
    number = 20
    best = min(timeit.repeat(fn, number=number, repeat=repeat))
    return best / number / items * 1e6


def main() -> None:
    events = scenarios.anthropic(200).stream_events
    n = len(events)
    requests = [
        ep.ProcessingRequest(response_body=ep.HttpBody(body=e, end_of_stream=False)) for e in events
    ]
    wire = [r.SerializeToString() for r in requests]
    serialize = ep.ProcessingResponse.SerializeToString

    def ours() -> None:  # extproc/server.py: _body_replies, then grpc's serializer
        for e in events:
            for reply in _body_replies(BodyOut(e, False)):
                serialize(reply)

    def echo() -> None:
        for e in events:
            serialize(body_reply(e, False))

    def prebuilt() -> None:
        for e in events:
            encoded_body_reply(e, False)

    def parse() -> None:  # grpc's deserializer, then what server.py reads
        for w in wire:
            req = ep.ProcessingRequest.FromString(w)
            if req.WhichOneof("request") == "response_body":
                _ = (req.response_body.body, req.response_body.end_of_stream)

    def parse_raw() -> None:
        for w in wire:
            raw_request(w)

    size = sum(map(len, events)) / n
    print(f"{n} events, {size:.0f} bytes on average; us per event (best of 7):")
    print("| step | µs |", "|---|---|", sep="\n")
    for name, fn in (
        ("reply: server.py _body_replies + SerializeToString", ours),
        ("reply: nested constructor + SerializeToString (echo)", echo),
        ("reply: hand-encoded bytes (prebuilt)", prebuilt),
        ("request: FromString + WhichOneof + fields", parse),
        ("request: parsed by hand (raw)", parse_raw),
    ):
        print(f"| {name} | {per_call_us(fn, n):.2f} |")


if __name__ == "__main__":
    main()
