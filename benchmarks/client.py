"""A minimal HTTP/1.1 client on asyncio streams: keep-alive, chunked bodies, timings.

Lighter than an HTTP library, so the client takes as little of the shared CPU as
possible, and it records when the first body byte and the last byte arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    body: bytes
    started: float
    first_body: float  # first byte of the body (monotonic clock)
    ended: float

    @property
    def ttfb(self) -> float:
        return self.first_body - self.started

    @property
    def ttlb(self) -> float:
        return self.ended - self.started


def build_request(url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> Response:
        reader, writer = await self._connect()
        started = time.monotonic()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts: list[bytes] = []
        first = 0.0
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass
                    break
                data = await reader.readexactly(size + 2)
                first = first or time.monotonic()
                parts.append(data[:-2])
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, 1 << 16))
                if not data:
                    raise ConnectionError("connection closed mid-body")
                first = first or time.monotonic()
                parts.append(data)
                left -= len(data)
        else:
            while data := await reader.read(1 << 16):
                first = first or time.monotonic()
                parts.append(data)
            headers["connection"] = "close"
        ended = time.monotonic()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, b"".join(parts), started, first or ended, ended)


async def run_requests(
    url: str, raw: bytes, count: int, concurrency: int, per_request_s: float = 60.0
) -> tuple[list[Response], list[str]]:
    """`count` requests over `concurrency` keep-alive connections; (responses, errors)."""
    responses: list[Response] = []
    errors: list[str] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        conn = Connection(url)
        try:
            while remaining > 0:
                remaining -= 1
                try:
                    responses.append(await asyncio.wait_for(conn.request(raw), per_request_s))
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    return responses, errors
