"""The shape every stream engine has, and the one that changes nothing.

A stream engine takes one response's SSE frames in arrival order and returns the bytes
for the client, in the shape of httpx's content decoders: `feed` as frames arrive,
`flush` once the upstream is done (what was held back comes out), `close` when the
request goes away whatever its state (pending policy work is cancelled).
"""

from __future__ import annotations

from typing import Protocol

from extproc.sse import Frame


class StreamEngine(Protocol):
    async def feed(self, frames: list[Frame]) -> bytes: ...

    async def flush(self) -> bytes: ...

    def close(self) -> None: ...


class ForwardEngine:
    """For a chain that reads no responses: every event leaves as its original bytes,
    unparsed."""

    async def feed(self, frames: list[Frame]) -> bytes:
        return b"".join(frame.raw for frame in frames)

    async def flush(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
