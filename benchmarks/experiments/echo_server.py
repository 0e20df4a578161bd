"""A minimal ext_proc servicer: the gRPC floor under our pipeline.

Answers request_headers / response_headers with an empty HeadersResponse, request_body
with an empty BodyResponse, each response_body chunk with a `streamed_response` echo of
it, response_trailers with TrailersResponse (after an empty end-of-stream chunk when
the body did not end yet). Variants (see `--help`): grpc.aio or the sync server, uvloop
or asyncio's own loop, extra server options, the reader/writer API instead of an async
generator, replies pre-serialized by hand (identity response serializer).

    python -m benchmarks.experiments.echo_server --address 127.0.0.1:50051 [options]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any, TypeAlias

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
# The options of extproc/server.py start_server (its limit: 32 MiB + 1 MiB of slack).
LIMIT = 33 * 1024 * 1024
BASE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", LIMIT),
    ("grpc.max_send_message_length", LIMIT),
    ("grpc.max_concurrent_streams", 10_000),
    ("grpc.so_reuseport", 0),
]

Reply: TypeAlias = ep.ProcessingResponse | bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def encoded_body_reply(body: bytes, end_of_stream: bool) -> bytes:
    """ProcessingResponse{response_body{response{body_mutation{streamed_response{body,
    end_of_stream}}}}} in protobuf wire format (field numbers 4, 1, 3, 3; 1, 2)."""
    inner = (_field(0x0A, body) if body else b"") + (b"\x10\x01" if end_of_stream else b"")
    return _field(0x22, _field(0x0A, _field(0x1A, _field(0x1A, inner))))


def body_reply(body: bytes, end_of_stream: bool) -> ep.ProcessingResponse:
    """The same reply built as extproc/server.py builds it."""
    streamed = ep.StreamedBodyResponse(body=body, end_of_stream=end_of_stream)
    mutation = ep.BodyMutation(streamed_response=streamed)
    return ep.ProcessingResponse(
        response_body=ep.BodyResponse(response=ep.CommonResponse(body_mutation=mutation))
    )


def check_encoding() -> None:
    for sample in (b"", b"data: x\n\n" * 30):
        for eos in (False, True):
            req = ep.ProcessingRequest(response_body=ep.HttpBody(body=sample, end_of_stream=eos))
            if raw_request(req.SerializeToString()) != ("response_body", sample, eos):
                raise AssertionError("hand parsing differs")
    for body in (b"", b"x", b"event: ping\ndata: {}\n\n" * 20, b"y" * 70_000):
        for eos in (False, True):
            want = body_reply(body, eos).SerializeToString()
            if encoded_body_reply(body, eos) != want:
                raise AssertionError(f"hand encoding differs for {len(body)} bytes, eos={eos}")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, payload) of each top-level field: bytes, or an int for varints."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield key >> 3, value
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            yield key >> 3, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield key >> 3, data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"wire type {wire}")


# ProcessingRequest's oneof `request`, by field number.
REQUEST_KINDS = {
    2: "request_headers",
    3: "response_headers",
    4: "request_body",
    5: "response_body",
    6: "request_trailers",
    7: "response_trailers",
}


def raw_request(data: bytes) -> tuple[str, bytes, bool]:
    """The kind of a serialized ProcessingRequest; for bodies, the chunk and its
    end_of_stream (HttpBody fields 1, 2)."""
    for number, payload in _fields(data):
        kind = REQUEST_KINDS.get(number)
        if kind is None:
            continue
        body, eos = b"", False
        if kind in ("request_body", "response_body"):
            assert isinstance(payload, bytes)
            for inner, value in _fields(payload):
                if inner == 1 and isinstance(value, bytes):
                    body = value
                elif inner == 2:
                    eos = bool(value)
        return kind, body, eos
    return "", b"", False


class Echo:
    """The replies, as messages or (prebuilt) as bytes."""

    def __init__(self, prebuilt: bool) -> None:
        self.prebuilt = prebuilt
        fixed = {
            "request_headers": ep.ProcessingResponse(request_headers=ep.HeadersResponse()),
            "response_headers": ep.ProcessingResponse(response_headers=ep.HeadersResponse()),
            "request_body": ep.ProcessingResponse(request_body=ep.BodyResponse()),
            "request_trailers": ep.ProcessingResponse(request_trailers=ep.TrailersResponse()),
            "response_trailers": ep.ProcessingResponse(response_trailers=ep.TrailersResponse()),
        }
        self.fixed: dict[str, Reply] = (
            {k: v.SerializeToString() for k, v in fixed.items()} if prebuilt else dict(fixed)
        )
        self.body: Callable[[bytes, bool], Reply] = encoded_body_reply if prebuilt else body_reply

    def replies(self, req: ep.ProcessingRequest | bytes, ended: list[bool]) -> list[Reply]:
        if isinstance(req, bytes):
            kind, body, eos = raw_request(req)
        else:
            kind = req.WhichOneof("request")
            if kind == "response_body":
                body, eos = req.response_body.body, req.response_body.end_of_stream
        if kind == "response_body":
            ended[0] = eos
            return [self.body(body, eos)]
        if kind == "response_trailers" and not ended[0]:
            ended[0] = True
            return [self.body(b"", True), self.fixed[kind]]
        return [self.fixed[kind]] if kind in self.fixed else []


def _handler(behaviour: Callable[..., Any], prebuilt: bool, raw: bool) -> grpc.GenericRpcHandler:
    method = grpc.stream_stream_rpc_method_handler(
        behaviour,
        request_deserializer=(lambda b: b) if raw else ep.ProcessingRequest.FromString,
        response_serializer=(lambda b: b) if prebuilt else ep.ProcessingResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"Process": method})


async def serve_aio(args: argparse.Namespace, options: list[tuple[str, Any]]) -> None:
    echo = Echo(args.prebuilt)

    async def process(
        requests: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Reply]:
        ended = [False]
        async for req in requests:
            for reply in echo.replies(req, ended):
                yield reply

    async def process_rw(_: Any, context: grpc.aio.ServicerContext) -> None:
        ended = [False]
        while True:
            req = await context.read()
            if req is grpc.aio.EOF:
                return
            for reply in echo.replies(req, ended):
                await context.write(reply)

    server = grpc.aio.server(options=options)
    behaviour = process_rw if args.rw else process
    server.add_generic_rpc_handlers((_handler(behaviour, args.prebuilt, args.raw),))
    checks = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    if server.add_insecure_port(args.address) == 0:
        raise OSError(f"cannot listen on {args.address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def serve_sync(args: argparse.Namespace, options: list[tuple[str, Any]]) -> None:
    echo = Echo(args.prebuilt)

    def process(requests: Iterator[ep.ProcessingRequest], context: grpc.ServicerContext) -> Any:
        ended = [False]
        for req in requests:
            yield from echo.replies(req, ended)

    pool = futures.ThreadPoolExecutor(max_workers=args.max_workers)
    server = grpc.server(pool, options=options)
    server.add_generic_rpc_handlers((_handler(process, args.prebuilt, args.raw),))
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    if server.add_insecure_port(args.address) == 0:
        raise OSError(f"cannot listen on {args.address}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


def _option(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    return name, int(value) if value.lstrip("-").isdigit() else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="host:port or unix:/path")
    parser.add_argument("--server", choices=("aio", "sync"), default="aio")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--max-workers", type=int, default=80, help="sync server threads")
    parser.add_argument(
        "--option",
        action="append",
        type=_option,
        default=[],
        help="extra server option name=value (repeatable)",
    )
    parser.add_argument("--rw", action="store_true", help="aio: context.read/write API")
    parser.add_argument("--prebuilt", action="store_true", help="hand-encoded reply bytes")
    parser.add_argument("--raw", action="store_true", help="requests parsed by hand")
    args = parser.parse_args()
    check_encoding()
    options = BASE_OPTIONS + args.option
    if args.server == "sync":
        serve_sync(args, options)
    elif args.loop == "uvloop":
        import uvloop

        uvloop.run(serve_aio(args, options))
    else:
        asyncio.run(serve_aio(args, options))


if __name__ == "__main__":
    main()
