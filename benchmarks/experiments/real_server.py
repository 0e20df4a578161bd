"""Our real server (`python -m extproc serve`) with changes tried without touching
extproc/: extra gRPC server options (grpc.aio.server wrapped to append them), and
`--prebuilt`: body replies hand-encoded as bytes (extproc.server._body_replies replaced)
and the Process method registered with a serializer that passes bytes through.

    python -m benchmarks.experiments.real_server [--option name=value ...] [--prebuilt]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

import extproc.server
from benchmarks.experiments.echo_server import SERVICE, _option, encoded_body_reply
from extproc.cli import main as extproc_main
from extproc.contract import MAX_REPLY_CHUNK
from extproc.pipeline import BodyOut


def with_options(extra: list[tuple[str, Any]]) -> None:
    make = grpc.aio.server

    def server(*args: Any, options: Any = None, **kwargs: Any) -> grpc.aio.Server:
        return make(*args, options=[*(options or []), *extra], **kwargs)

    grpc.aio.server = server


def _serialize(message: ep.ProcessingResponse | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def body_replies(out: BodyOut) -> Iterator[bytes]:
    """extproc.server._body_replies, as wire bytes."""
    data, eos = out.data, out.end_of_stream
    if not data and not eos:
        return
    if len(data) <= MAX_REPLY_CHUNK:
        yield encoded_body_reply(data, eos)
        return
    pieces = [data[i : i + MAX_REPLY_CHUNK] for i in range(0, len(data), MAX_REPLY_CHUNK)]
    for i, piece in enumerate(pieces):
        yield encoded_body_reply(piece, eos and i == len(pieces) - 1)


def add_servicer(servicer: Any, server: grpc.aio.Server) -> None:
    method = grpc.stream_stream_rpc_method_handler(
        servicer.Process,
        request_deserializer=ep.ProcessingRequest.FromString,
        response_serializer=_serialize,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Process": method}),)
    )


def prebuilt() -> None:
    extproc.server._body_replies = body_replies  # type: ignore[assignment]
    ep_grpc.add_ExternalProcessorServicer_to_server = add_servicer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--option", action="append", type=_option, default=[])
    parser.add_argument("--prebuilt", action="store_true")
    args = parser.parse_args()
    with_options(args.option)
    if args.prebuilt:
        prebuilt()
    sys.exit(extproc_main(["serve"]))


if __name__ == "__main__":
    main()
