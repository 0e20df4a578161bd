"""Run-time stream validation (`validate_streams`): checks what the client receives.

For debugging policies and providers: every violation of the stream invariants is
logged with the request's path and model. It costs a second framing of the output; the
grammar itself is the dialect's validator.
"""

from __future__ import annotations

import logging

from extproc.core.request import ApiRequest
from extproc.dialects.base import StreamValidator
from extproc.sse import Frame, SSEFramer

log = logging.getLogger("extproc.validate")


class OutputValidator:
    def __init__(self, validator: StreamValidator, request: ApiRequest) -> None:
        self.validator = validator
        self.request = request
        # The output was bounded on its way in; here nothing is refused.
        self.framer = SSEFramer(max_frame_bytes=1 << 30)
        self.count = 0
        self.violations: list[str] = []

    def feed_output(self, data: bytes, end_of_stream: bool, frames_in: list[Frame]) -> None:
        """What left the gateway, `data`, made of the feed's incoming `frames_in`: a
        chunk that left exactly as its frames came in (nothing rewritten, added or held,
        nothing of an earlier chunk held here) is checked on those frames rather than
        framed a second time."""
        if (
            not end_of_stream
            and frames_in
            and not self.framer.buffered
            and data == b"".join(f.raw for f in frames_in)
        ):
            self.framer.framed_elsewhere()
            for frame in frames_in:
                self.validator.feed(frame)
            return
        self.feed(data, end_of_stream)

    def feed(self, data: bytes, end_of_stream: bool) -> None:
        frames = self.framer.feed(data) if data else []
        if end_of_stream:
            frames += self.framer.flush()
        for frame in frames:
            self.validator.feed(frame)
        if end_of_stream:
            self.violations = self.validator.finish()
            self.count = len(self.violations)
            for violation in self.violations:
                log.warning(
                    "stream violation %s model=%s: %s",
                    self.request.path,
                    self.request.model,
                    violation,
                )
