"""One SSE event as the engines and policies see it.

An event keeps the exact bytes it arrived as. Its JSON payload is parsed only when
something asks for it, and it is re-serialized only if a policy replaced it, so an
event that nobody touched leaves the gateway byte for byte as it came in. Events the
engines make are serialized by their API's dialect (`Dialect.event`).
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.sse import Frame

_UNPARSED: Any = object()


class StreamEvent:
    __slots__ = ("_payload", "frame", "name", "raw")

    def __init__(self, frame: Frame | None, raw: bytes, name: str | None = None) -> None:
        self.frame = frame
        self.raw = raw
        # The SSE `event:` field, for APIs that name their events.
        self.name = name
        self._payload: Any = _UNPARSED

    @classmethod
    def from_frame(cls, frame: Frame) -> StreamEvent:
        return cls(frame, frame.raw, frame.event)

    @classmethod
    def made(cls, raw: bytes, payload: Any, name: str | None = None) -> StreamEvent:
        """An event the gateway wrote, with its payload already known."""
        event = cls(None, raw, name)
        event._payload = payload
        return event

    @property
    def data(self) -> str | None:
        return self.frame.data if self.frame is not None else None

    @property
    def payload(self) -> Any:
        """The parsed JSON of `data:`; None when there is none or it is not JSON."""
        if self._payload is _UNPARSED:
            data = self.data
            try:
                self._payload = None if data is None else orjson.loads(data)
            except orjson.JSONDecodeError:
                self._payload = None
        return self._payload
