"""OpenAI Responses API streaming: a plan as the typed SSE events the real API sends.

Order per item: `output_item.added`, its content events, `output_item.done`; each item
finishes before the next starts, as in recorded streams. The terminal event carries
exactly the items of the `.done` events, which is what the SDK's accumulator checks.
"""

from __future__ import annotations

import string
from typing import Any

import orjson

from .openai_format import MIDSTREAM_ERROR
from .responses_format import (
    Rendering,
    digest,
    final_status,
    output_items,
    reasoning_tokens,
    usage,
)
from .scenario import Plan, split_text

Event = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits
_ARG_SIZES = (4, 7, 5)  # argument fragments, as the Chat Completions mock splits them
# The nested shape is what the real API sends; the flat copy is the documented one.
_FAILURE = {**MIDSTREAM_ERROR["error"], "code": "server_error"}


def _obfuscation(seed: str, n: int, delta: str) -> str:
    """Padding like the real API's, so event sizes don't reveal token lengths."""
    pool = digest(seed, "obfuscation", str(n))
    return "".join(_ALPHABET[int(pool[i : i + 2], 16) % 62] for i in range(0, 32, 2))[
        : max(2, 16 - len(delta))
    ]


def _reasoning_events(index: int, item: dict[str, Any], plan: Plan) -> list[Event]:
    loc = {"item_id": item["id"], "output_index": index}
    events: list[Event] = [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "summary": []},
        }
    ]
    for summary_index, part in enumerate(item["summary"]):
        at = {**loc, "summary_index": summary_index}
        events.append(
            {"type": "response.reasoning_summary_part.added", **at, "part": {**part, "text": ""}}
        )
        for chunk in plan.thinking_chunks or ():
            events.append({"type": "response.reasoning_summary_text.delta", **at, "delta": chunk})
        events.append({"type": "response.reasoning_summary_text.done", **at, "text": part["text"]})
        events.append({"type": "response.reasoning_summary_part.done", **at, "part": part})
    return events


def _message_events(index: int, item: dict[str, Any], plan: Plan) -> list[Event]:
    loc = {"item_id": item["id"], "output_index": index, "content_index": 0}
    part = item["content"][0]
    added = {**item, "status": "in_progress", "content": []}
    events: list[Event] = [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        {"type": "response.content_part.added", **loc, "part": {**part, "text": ""}},
    ]
    for chunk in plan.text_chunks:
        events.append({"type": "response.output_text.delta", **loc, "delta": chunk, "logprobs": []})
    events.append(
        {"type": "response.output_text.done", **loc, "text": part["text"], "logprobs": []}
    )
    events.append({"type": "response.content_part.done", **loc, "part": part})
    return events


def _call_events(index: int, item: dict[str, Any]) -> list[Event]:
    loc = {"item_id": item["id"], "output_index": index}
    if item["type"] == "custom_tool_call":
        kind, field, added = "custom_tool_call_input", "input", {**item, "input": ""}
    else:
        kind, field = "function_call_arguments", "arguments"
        added = {**item, "status": "in_progress", "arguments": ""}
    events: list[Event] = [
        {"type": "response.output_item.added", "output_index": index, "item": added}
    ]
    for fragment in split_text(item[field], _ARG_SIZES):
        events.append({"type": f"response.{kind}.delta", **loc, "delta": fragment})
    events.append({"type": f"response.{kind}.done", **loc, field: item[field]})
    return events


def _item_events(index: int, item: dict[str, Any], plan: Plan) -> list[Event]:
    if item["type"] == "reasoning":
        events = _reasoning_events(index, item, plan)
    elif item["type"] == "message":
        events = _message_events(index, item, plan)
    else:
        events = _call_events(index, item)
    return [*events, {"type": "response.output_item.done", "output_index": index, "item": item}]


def stream_events(plan: Plan, ctx: Rendering, *, midstream_error: bool = False) -> list[Event]:
    """Every event's JSON, numbered from 0 in stream order."""
    start = ctx.envelope("in_progress", [], None, tier=ctx.requested_tier)
    events: list[Event] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    items = output_items(plan, ctx)
    for index, item in enumerate(items):
        events += _item_events(index, item, plan)
    if midstream_error:
        # Fail right after the first delta, so a client has seen some content.
        cut = next((i for i, e in enumerate(events) if e["type"].endswith(".delta")), None)
        events = events[: len(events) if cut is None else cut + 1]
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        error = {"code": _FAILURE["code"], "message": _FAILURE["message"]}
        failed = ctx.envelope("failed", done, None, error=error)
        flat = {k: _FAILURE[k] for k in ("code", "message", "param")}
        events.append({"type": "error", **flat, "error": dict(_FAILURE)})
        events.append({"type": "response.failed", "response": failed})
    else:
        status = final_status(plan)
        final = ctx.envelope(status, items, usage(plan, reasoning_tokens(plan, ctx)))
        events.append({"type": f"response.{status}", "response": final})
    numbered = []
    for n, event in enumerate(events):
        payload = {"type": event["type"], "sequence_number": n, **event}
        if ctx.obfuscate and event["type"].endswith(".delta"):
            payload["obfuscation"] = _obfuscation(ctx.seed, n, event["delta"])
        numbered.append(payload)
    return numbered


def encode(events: list[Event], line_ending: str = "\n") -> list[bytes]:
    """One `event:` + `data:` frame per event; no `[DONE]`, the terminal event ends it."""
    le = line_ending.encode()
    return [
        b"event: " + e["type"].encode() + le + b"data: " + orjson.dumps(e) + le + le for e in events
    ]


def render_stream(
    plan: Plan, ctx: Rendering, *, line_ending: str = "\n", midstream_error: bool = False
) -> list[bytes]:
    """The SSE events of a streamed answer, one byte string per event."""
    return encode(stream_events(plan, ctx, midstream_error=midstream_error), line_ending)
