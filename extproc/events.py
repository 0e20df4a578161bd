"""One SSE event as the pipeline and policies see it.

An event keeps the exact bytes it arrived as. Its JSON payload is parsed only when
something asks for it, and it is re-serialized only if a policy replaced it, so an
event that nobody touched leaves the gateway byte for byte as it came in.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.apis.kind import ApiKind
from extproc.sse import Frame

_UNPARSED: Any = object()


class StreamEvent:
    __slots__ = ("_payload", "api", "frame", "raw")

    def __init__(self, api: ApiKind, frame: Frame | None, raw: bytes) -> None:
        self.api = api
        self.frame = frame
        self.raw = raw
        self._payload: Any = _UNPARSED

    @classmethod
    def from_frame(cls, api: ApiKind, frame: Frame) -> StreamEvent:
        return cls(api, frame, frame.raw)

    @classmethod
    def from_payload(cls, api: ApiKind, payload: dict[str, Any]) -> StreamEvent:
        """A new event, serialized the way the API writes it."""
        data = orjson.dumps(payload)
        if api is ApiKind.ANTHROPIC:
            name = str(payload.get("type", "message"))
            raw = b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
        else:
            raw = b"data: " + data + b"\n\n"
        event = cls(api, None, raw)
        event._payload = payload
        return event

    @property
    def data(self) -> str | None:
        return self.frame.data if self.frame is not None else None

    @property
    def name(self) -> str | None:
        """The SSE `event:` field (Anthropic names every event; OpenAI never does)."""
        if self.frame is not None:
            return self.frame.event
        if self.api is ApiKind.ANTHROPIC and isinstance(self._payload, dict):
            return str(self._payload.get("type"))
        return None

    @property
    def is_done(self) -> bool:
        """OpenAI's `data: [DONE]` terminator."""
        return self.frame is not None and self.frame.data == "[DONE]"

    @property
    def payload(self) -> Any:
        """The parsed JSON of `data:`; None when there is none or it is not JSON."""
        if self._payload is _UNPARSED:
            data = self.data
            try:
                self._payload = None if data is None or data == "[DONE]" else orjson.loads(data)
            except orjson.JSONDecodeError:
                self._payload = None
        return self._payload
