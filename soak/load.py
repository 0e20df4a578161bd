"""Many text streams at once through the gateway, and what they add up to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from soak.client import Outcome, send
from soak.streams import (
    PATHS,
    SHAPES,
    Check,
    Faults,
    check_stream,
    counting_text,
    headers,
    text_request,
)


@dataclass(frozen=True)
class TextStream:
    """One stream: what it asks and what the mock will send back."""

    rid: str
    api: str
    text: str
    deltas: int
    headers: dict[str, str]
    body: bytes

    def check(self, outcome: Outcome) -> Check:
        return check_stream(self.api, outcome.status, outcome.body, self.text, self.deltas)


def text_streams(
    name: str,
    count: int,
    deltas: int,
    key: str,
    delay_ms: int = 0,
    more_headers: dict[str, str] | None = None,
) -> list[TextStream]:
    """`count` streams of `deltas` text deltas each, Anthropic and OpenAI in turn, each
    under its own random chunking."""
    out = []
    for i in range(count):
        api = ("anthropic", "openai")[i % 2]
        text = counting_text(1 + i * 10_000, deltas)
        extra = {"x-mock-chunking": f"random:{name}-{i}", **(more_headers or {})}
        if delay_ms:
            extra["x-mock-chunk-delay-ms"] = str(delay_ms)
        body = text_request(api, text)
        out.append(TextStream(f"soak-{name}-{i}", api, text, deltas, headers(key, **extra), body))
    return out


class Started:
    """The streams that are under way (`reads` pieces of their answer arrived: the
    head, then events); `wait` until all of them are."""

    def __init__(self, count: int, reads: int = 3) -> None:
        self.reads: dict[str, int] = {}
        self.count = count
        self.enough = reads
        self.ids: set[str] = set()
        self._all = asyncio.Event()

    def add(self, rid: str) -> None:
        self.reads[rid] = self.reads.get(rid, 0) + 1
        if self.reads[rid] == self.enough:
            self.ids.add(rid)
            if len(self.ids) >= self.count:
                self._all.set()

    async def wait(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._all.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


async def run_streams(
    url: str, streams: list[TextStream], timeout_s: float, started: Started | None = None
) -> list[Outcome]:
    """All of them at once; `started` learns which ones received something."""

    def sender(s: TextStream) -> asyncio.Future[Outcome]:
        seen = None if started is None else (lambda: started.add(s.rid))
        return asyncio.ensure_future(
            send(url, PATHS[s.api], s.headers, s.body, s.rid, timeout_s, on_data=seen)
        )

    return list(await asyncio.gather(*(sender(s) for s in streams)))


@dataclass
class Tally:
    streams: int = 0
    complete: int = 0
    errors: int = 0  # connection errors, resets, timeouts
    timeouts: int = 0
    faults: Faults = field(default_factory=Faults)
    events: int = 0  # text deltas and other events the streams should carry
    problems: list[str] = field(default_factory=list)


def tally(streams: list[TextStream], outcomes: list[Outcome]) -> Tally:
    out = Tally()
    for stream, outcome in zip(streams, outcomes, strict=True):
        out.streams += 1
        out.events += stream.deltas + len(SHAPES[stream.api])
        if outcome.error is not None:
            out.errors += 1
            out.timeouts += outcome.error == "timeout"
            out.problems.append(f"{stream.rid}: {outcome.error}")
            continue
        check = stream.check(outcome)
        out.complete += check.complete
        out.faults += check.faults
        if check.problem is not None:
            out.problems.append(f"{stream.rid}: {check.problem}")
    return out
