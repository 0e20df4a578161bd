"""Requests as a client sees them: when each piece of the answer arrived and how it ended.

The HTTP/1.1 exchange is the benchmark's (`benchmarks.client`); what the soak adds is a
reader that stamps every arrival, so a scenario can tell how long a client went without
hearing anything (a hang) and how long after the last data its outcome came.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import SupportsIndex

from benchmarks.client import Connection, build_request


@dataclass
class Outcome:
    """One request's answer, or the error the client got instead."""

    rid: str
    status: int  # 0: no response head arrived
    body: bytes
    started: float
    ended: float
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each read
    error: str | None = None  # connection error, reset or timeout
    # With an error: every byte that did arrive, as on the wire (chunk framing included).
    partial: bytes = b""

    @property
    def latency_s(self) -> float:
        return self.ended - self.started

    @property
    def first_byte(self) -> float | None:
        return self.arrivals[0] if self.arrivals else None

    def silence_after(self, moment: float) -> float:
        """The longest time after `moment` (or its start, if later) this client went
        without a byte or its outcome."""
        moment = max(moment, self.started)
        if self.ended <= moment:
            return 0.0
        times = [moment, *(t for t in self.arrivals if t > moment), self.ended]
        return max(b - a for a, b in itertools.pairwise(times))

    @property
    def outcome_delay_s(self) -> float:
        """From the data before the outcome to the outcome: for an error, the last
        arrival to the error; for an answer, the arrival before its last one."""
        if self.error is not None:
            return self.ended - self.arrivals[-1] if self.arrivals else self.latency_s
        if len(self.arrivals) >= 2:
            return self.arrivals[-1] - self.arrivals[-2]
        return 0.0


class _StampedReader(asyncio.StreamReader):
    def __init__(self, arrivals: list[float], on_data: Callable[[], None] | None) -> None:
        super().__init__(limit=1 << 20)
        self._arrivals = arrivals
        self._on_data = on_data
        self.wire = bytearray()

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self._arrivals.append(time.monotonic())
        self.wire += bytes(data)
        super().feed_data(data)
        if self._on_data is not None:
            self._on_data()


async def send(
    url: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    rid: str,
    timeout_s: float,
    on_data: Callable[[], None] | None = None,
    abandon_after_first_byte: bool = False,
) -> Outcome:
    """POST once on a connection of its own; never raises for what the server did.
    `abandon_after_first_byte`: hang up as soon as anything arrived (a client that
    goes away mid-stream)."""
    raw = build_request(url, path, {**headers, "x-request-id": rid}, body)
    arrivals: list[float] = []
    got_data = asyncio.Event()

    def arrived() -> None:
        got_data.set()
        if on_data is not None:
            on_data()

    conn = Connection(url)
    reader = _StampedReader(arrivals, arrived)
    started = time.monotonic()

    def failed(error: str) -> Outcome:
        return Outcome(rid, 0, b"", started, time.monotonic(), arrivals, error, bytes(reader.wire))

    try:
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.create_connection(lambda: protocol, conn.host, conn.port)
        conn.reader = reader
        conn.writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if abandon_after_first_byte:
            conn.writer.write(raw)
            await asyncio.wait_for(got_data.wait(), timeout_s)
            return failed("abandoned")
        resp = await asyncio.wait_for(conn.request(raw), timeout_s)
    except TimeoutError:
        return failed("timeout")
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return failed(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()
    return Outcome(rid, resp.status, resp.body, started, resp.ended, arrivals)
