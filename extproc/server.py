"""The ext_proc gRPC server: one `Process` stream per HTTP request.

This module is the only one that knows Envoy's protobuf types. It turns each
`ProcessingRequest` into a call on the request's `RequestPipeline` and the outcome back
into `ProcessingResponse`s, in the order Envoy requires: headers, body, trailers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

import grpc
import orjson
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import OVERALL_HEALTH
from grpc_health.v1.health import aio as health_aio

from extproc.contract import (
    FACTS_NAMESPACE,
    MAX_CONCURRENT_STREAMS,
    MAX_REPLY_CHUNK,
    REQUEST_SLACK_BYTES,
    SKIP_BODY_MODE,
)
from extproc.gateway import Runtime
from extproc.live import LiveRuntime
from extproc.pipeline import BodyOut, Continue, Immediate, RequestPipeline
from extproc.pipeline.facts import RequestFacts, facts_from
from extproc.processes import unix_ready

log = logging.getLogger("extproc.server")

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
SHUTDOWN_MESSAGE = "the gateway is shutting down; retry the request"
# A held chunk's final part (the text before a tool call waiting for a decision) goes
# out this soon; keepalives follow every KEEPALIVE_INTERVAL_S.
READY_AFTER_S = 0.05
# How long a held chunk's cancelled work may take to unwind (its gates' tasks).
UNWIND_S = 1.0
FIRST = asyncio.FIRST_COMPLETED
# The reply to request headers routed without their body: Envoy keeps it.
_SKIP_BODY = json_format.ParseDict(SKIP_BODY_MODE, processing_mode_pb2.ProcessingMode())


def _headers(msg: ep.HttpHeaders) -> dict[str, str]:
    # Envoy fills raw_value (bytes); value is only used by older Envoys.
    return {
        h.key: h.raw_value.decode("latin-1") if h.raw_value else h.value
        for h in msg.headers.headers
    }


def _facts(req: ep.ProcessingRequest) -> RequestFacts | None:
    """What Envoy's request facts filter read of the body (`contract.FACTS_NAMESPACE`)."""
    if not req.HasField("metadata_context"):
        return None
    namespaces = req.metadata_context.filter_metadata
    if FACTS_NAMESPACE not in namespaces:
        return None
    return facts_from({k: _plain(v) for k, v in namespaces[FACTS_NAMESPACE].fields.items()})


def _plain(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # numbers, lists, objects: nothing the gateway routes by


def _mutation(set_headers: dict[str, str], remove: Iterable[str] = ()) -> ep.HeaderMutation:
    return ep.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=k, raw_value=v.encode("latin-1")),
                append_action=_OVERWRITE,
            )
            for k, v in set_headers.items()
        ],
        remove_headers=list(remove),
    )


def _common(out: Continue) -> ep.CommonResponse:
    common = ep.CommonResponse()
    if out.set_headers or out.remove_headers:
        common.header_mutation.CopyFrom(_mutation(out.set_headers, out.remove_headers))
    if out.body is not None:
        common.body_mutation.body = out.body
    if out.clear_route_cache:
        common.clear_route_cache = True
    return common


def _immediate(out: Immediate) -> ep.ProcessingResponse:
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=out.status),  # type: ignore[arg-type]
            headers=_mutation(out.headers),
            body=out.body,
            details=f"gateway_rejected_{out.status}",
        )
    )


def _body_replies(out: BodyOut) -> Iterable[ep.ProcessingResponse]:
    data = out.data
    if not data and not out.end_of_stream:
        return
    if len(data) <= MAX_REPLY_CHUNK:  # the common case: one reply
        yield _streamed(data, out.end_of_stream)
        return
    last = len(data) - MAX_REPLY_CHUNK
    for i in range(0, len(data), MAX_REPLY_CHUNK):
        yield _streamed(data[i : i + MAX_REPLY_CHUNK], out.end_of_stream and i >= last)


def _streamed(body: bytes, end_of_stream: bool) -> ep.ProcessingResponse:
    # Filled in place through the nested fields: about half the cost of building the
    # four nested messages with constructors (benchmarks/experiments/per_event.py).
    reply = ep.ProcessingResponse()
    streamed = reply.response_body.response.body_mutation.streamed_response
    streamed.SetInParent()  # present even when empty (an empty last reply)
    if body:
        streamed.body = body
    if end_of_stream:
        streamed.end_of_stream = True
    return reply


class ExternalProcessor(ep_grpc.ExternalProcessorServicer):
    def __init__(self, live: LiveRuntime) -> None:
        # Each request takes the runtime current when it starts and keeps it.
        self.live = live
        self.active = 0  # open Process streams, for tests and metrics
        self.max_streams = live.current.settings.extproc_max_streams
        self.keepalive_s = live.current.settings.keepalive_interval_s
        self.health = health_aio.HealthServicer()
        # Set at shutdown: open streams are ended in format at their next chunk.
        self.closing = False
        self._idle = asyncio.Event()  # set whenever no stream is open
        # Set at shutdown too: a call held for a person stops waiting at once.
        self._stopping = asyncio.Event()

    async def shut_down(self, grace_s: float) -> None:
        """Stop taking requests (Envoy's health check sees it within half a second) and
        end the open streams in format as their next chunk arrives, waiting up to
        `grace_s` for them to go."""
        self.closing = True
        self._stopping.set()
        await serving(self.health, False)
        if self.active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)

    async def _end_held(
        self, pipeline: RequestPipeline, work: asyncio.Future[BodyOut], trailers: bool
    ) -> BodyOut:
        """A held chunk at shutdown: what was final goes, then the API's error event."""
        if not work.done():
            # Still unwinding: its gates are cancelled with the pipeline's work.
            pipeline.close()
            work.add_done_callback(_retrieve)
        ended = await pipeline.end_for_shutdown(SHUTDOWN_MESSAGE, 2.0)
        # Trailers get their own reply, which ends the stream.
        return BodyOut(ended.data if ended is not None else b"", not trailers)

    async def Process(
        self,
        request_iterator: AsyncIterator[ep.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ep.ProcessingResponse]:
        runtime = self.live.acquire()
        try:
            pipeline = RequestPipeline(runtime)
        except BaseException:
            self.live.release(runtime)
            raise
        self.active += 1
        self._idle.clear()
        outcome = "ok"
        try:
            async for req in request_iterator:
                kind = req.WhichOneof("request")
                if req.HasField("protocol_config"):
                    # Sent with the first message: whether Envoy streams response bodies.
                    pipeline.envoy_sends_body = req.protocol_config.response_body_mode != 0
                if kind == "request_headers":
                    msg = req.request_headers
                    if self.active > self.max_streams:
                        outcome = "overloaded"
                        yield _immediate(pipeline.refuse_overloaded(_headers(msg), self.active))
                        return
                    hout = pipeline.on_request_headers(
                        _headers(msg), msg.end_of_stream, _facts(req)
                    )
                    if isinstance(hout, Immediate):
                        outcome = "rejected"
                        yield _immediate(hout)
                        return
                    reply = ep.ProcessingResponse(
                        request_headers=ep.HeadersResponse(response=_common(hout))
                    )
                    if hout.skip_body:
                        reply.mode_override.CopyFrom(_SKIP_BODY)
                    yield reply
                elif kind == "request_body":
                    bout = await pipeline.on_request_body(req.request_body.body)
                    if isinstance(bout, Immediate):
                        outcome = "rejected"
                        yield _immediate(bout)
                        return
                    yield ep.ProcessingResponse(
                        request_body=ep.BodyResponse(response=_common(bout))
                    )
                elif kind == "request_trailers":
                    yield ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
                elif kind == "response_headers":
                    msg = req.response_headers
                    rout = pipeline.on_response_headers(_headers(msg), msg.end_of_stream)
                    if isinstance(rout, Immediate):
                        yield _immediate(rout)
                        return
                    yield ep.ProcessingResponse(
                        response_headers=ep.HeadersResponse(response=_common(rout))
                    )
                elif kind in ("response_body", "response_trailers"):
                    # Trailers mark the end of the body when the upstream sends them.
                    trailers = kind == "response_trailers"
                    body = req.response_body
                    feeding = (
                        pipeline.on_response_trailers()
                        if trailers
                        else pipeline.on_response_body(body.body, body.end_of_stream)
                    )
                    if not pipeline.may_hold:
                        out = await feeding
                    else:
                        # A gate may hold this chunk for minutes (a person decides a
                        # tool call): what is final goes out, then keepalives, so
                        # neither the client nor Envoy gives up on a silent stream.
                        work = asyncio.ensure_future(feeding)
                        # Watched from the keepalive phase on: a chunk decided at once goes
                        # out whole even while the process drains.
                        stopping: asyncio.Future[Any] | None = None
                        try:
                            wait, ping = READY_AFTER_S, False
                            while True:
                                waiting = (work,) if stopping is None else (work, stopping)
                                await asyncio.wait(waiting, timeout=wait, return_when=FIRST)
                                if work.done() or (stopping is not None and stopping.done()):
                                    break
                                for reply in _body_replies(pipeline.keepalive(ping)):
                                    yield reply
                                wait, ping = self.keepalive_s, True
                                if stopping is None:
                                    stopping = asyncio.ensure_future(self._stopping.wait())
                        finally:
                            if stopping is not None:
                                stopping.cancel()
                            if not work.done():
                                # The request went away, or the process stops: the wait
                                # ends, and unwinds before the request is recorded.
                                work.cancel()
                                await asyncio.wait((work,), timeout=UNWIND_S)
                        if work.done() and not work.cancelled():
                            out = work.result()
                        elif stopping is not None and stopping.done():
                            # Shutting down: the held call is never released.
                            out = await self._end_held(pipeline, work, trailers)
                        else:
                            out = work.result()  # raises: its gate was cancelled
                    if self.closing and not out.end_of_stream and not trailers:
                        # Shutting down past the drain: this stream ends here, in format.
                        ended = await pipeline.end_for_shutdown(SHUTDOWN_MESSAGE, 2.0)
                        if ended is not None:
                            out = BodyOut(out.data + ended.data, True)
                    for reply in _body_replies(out):
                        yield reply
                    if trailers:
                        yield ep.ProcessingResponse(response_trailers=ep.TrailersResponse())
            if outcome == "ok" and not pipeline.complete:
                # Envoy closed the stream before the response ended: the client or the
                # upstream went away.
                outcome = "incomplete"
        except asyncio.CancelledError:
            # Envoy cancels the stream when the client goes away, and also right after a
            # response we already ended. Either way the pipeline and all it buffered go
            # with this frame.
            outcome = "ok" if pipeline.complete else "cancelled"
            raise
        except Exception:
            outcome = "error"
            log.exception("ext_proc stream failed: %s", orjson.dumps(pipeline.summary()).decode())
            raise
        finally:
            pipeline.close()
            self.active -= 1
            if not self.active:
                self._idle.set()
            try:
                pipeline.finish(outcome)
            except Exception:
                # Observing must never break a request: log, and go on.
                log.exception("recording the request failed")
            try:
                summary = pipeline.summary()
                summary["outcome"] = outcome
                log.info("request %s", orjson.dumps(summary).decode())
            finally:
                # Last: the runtime's policies may be closed once no request holds it.
                self.live.release(runtime)


def _claim_socket(path: str) -> None:
    """Free `path` for this worker: a socket nothing answers on is a dead worker's and
    goes; a live one, or a file that is no socket, is refused (gRPC would bind over a
    live worker's socket and take its traffic)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"cannot listen on {path}: a file that is not a socket is there")
    if unix_ready(path):
        raise OSError(f"cannot listen on {path}: another process listens there")
    os.unlink(path)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read a stopped task's outcome, so its exception is not reported as lost."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("held work ended with an error at shutdown: %r", future.exception())


def serving(health: health_aio.HealthServicer, ready: bool) -> Coroutine[Any, Any, None]:
    """Tell Envoy's health checks whether this worker takes new requests (not while it
    drains at shutdown)."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if ready
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    return health.set(OVERALL_HEALTH, status)


async def start_server(
    runtime: Runtime | LiveRuntime, address: str | None = None
) -> tuple[grpc.aio.Server, ExternalProcessor, int]:
    """Start serving; returns the server, the servicer and the bound port. Settings
    (ports, limits) are the starting runtime's: a reload changes files, not these."""
    live = runtime if isinstance(runtime, LiveRuntime) else LiveRuntime.fixed(runtime)
    settings = live.current.settings
    # gRPC messages carry whole buffered request bodies; leave room for framing.
    limit = settings.max_request_bytes + REQUEST_SLACK_BYTES
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Envoy keeps one HTTP/2 connection with many concurrent streams.
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = ExternalProcessor(live)
    ep_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    # grpc.health.v1, which Envoy asks every half second: a dead or draining worker
    # stops getting requests (extproc/envoy_config/bootstrap.py, the ext_proc cluster).
    health_pb2_grpc.add_HealthServicer_to_server(servicer.health, server)
    await serving(servicer.health, True)
    address = address or settings.extproc_address(settings.extproc_port)
    if address.startswith("unix:"):
        _claim_socket(address.removeprefix("unix:"))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use?")
    await server.start()
    return server, servicer, port
