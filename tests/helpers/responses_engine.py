"""OpenAI Responses API answers for the engine tests: a plan rendered by the mock LLM as
a stream and as a whole `response` object (same ids, so the two compare), hand-made
events, the stream engine and the pipeline driven the way Envoy would, and what the
client got read back (texts wherever a stream states them, wire problems).

- `rplan()`, `stream_events()`, `stream()`, `response()`: a mock answer.
- `renumber()`, `encode()`: events as the wire carries them.
- `engine_output()`, `through_pipeline()`: what the client gets.
- `texts_everywhere()`, `wire_problems()`: what it got.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import OPENAI_RESPONSES
from extproc.mock_llm import responses_format, responses_stream
from extproc.mock_llm.responses_format import Rendering
from extproc.mock_llm.scenario import Plan
from extproc.policies.base import PolicyChain
from extproc.sse import SSEFramer
from tests.helpers.dialects import api_request
from tests.helpers.engine import plan
from tests.helpers.responses_mock import events, stream_problems
from tests.helpers.runtime import KEY, make_pipeline
from tests.helpers.streams import validate_stream

PATH = OPENAI_RESPONSES.path
SEED = "5eed" * 16
PATCH_TOOL = {"type": "custom", "name": "apply_patch"}
BODY: dict[str, Any] = {"model": "gpt-x", "input": "hi", "stream": True}
# A reasoning model asked for a summary and the encrypted reasoning.
REASONING_BODY: dict[str, Any] = {
    **BODY,
    "reasoning": {"effort": "low", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
}
ITEM_ADDED = "response.output_item.added"
ITEM_DONE = "response.output_item.done"
TERMINAL = ("response.completed", "response.incomplete", "response.failed")

Event = dict[str, Any]


def request_of(body: dict[str, Any] = BODY) -> ApiRequest:
    return api_request(body, OPENAI_RESPONSES)


def rplan(
    text: Sequence[str], tools: Sequence[str] = (), thinking: Sequence[str] | None = None
) -> Plan:
    """These text deltas, then a call of each tool (`{"command": "ls -la /tmp"}`), after
    a reasoning item summarizing `thinking` when given (and the body asks for one)."""
    p = plan(list(text), list(tools))
    if thinking is not None:
        p = dataclasses.replace(p, thinking_chunks=tuple(thinking))
    return p


def rendering(body: dict[str, Any] = BODY) -> Rendering:
    return Rendering.make(body, SEED, created=1)


def stream_events(p: Plan, body: dict[str, Any] = BODY) -> list[Event]:
    """The mock's events for the answer, numbered from 0 (fresh copies)."""
    return copy.deepcopy(responses_stream.stream_events(p, rendering(body)))


def renumber(evs: Iterable[Event], start: int = 0) -> list[Event]:
    """The events with sequence numbers from `start`, one by one."""
    return [{**e, "sequence_number": start + n} for n, e in enumerate(evs)]


def encode(evs: Iterable[Event], line_ending: str = "\n") -> bytes:
    return b"".join(responses_stream.encode(list(evs), line_ending))


def stream(p: Plan, body: dict[str, Any] = BODY, line_ending: str = "\n") -> bytes:
    """The answer as the API streams it."""
    return encode(stream_events(p, body), line_ending)


def response(p: Plan, body: dict[str, Any] = BODY) -> dict[str, Any]:
    """The same answer as a non-streaming `response` object."""
    return responses_format.render_response(p, rendering(body))


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at these offsets (duplicates and out-of-range cuts ignored)."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def engine_output(
    chain: PolicyChain,
    raw: bytes,
    cuts: Iterable[int] = (),
    flush: bool = True,
    request: ApiRequest | None = None,
    dialect: Dialect = OPENAI_RESPONSES,
) -> bytes:
    """The dialect's stream engine (default: the Responses one) fed `raw` cut at `cuts`
    (framed by the project's SSE framer, as the pipeline does), flushed at the end
    unless `flush` is False; `request` must be one of that dialect."""
    engine = dialect.stream_engine(chain, request or request_of())
    framer = SSEFramer(max_frame_bytes=1 << 30)
    out = b""
    try:
        for chunk in chunked(raw, cuts):
            out += await engine.feed(framer.feed(chunk))
        if flush:
            out += await engine.feed(framer.flush())
            out += await engine.flush()
    finally:
        engine.close()
    return out


async def through_pipeline(
    chain: PolicyChain,
    data: bytes,
    cuts: Iterable[int] = (),
    ctype: str = "text/event-stream",
    body: dict[str, Any] = BODY,
) -> bytes:
    """What the client gets when the upstream answers `data` (cut at `cuts`, with this
    content type) to a `/v1/responses` request of `body` under `chain`."""
    pipe = make_pipeline(chain)
    headers = {":method": "POST", ":path": PATH, "content-type": "application/json"}
    pipe.on_request_headers({**headers, "x-api-key": KEY}, False)
    sent = {**body, "stream": ctype == "text/event-stream"}
    await pipe.on_request_body(orjson.dumps(sent))
    pipe.on_response_headers({":status": "200", "content-type": ctype}, False)
    chunks = chunked(data, cuts) or [b""]
    out = bytearray()
    for i, chunk in enumerate(chunks):
        out += (await pipe.on_response_body(chunk, i == len(chunks) - 1)).data
    pipe.close()
    return bytes(out)


# -- what the client got ---------------------------------------------------------------


def payloads(raw: bytes) -> list[Event]:
    return [p for _, p in events(raw)]


def of_type(raw: bytes, kind: str) -> list[Event]:
    return [p for p in payloads(raw) if p.get("type") == kind]


def terminal(raw: bytes) -> Event:
    (end,) = [p for p in payloads(raw) if p.get("type") in TERMINAL]
    return end


def message_text(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item["content"])


def texts_everywhere(raw: bytes, output_index: int) -> dict[str, str]:
    """The text of the message at this output_index wherever the stream states it: its
    deltas joined, `output_text.done`, `content_part.done`, `output_item.done` and the
    terminal event's `response.output` (the item with the same id)."""
    got = payloads(raw)
    at = [p for p in got if p.get("output_index") == output_index]
    (done_item,) = [p["item"] for p in at if p["type"] == ITEM_DONE]
    (final,) = [i for i in terminal(raw)["response"]["output"] if i["id"] == done_item["id"]]
    (text_done,) = [p["text"] for p in at if p["type"] == "response.output_text.done"]
    (part_done,) = [p["part"]["text"] for p in at if p["type"] == "response.content_part.done"]
    return {
        "deltas": "".join(p["delta"] for p in at if p["type"] == "response.output_text.delta"),
        "output_text.done": text_done,
        "content_part.done": part_done,
        "output_item.done": message_text(done_item),
        "response.output": message_text(final),
    }


def sequence_problems(raw: bytes) -> list[str]:
    """Sequence numbers must run on by one from the first one."""
    seqs = [p.get("sequence_number") for p in payloads(raw)]
    if not seqs or not isinstance(seqs[0], int):
        return [f"first sequence_number {seqs[:1]}"]
    expected = list(range(seqs[0], seqs[0] + len(seqs)))
    return [] if seqs == expected else [f"sequence numbers {seqs}"]


def wire_problems(raw: bytes, body: dict[str, Any] = BODY) -> list[str]:
    """What breaks the Responses stream contract in a complete stream: numbering from
    the upstream's first number, event names, added/done pairing, the terminal output
    equal to the done items, output indices contiguous from 0 in order; and whatever
    the dialect's stream validator reports."""
    problems = sequence_problems(raw)
    got = payloads(raw)
    if problems or not got:
        return problems or ["no events"]
    first = got[0]["sequence_number"]
    rebased = b"".join(
        b"event: "
        + str(p.get("type")).encode()
        + b"\ndata: "
        # Rebased to 0 for the mock's checker, which expects numbering from 0.
        + orjson.dumps({**p, "sequence_number": p["sequence_number"] - first})
        + b"\n\n"
        for p in got
    )
    problems += stream_problems(rebased)
    problems += [
        f"event {name!r} carries {p.get('type')!r}"
        for name, p in events(raw)
        if name != p.get("type")
    ]
    indices = [p["output_index"] for p in got if p.get("type") == ITEM_ADDED]
    if indices != list(range(len(indices))):
        problems.append(f"output indices {indices}")
    problems += validate_stream(PATH, body, raw)
    return problems
