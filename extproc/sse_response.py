"""A streamed (SSE) response body on its way through the policy chain: framing, the
stream engine, and what a stream that ends badly still needs to be valid for its API.

Free of gRPC and Envoy types; the pipeline feeds it chunks and forwards what it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re

from extproc.apis.errors import stream_error
from extproc.apis.kind import ApiKind
from extproc.engine.anthropic_stream import AnthropicStreamEngine
from extproc.engine.openai_stream import OpenAIStreamEngine
from extproc.events import StreamEvent
from extproc.policies.base import ApiRequest, PolicyChain
from extproc.sse import Frame, FrameTooLarge, SSEFramer

log = logging.getLogger("extproc.pipeline")

_ANTHROPIC_END = re.compile(r'\{\s*"type"\s*:\s*"(?:message_stop|error)"')


def ends_stream(frame: Frame) -> bool:
    """Whether this event is the stream's own terminator (Anthropic message_stop or error,
    named by `event:` or only by the payload's type; OpenAI's [DONE])."""
    if frame.event is not None:
        return frame.event in ("message_stop", "error")
    data = frame.data
    return data is not None and (data == "[DONE]" or _ANTHROPIC_END.match(data) is not None)


class SseResponse:
    """One response stream. `feed` returns the bytes for the client and whether they end
    the stream; after a failure it has already ended it with an in-format error."""

    def __init__(
        self,
        request: ApiRequest,
        chain: PolicyChain,
        max_frame_bytes: int,
        policy_timeout_s: float,
        label: str,
    ) -> None:
        self.api = request.api
        self.framer = SSEFramer(max_frame_bytes)
        self.engine: AnthropicStreamEngine | OpenAIStreamEngine | None = None
        if not chain.passthrough:
            engine_class = (
                AnthropicStreamEngine if self.api is ApiKind.ANTHROPIC else OpenAIStreamEngine
            )
            self.engine = engine_class(chain, request)
        self.policy_timeout_s = policy_timeout_s
        self.label = label  # "METHOD path", for logs
        self.events_in = 0
        self.terminated = False  # the stream carried its own terminator
        self.saw_error_payload = False

    async def feed(self, chunk: bytes, end_of_stream: bool) -> tuple[bytes, bool]:
        failure: FrameTooLarge | None = None
        try:
            frames = self.framer.feed(chunk) if chunk else []
            if end_of_stream:
                frames += self.framer.finish()
        except FrameTooLarge as exc:
            # Deliver what came complete before the oversized event, then fail.
            log.warning("%s: %s", self.label, exc)
            failure, frames, end_of_stream = exc, exc.frames, False
        for frame in frames:
            if ends_stream(frame):
                self.terminated = True
            elif frame.data is not None and frame.data.startswith('{"error"'):
                self.saw_error_payload = True
        if (
            end_of_stream
            and frames
            and not frames[-1].terminated
            and (self.engine is not None or not self.terminated)
        ):
            # The upstream's last event lacks its blank line and something follows it: end
            # it, so what we add is not read as part of it.
            frames[-1] = dataclasses.replace(frames[-1], raw=frames[-1].raw + b"\n\n")
        self.events_in += len(frames)
        try:
            async with asyncio.timeout(self.policy_timeout_s):
                if self.engine is None:
                    data = b"".join(f.raw for f in frames)
                else:
                    events = [StreamEvent.from_frame(self.api, f) for f in frames]
                    data = await self.engine.feed(events)
                    if end_of_stream:
                        data += await self.engine.finish()
        except TimeoutError:
            log.error("%s: policy chain timed out", self.label)
            return self.fail("a gateway policy did not finish in time"), True
        except Exception:
            log.exception("%s: policy chain failed", self.label)
            return self.fail("a gateway policy failed while processing the response"), True
        if failure is not None:
            failed = self.fail(f"upstream sent an SSE event larger than {failure.limit} bytes")
            return data + failed, True
        if end_of_stream and not self.terminated:
            data += self._terminator()
        return data, end_of_stream

    def _terminator(self) -> bytes:
        """What a stream that ended early still needs to be valid for its format."""
        if self.api is ApiKind.OPENAI and self.saw_error_payload:
            return b"data: [DONE]\n\n"
        log.warning("%s: upstream stream ended before its terminator", self.label)
        return stream_error(self.api, "upstream ended the stream before it was complete")

    def fail(self, message: str) -> bytes:
        """An in-format error event that ends the stream."""
        self.terminated = True
        return stream_error(self.api, message)

    def close(self) -> None:
        """Release pending policy work."""
        if self.engine is not None:
            self.engine.close()
        self.engine = None
