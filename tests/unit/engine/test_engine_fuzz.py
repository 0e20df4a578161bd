"""Property/fuzz tests of the three stream engines (Anthropic Messages, OpenAI chat
completions, OpenAI Responses) under chains that rewrite text and gate tool calls.

Answers are random but well formed: text in random deltas (a secret split anywhere among
them), tool calls of random names whose JSON arguments arrive in random pieces, keep-alive
comments anywhere; the stream's bytes are cut at random places (so frames reach the
engine in random groups) with either line ending. Whatever the answer, nothing raises and
the client gets a stream its dialect's validator (`Dialect.validator`) accepts: without
the secret under a redacting chain, each event as it came under one that changes
nothing. With garbage mixed in (data that is not JSON or not an object, unknown event
types, known event types of random shapes), nothing raises and the client still gets
whole SSE events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.core.request import ApiRequest
from extproc.dialects.anthropic.models import EVENT_TYPES as ANTHROPIC_EVENT_TYPES
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.dialects.responses.models_events import EVENT_TYPES as RESPONSES_EVENT_TYPES
from extproc.policies.base import PolicyChain
from tests.helpers import responses_streams as rs
from tests.helpers.dialects import (
    BLOCKS,
    JSON,
    KEY,
    MESSAGE,
    USAGE_CHUNK,
    anthropic_body,
    anthropic_sse,
    api_request,
    call_delta,
    ev,
    openai_chunk,
    openai_sse,
)
from tests.helpers.engine import (
    CUTS,
    MESSAGE_START,
    SECRET,
    TEXT_START,
    BlockBash,
    Redact,
    StopOnDelete,
    block_stop,
    message_end,
    split_text,
    text_delta,
)
from tests.helpers.fuzz import FUZZ
from tests.helpers.pipeline import Touching, Upper
from tests.helpers.responses_engine import BODY as RESPONSES_BODY
from tests.helpers.responses_engine import engine_output
from tests.helpers.streams import frames

DIALECTS: dict[str, Dialect] = {
    "anthropic": ANTHROPIC,
    "openai": OPENAI_CHAT,
    "responses": OPENAI_RESPONSES,
}
# Each rewrites text and gates tool calls (Touching: changing nothing).
CHAINS: dict[str, Callable[[], PolicyChain]] = {
    "redact, block bash": lambda: PolicyChain([Redact(), BlockBash()]),
    "redact, block bash, stop on delete_all": lambda: PolicyChain(
        [Redact(), BlockBash(), StopOnDelete()]
    ),
    "upper, block bash": lambda: PolicyChain([Upper(), BlockBash()]),
    "touching": lambda: PolicyChain([Touching()]),
}
# The chains under which no secret reaches the client.
REDACTING = frozenset(name for name in CHAINS if name.startswith(("redact", "upper")))
COMMENT = b": keep-alive\n\n"

# -- answers -------------------------------------------------------------------------

PIECE = st.sampled_from(["hi ", SECRET[:7], SECRET[7:], SECRET, " and ", "🌍", "\n"]) | st.text(
    max_size=6
)
TEXT = st.lists(PIECE, min_size=1, max_size=6)


@st.composite
def tool_calls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A call's name and its JSON arguments in random pieces."""
    name = draw(st.sampled_from(["bash", "get_weather", "delete_all"]))
    arguments = orjson.dumps(draw(st.dictionaries(KEY, JSON, max_size=3))).decode()
    return name, split_text(arguments, draw(CUTS))


@dataclass(frozen=True)
class Answer:
    """What the model says: a thinking block first (where the API has one), texts, then
    tool calls."""

    thinking: bool
    texts: list[list[str]]
    calls: list[tuple[str, list[str]]]


ANSWERS = st.builds(
    Answer,
    thinking=st.booleans(),
    texts=st.lists(TEXT, max_size=3),
    calls=st.lists(tool_calls(), max_size=3),
)

# -- the answer as each API streams it: the request and its events' bytes ---------------


def anthropic_stream(answer: Answer, data: st.DataObject) -> tuple[ApiRequest, list[bytes]]:
    events = [ev("message_start", message=MESSAGE)]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.thinking:
        blocks.append(BLOCKS["thinking"])
    for pieces in answer.texts:
        text = [{"type": "text_delta", "text": piece} for piece in pieces]
        blocks.append(({"type": "text", "text": ""}, text))
    for n, (name, pieces) in enumerate(answer.calls):
        block = {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": {}}
        blocks.append((block, [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
    for index, (block, deltas) in enumerate(blocks):
        events.append(ev("content_block_start", index=index, content_block=block))
        events += [ev("content_block_delta", index=index, delta=d) for d in deltas]
        events.append(ev("content_block_stop", index=index))
    reason = "tool_use" if answer.calls else data.draw(st.sampled_from(["end_turn", "max_tokens"]))
    delta = {"stop_reason": reason, "stop_sequence": None}
    events += [ev("message_delta", delta=delta, usage={"output_tokens": 9}), ev("message_stop")]
    # Pings anywhere between message_start and message_stop, as the API sends them.
    for at in data.draw(st.lists(st.integers(1, len(events) - 1), max_size=3), label="pings"):
        events.insert(at, ev("ping"))
    body = {"model": "claude-x", "max_tokens": 64, "stream": True, "messages": []}
    return api_request(body, ANTHROPIC), [anthropic_sse([e]) for e in events]


def openai_stream(answer: Answer, data: st.DataObject) -> tuple[ApiRequest, list[bytes]]:
    chunks: list[Any] = [openai_chunk({"role": "assistant", "content": ""})]
    chunks += [openai_chunk({"content": piece}) for text in answer.texts for piece in text]
    for n, (name, pieces) in enumerate(answer.calls):
        chunks.append(openai_chunk(call_delta(n, pieces[0], name)))
        chunks += [openai_chunk(call_delta(n, piece)) for piece in pieces[1:]]
    chunks.append(openai_chunk({}, "tool_calls" if answer.calls else "stop"))
    body: dict[str, Any] = {"model": "gpt-x", "stream": True, "messages": []}
    if data.draw(st.booleans(), label="include_usage"):
        body["stream_options"] = {"include_usage": True}
        chunks.append(USAGE_CHUNK)
    chunks.append("[DONE]")
    return api_request(body, OPENAI_CHAT), [openai_sse([c]) for c in chunks]


def responses_stream(answer: Answer, data: st.DataObject) -> tuple[ApiRequest, list[bytes]]:
    items: list[rs.Item] = [rs.Text(pieces) for pieces in answer.texts]
    items += [rs.Call(name, pieces) for name, pieces in answer.calls]
    # Items come in any order; a reasoning item, when there is one, first.
    items = data.draw(st.permutations(items), label="item order")
    if answer.thinking:
        items.insert(0, rs.Reasoning([["Plan", "ning"]]))
    ends: list[rs.End] = ["completed", "incomplete", "failed"]
    end = data.draw(st.sampled_from(ends), label="end")
    events = rs.responses_events(items, end)
    return api_request({**RESPONSES_BODY, "stream": True}, OPENAI_RESPONSES), [
        rs.responses_sse([e]) for e in events
    ]


RENDER = {"anthropic": anthropic_stream, "openai": openai_stream, "responses": responses_stream}

# -- garbage ---------------------------------------------------------------------------

GARBAGE = [
    COMMENT,
    b"data: {not json\n\n",
    b"data: [1, 2]\n\n",
    b"data: null\n\n",
    b'data: "text"\n\n',
    b"data:\n\n",
    b"event: ping\n\n",
    b"id: 7\nretry: 10\n\n",
    b'event: future_thing\ndata: {"type":"future_thing"}\n\n',
    b'data: {"type":"response.future.thing","sequence_number":"seven"}\n\n',
    b"event: content_block_delta\ndata: {oops\n\n",
    b"event: response.output_text.delta\ndata: [DONE]\n\n",
    b"data: [DONE]x\n\n",
]
# Field names and values of the three APIs' events, for events of random shapes.
FIELDS = [
    *("index", "delta", "content_block", "choices", "tool_calls", "function", "arguments"),
    *("name", "id", "item", "item_id", "output_index", "content_index", "summary_index"),
    *("sequence_number", "part", "text", "partial_json", "finish_reason", "usage"),
    *("response", "output", "message", "error", "role", "content", "status", "call_id"),
    "type",
]
VALUES = [
    *("text", "tool_use", "thinking", "text_delta", "input_json_delta", "function_call"),
    *("message", "output_text", "assistant", "bash", "stop", "tool_calls", "end_turn"),
    *("msg_68d93000", "msg_68d93001", "fc_68d93001", "rs_68d93000", "toolu_0", "call_0"),
]
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers(-1, 3) | st.text(max_size=4) | st.sampled_from(VALUES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner),
    max_leaves=12,
)
EVENT_TYPES = {
    "anthropic": sorted(ANTHROPIC_EVENT_TYPES),
    "openai": ["chat.completion.chunk"],
    "responses": sorted(RESPONSES_EVENT_TYPES),
}


@st.composite
def shaped_events(draw: st.DrawFn, dialect: str) -> bytes:
    """An event of a known type (named by it, or not) with fields of random shapes."""
    kind = draw(st.sampled_from(EVENT_TYPES[dialect]))
    payload = draw(st.dictionaries(st.sampled_from(FIELDS), SHAPED, max_size=5))
    if dialect == "openai":
        payload["choices"] = draw(st.lists(SHAPED, max_size=2) | SHAPED)
    else:
        payload["type"] = kind
    data = b"data: " + orjson.dumps(payload) + b"\n\n"
    return b"event: " + kind.encode() + b"\n" + data if draw(st.booleans()) else data


def garbage(dialect: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(GARBAGE) | shaped_events(dialect)


# -- driving an engine -------------------------------------------------------------------


def run(
    dialect: Dialect,
    chain: PolicyChain,
    request: ApiRequest,
    events: list[bytes],
    data: st.DataObject,
) -> tuple[bytes, bytes]:
    """The events' bytes, with a random line ending, and what the client gets when they
    go through the dialect's stream engine cut at random places."""
    eol = data.draw(st.sampled_from([b"\n", b"\r\n"]), label="line ending")
    raw = b"".join(events).replace(b"\n", eol)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=30), label="cuts")
    return raw, asyncio.run(engine_output(chain, raw, cuts, request=request, dialect=dialect))


def problems(dialect: Dialect, request: ApiRequest, out: bytes) -> list[str]:
    validator = dialect.validator(request)
    for frame in frames(out):
        validator.feed(frame)
    return validator.finish()


def events_of(raw: bytes) -> list[bytes]:
    """The bytes of every event but keep-alives: comments and pings pass a held tool
    call, and nothing follows the end."""
    return [f.raw for f in frames(raw) if f.data is not None and f.event != "ping"]


def insert(events: list[bytes], extra: list[bytes], data: st.DataObject) -> list[bytes]:
    """`events` with each of `extra` at a random place."""
    events = list(events)
    for item in extra:
        events.insert(data.draw(st.integers(0, len(events)), label="at"), item)
    return events


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(FUZZ, max_examples=150)
@given(answer=ANSWERS, chain=st.sampled_from(list(CHAINS)), data=st.data())
def test_any_well_formed_stream_leaves_valid(
    dialect: str, answer: Answer, chain: str, data: st.DataObject
) -> None:
    request, events = RENDER[dialect](answer, data)
    comments = data.draw(st.integers(0, 3), label="comments")
    events = insert(events, [COMMENT] * comments, data)
    raw, out = run(DIALECTS[dialect], CHAINS[chain](), request, events, data)
    assert problems(DIALECTS[dialect], request, out) == []
    if chain in REDACTING:
        assert SECRET.encode() not in out
    else:  # every policy looks, none changes anything: each event leaves as it came
        assert events_of(out) == events_of(raw)


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(FUZZ, max_examples=150)
@given(answer=ANSWERS, chain=st.sampled_from(list(CHAINS)), data=st.data())
def test_garbage_anywhere_never_raises(
    dialect: str, answer: Answer, chain: str, data: st.DataObject
) -> None:
    request, events = RENDER[dialect](answer, data)
    junk = data.draw(st.lists(garbage(dialect), min_size=1, max_size=6), label="garbage")
    _, out = run(DIALECTS[dialect], CHAINS[chain](), request, insert(events, junk, data), data)
    # The client gets whole SSE events, whatever came in.
    assert all(frame.terminated for frame in frames(out))
    problems(DIALECTS[dialect], request, out)  # the validator copes with it too


# -- bugs the fuzzing found, kept as regression tests ---------------------------------------


@settings(FUZZ, max_examples=10)
@example(data=b"{oops")
@given(data=st.sampled_from([b"{oops", b"[1, 2]", b"null", b'"text"']))
def test_anthropic_a_delta_that_is_not_an_object_inside_a_rewritten_text(data: bytes) -> None:
    odd = b"event: content_block_delta\ndata: " + data + b"\n\n"
    raw = MESSAGE_START + TEXT_START + text_delta("hi ") + odd + text_delta("there")
    raw += block_stop(0) + message_end("end_turn")
    request = api_request(anthropic_body())
    chain = PolicyChain([Redact()])
    out = asyncio.run(engine_output(chain, raw, request=request, dialect=ANTHROPIC))
    assert out.count(odd) == 1  # garbage passes untouched, as elsewhere


ANNOTATION = {"type": "url_citation", "url": "https://example.com", "title": "Example"}


@settings(FUZZ, max_examples=20)
@example(pieces=[SECRET, "", "hi ", ""], annotated=False)
@example(pieces=[SECRET, "hi ", "there"], annotated=True)
@given(pieces=st.lists(PIECE, min_size=3, max_size=6), annotated=st.booleans())
def test_responses_numbering_when_a_rewrite_merges_deltas_between_passengers(
    pieces: list[str], annotated: bool
) -> None:
    events = rs.responses_events([rs.Text(pieces)])
    if annotated:  # a citation after each delta, as web search answers have
        where = {"item_id": "msg_68d93000", "output_index": 0, "content_index": 0}
        deltas = [n for n, (kind, _) in enumerate(events) if kind == "response.output_text.delta"]
        for count, at in enumerate(reversed(deltas)):
            added = rs.ev(
                "response.output_text.annotation.added",
                **where,
                annotation_index=len(deltas) - 1 - count,
                annotation=ANNOTATION,
            )
            events.insert(at + 1, added)
        rs.renumber(events)
    request = api_request({**RESPONSES_BODY, "stream": True}, OPENAI_RESPONSES)
    raw = rs.responses_sse(events)
    assert problems(OPENAI_RESPONSES, request, raw) == []
    chain = PolicyChain([Redact()])
    out = asyncio.run(engine_output(chain, raw, request=request, dialect=OPENAI_RESPONSES))
    assert problems(OPENAI_RESPONSES, request, out) == []
