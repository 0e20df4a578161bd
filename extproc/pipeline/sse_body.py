"""A streamed (SSE) response body on its way through the policy chain: framing, the
dialect's stream engine, and what a stream that ends badly still needs to be valid for
its API (the dialect says what ends a stream and how an error is written)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson

from extproc.core.request import ApiRequest
from extproc.core.usage import Usage
from extproc.dialects.base import Dialect
from extproc.engine.stream import ForwardEngine, StreamEngine
from extproc.pipeline.bodies import ResponseMode
from extproc.pipeline.replies import BodyOut
from extproc.policies.base import PolicyChain
from extproc.sse import Frame, FrameTooLarge, SSEFramer
from extproc.stream_check import OutputValidator

log = logging.getLogger("extproc.pipeline")


class SseBody:
    """One response stream. After a failure it has already ended the stream with an
    in-format error, and `feed` says so (`end_of_stream`)."""

    mode = ResponseMode.SSE

    def __init__(
        self,
        dialect: Dialect,
        request: ApiRequest,
        chain: PolicyChain,
        max_frame_bytes: int,
        policy_timeout_s: float,
        label: str,
        validate: bool = False,
    ) -> None:
        self.dialect = dialect
        self.framer = SSEFramer(max_frame_bytes)
        # Whether events may be rewritten, added or dropped (else they leave as they came).
        self.rewrites = chain.reads_responses
        # A gate may hold the stream for long (a person decides a tool call): events are
        # then fed one by one, and what they gave is `ready` to go out while it waits.
        self.may_hold = chain.holds_long
        # Whether the engine may await a decision at all (a gate asks a judge): only
        # then can a chunk's work stall, and only then is it timed.
        self.waits = chain.gates_tool_calls
        self._ready: list[bytes] = []
        self.engine: StreamEngine = (
            dialect.stream_engine(chain, request) if self.rewrites else ForwardEngine()
        )
        self.ending = dialect.stream_ending()
        # The gateway asked for the usage report (to count tokens); the client did not.
        self.usage_added = request.usage_added
        self.validator = OutputValidator(dialect.validator(request), request) if validate else None
        self._frames: list[Frame] = []  # the last feed's frames, for the validator
        self.policy_timeout_s = policy_timeout_s
        self.label = label  # "METHOD path", for logs
        self.events_in = 0
        self.terminated = False  # the stream carried its own terminator
        self._unfinished = False  # a feed's engine work began and has not ended
        self.saw_error_payload = False
        self.usage = Usage()

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        out = await self._feed(chunk, end_of_stream)
        if self.validator is not None:
            frames, self._frames = self._frames, []
            self.validator.feed_output(out.data, out.end_of_stream, frames)
        return out

    async def _feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        dialect = self.dialect
        failure: FrameTooLarge | None = None
        try:
            frames = self.framer.feed(chunk) if chunk else []
            if end_of_stream:
                frames += self.framer.flush()
        except FrameTooLarge as exc:
            # Deliver what came complete before the oversized event, then fail.
            log.warning("%s: %s", self.label, exc)
            failure, frames, end_of_stream = exc, exc.frames, False
        for frame in frames:
            if dialect.reports_usage(frame):
                self._read_usage(frame)
            if dialect.ends_stream(frame):
                self.terminated = True
            elif dialect.is_error_payload(frame):
                self.saw_error_payload = True
        if self.usage_added:
            frames = [kept for f in frames if (kept := dialect.unasked_usage(f)) is not None]
        if (
            end_of_stream
            and frames
            and not frames[-1].terminated
            and (self.rewrites or not self.terminated)
        ):
            # The upstream's last event lacks its blank line and something follows it: end
            # it, so what we add is not read as part of it.
            frames[-1] = dataclasses.replace(frames[-1], raw=frames[-1].raw + b"\n\n")
        self.events_in += len(frames)
        if self.validator is not None:
            self._frames = frames
        # Until the engine is done with these frames, a terminator among them has not
        # reached the client: a feed cut short (the process stops) still needs one.
        self._unfinished = True
        try:
            if self.may_hold:
                async with asyncio.timeout(self.policy_timeout_s):
                    data = await self._feed_stepwise(frames, end_of_stream)
            elif self.waits:
                async with asyncio.timeout(self.policy_timeout_s):
                    data = await self.engine.feed(frames)
                    if end_of_stream:
                        data += await self.engine.flush()
            else:
                # Nothing in the chain awaits anything (no gate): no timer per chunk.
                data = await self.engine.feed(frames)
                if end_of_stream:
                    data += await self.engine.flush()
            self._unfinished = False
            self.ending.seen(data)
        except TimeoutError:
            log.error("%s: policy chain timed out", self.label)
            return self._fail_after_ready("a gateway policy did not finish in time")
        except Exception:
            log.exception("%s: policy chain failed", self.label)
            return self._fail_after_ready("a gateway policy failed while processing the response")
        if failure is not None:
            failed = self.fail(f"upstream sent an SSE event larger than {failure.limit} bytes")
            return BodyOut(data + failed.data, True)
        if end_of_stream and not self.terminated:
            data += self._terminator()
        return BodyOut(data, end_of_stream)

    async def _feed_stepwise(self, frames: list[Frame], end_of_stream: bool) -> bytes:
        ready = self._ready
        for frame in frames:
            ready.append(await self.engine.feed([frame]))
        if end_of_stream:
            ready.append(await self.engine.flush())
        data = b"".join(ready)
        ready.clear()
        return data

    def keepalive(self, ping: bool) -> BodyOut:
        """While a chunk is held (a gate waits): what its earlier events gave, which no
        decision can change any more, and with `ping` the API's keepalive after it."""
        if self.ended:
            return BodyOut(b"", False)  # nothing may follow the stream's end
        data = b"".join(self._ready)
        self._ready.clear()
        if ping:
            data += self.dialect.keepalive()
        if data:
            self.ending.seen(data)
            if self.validator is not None:
                self.validator.feed(data, False)
        return BodyOut(data, False)

    def _read_usage(self, frame: Frame) -> None:
        try:
            payload = orjson.loads(frame.data or "")
        except orjson.JSONDecodeError:
            return  # the engine and the validator deal with a broken event
        self.usage = self.usage.merged(self.dialect.usage(payload))

    def _terminator(self) -> bytes:
        """What a stream that ended early still needs to be valid for its format."""
        closing = self.dialect.close_after_error() if self.saw_error_payload else None
        if closing is not None:
            return closing
        log.warning("%s: upstream stream ended before its terminator", self.label)
        return self.ending.error("upstream ended the stream before it was complete")

    async def end_now(self, message: str, timeout_s: float) -> BodyOut:
        """End the stream before the upstream does (the gateway shuts down): what the
        engine holds back goes out first, then an in-format error that ends it. A
        stream that already carried its own terminator just ends: nothing may follow."""
        if self.ended:
            return BodyOut(b"", True)
        out = await self._end_now(message, timeout_s)
        if self.validator is not None:
            self.validator.feed(out.data, out.end_of_stream)
        return out

    async def _end_now(self, message: str, timeout_s: float) -> BodyOut:
        # Events a held chunk gave before its work was stopped are final: they go first.
        data = b"".join(self._ready)
        self._ready.clear()
        try:
            async with asyncio.timeout(timeout_s):
                data += await self.engine.flush()
        except Exception:
            log.warning("%s: held-back events dropped at shutdown", self.label)
        self.ending.seen(data)
        return BodyOut(data + self.fail(message).data, True)

    def _fail_after_ready(self, message: str) -> BodyOut:
        """What events before the failing one gave (final already), then the error."""
        data = b"".join(self._ready)
        self._ready.clear()
        self.ending.seen(data)
        return BodyOut(data + self.fail(message).data, True)

    def fail(self, message: str) -> BodyOut:
        """An in-format error event that ends the stream."""
        self.terminated = True
        self._unfinished = False
        return BodyOut(self.ending.error(message), True)

    @property
    def ended(self) -> bool:
        """Whether the client has had the stream's terminator (the upstream's, passed
        on by a finished feed, or the gateway's own error)."""
        return self.terminated and not self._unfinished

    @property
    def violations(self) -> int | None:
        return None if self.validator is None else self.validator.count

    def close(self) -> None:
        """Release pending policy work."""
        self.engine.close()
        self.engine = ForwardEngine()
