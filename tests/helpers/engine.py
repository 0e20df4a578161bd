"""Test policies, rendered responses and drivers for the engine and policy tests.

- `Redact`, `BlockBash`, `StopOnDelete`: small policies with one behaviour each.
- `plan()` and `streams()`: a mock answer rendered as a stream and as a whole message.
- `run_pipeline()`: a response through a whole RequestPipeline, cut into chunks at given
  places (the way Envoy delivers it).
- `rewrite_stream()` / `rewrite_whole()`: the TextRewriter contract as simply as possible,
  to check a rewriter on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import orjson
from hypothesis import strategies as st

from extproc.core.decisions import BlockResponse, BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import HoldsGrowingMatches, Span, TextRewriter
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC
from extproc.mock_llm import anthropic_format, openai_format
from extproc.mock_llm.scenario import Plan, Usage
from extproc.mock_llm.scenario import ToolCall as PlannedCall
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from tests.helpers.runtime import KEY, make_pipeline

SECRET = "AKIAABCDEFGHIJKLMNOP"


class Redact(Policy[PolicyConfig]):
    """Replaces every SECRET, however the text is split: a hold-back rewriter."""

    rewrites_text = True
    holdback = len(SECRET)

    def rewriter(self, request: ApiRequest) -> Redact:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        out, pos = [], start
        while (i := text.find(SECRET, pos)) >= 0:
            out.append(Span(i, i + len(SECRET), "[REDACTED]"))
            pos = i + len(SECRET)
        return out


class BlockBash(Policy[PolicyConfig]):
    """Blocks every call of the tool `bash`."""

    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall | None:
        return BlockToolCall(f"blocked {call.name}") if call.name == "bash" else None


class StopOnDelete(Policy[PolicyConfig]):
    """Stops the whole response at a call of the tool `delete_all`."""

    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockResponse | None:
        return BlockResponse("stopped") if call.name == "delete_all" else None


# -- responses ---------------------------------------------------------------------------


def plan(text_chunks: list[str], tools: list[str]) -> Plan:
    """An answer: these text deltas, then a call of each tool (same arguments)."""
    calls = tuple(
        PlannedCall(name, f"toolu_{n}", {"command": "ls -la /tmp"}) for n, name in enumerate(tools)
    )
    return Plan(
        text_chunks=tuple(text_chunks),
        tool_calls=calls,
        stop_reason="tool_use" if tools else "end_turn",
        usage=Usage(5, 9),
    )


def streams(p: Plan, dialect: Dialect) -> tuple[bytes, dict[str, Any]]:
    """The answer as the dialect's SSE stream, and as its non-streaming body."""
    if dialect is ANTHROPIC:
        events = anthropic_format.render_stream(p, msg_id="msg_1", model="claude-x")
        return b"".join(events), anthropic_format.render_message(
            p, msg_id="msg_1", model="claude-x"
        )
    events = openai_format.render_stream(p, cid="c1", model="gpt-x", created=1, include_usage=False)
    return b"".join(events), openai_format.render_completion(p, cid="c1", model="gpt-x", created=1)


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at these offsets (duplicates and out-of-range cuts ignored)."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def run_pipeline(
    dialect: Dialect, chain: PolicyChain, data: bytes, cuts: list[int], ctype: str
) -> bytes:
    """What the client gets when the upstream answers `data` (in chunks cut at `cuts`,
    with this content type) to a request of the dialect's policy path under `chain`."""
    pipe = make_pipeline(chain)
    pipe.on_request_headers(
        {
            ":method": "POST",
            ":path": dialect.path,
            "content-type": "application/json",
            "x-api-key": KEY,
        },
        False,
    )
    body: dict[str, Any] = {
        "model": "claude-x" if dialect is ANTHROPIC else "gpt-x",
        "stream": ctype == "text/event-stream",
        "messages": [],
    }
    await pipe.on_request_body(orjson.dumps(body))
    pipe.on_response_headers({":status": "200", "content-type": ctype}, False)
    chunks = chunked(data, cuts) or [b""]
    out = bytearray()
    for i, chunk in enumerate(chunks):
        out += (await pipe.on_response_body(chunk, i == len(chunks) - 1)).data
    pipe.close()
    return bytes(out)


def blocks_of(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, text or tool name) of each content block of an Anthropic message."""
    return [(b["type"], b.get("text", b.get("name", ""))) for b in message["content"]]


# -- the rewriter contract ---------------------------------------------------------------


def checked_spans(rewriter: TextRewriter, text: str, start: int) -> list[Span]:
    """The rewriter's spans, checked: sorted, non-overlapping, non-empty, in text[start:]."""
    spans = list(rewriter.spans(text, start))
    pos = start
    for span in spans:
        assert pos <= span.start < span.end <= len(text), (spans, start, len(text))
        pos = span.end
    return spans


def rewrite_stream(rewriter: TextRewriter, deltas: Iterable[str]) -> str:
    """The engine's contract, as simply as possible.

    `context` is the last `holdback` characters of already-sent original text, `pending`
    the unsent text; `spans(context + pending, len(context))` is called on every delta.
    Text up to `len(text) - holdback` is sent, except that a span crossing that point
    moves it back to the span's start; spans ending at or before it are applied. At the
    end, `spans` is called once more and everything is sent with all spans applied.
    """
    hb = rewriter.holdback
    out: list[str] = []
    context = pending = ""

    def emit(text: str, start: int, cut: int, spans: list[Span]) -> None:
        pos = start
        for span in spans:
            if span.end > cut:
                break
            out.extend((text[pos : span.start], span.replacement))
            pos = span.end
        out.append(text[pos:cut])

    for delta in deltas:
        pending += delta
        text, start = context + pending, len(context)
        spans = checked_spans(rewriter, text, start)
        cut = len(text) - hb
        if isinstance(rewriter, HoldsGrowingMatches):
            growing = rewriter.hold_from(text, start)
            if growing is not None:
                cut = min(cut, growing)  # a match that may still grow is kept whole
        for span in spans:
            if span.start < cut < span.end:
                cut = span.start
        if cut <= start:
            continue
        emit(text, start, cut, spans)
        context, pending = (text[max(0, cut - hb) : cut] if hb else ""), text[cut:]
    text, start = context + pending, len(context)
    emit(text, start, len(text), checked_spans(rewriter, text, start))
    return "".join(out)


def rewrite_whole(rewriter: TextRewriter, text: str) -> str:
    out: list[str] = []
    pos = 0
    for span in checked_spans(rewriter, text, 0):
        out.extend((text[pos : span.start], span.replacement))
        pos = span.end
    return "".join(out) + text[pos:]


# Where to cut a text into deltas (taken modulo its length + 1 by `split_text`).
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


def split_text(text: str, cuts: list[int]) -> list[str]:
    """`text` cut at these offsets (taken modulo its length + 1)."""
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def rewriter_of(policy: Policy[Any]) -> TextRewriter:
    """The policy's response rewriter (it must have one)."""
    rw = policy.rewriter(None)  # type: ignore[arg-type]
    assert rw is not None
    return rw


# -- hand-written Anthropic events -------------------------------------------------------


def anthropic_event(event: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


MESSAGE_START = anthropic_event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    },
)
TEXT_START = anthropic_event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)


def text_delta(text: str, index: int = 0) -> bytes:
    return anthropic_event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        },
    )


def block_stop(index: int) -> bytes:
    return anthropic_event("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(reason: str) -> bytes:
    """A message_delta with this stop_reason, then message_stop."""
    return anthropic_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
    ) + anthropic_event("message_stop", {"type": "message_stop"})


class Observer(Policy[PolicyConfig]):
    """Records every event the engine shows it."""

    observes_events = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any]] = []

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        self.seen.append((event_type, payload))
