"""Realistic OpenAI Responses API streams and response objects, built from a list of items.

The shapes follow real recorded streams (gpt-5, Sept 2025, and o3-mini / gpt-4 fixtures):
`event:` named like the payload's type, `sequence_number` from 0 up by one,
`response.created` and `response.in_progress` with an empty output, each item wrapped in
`output_item.added` / `.done`, `obfuscation` padding on deltas, and a terminal event that
carries the whole response with every item.

    events = responses_events([Text(["Hel", "lo"]), Call("get_weather", ['{"city":', '"Paris"}'])])
    raw = render_stream([Text(["Hi"])])          # the SSE bytes
    body = response_object([Text(["Hi"])])       # the matching non-streaming body

Events are `(type, payload)` pairs (`tests.helpers.dialects.Event`); after editing a list,
`renumber` makes its sequence numbers valid again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tests.helpers.dialects import Event

RESPONSE_ID = "resp_68d930a1b2c3d4e5"
MODEL = "gpt-5-2025-08-07"
CREATED_AT = 1759064129
USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 31,
    "output_tokens_details": {"reasoning_tokens": 8},
    "total_tokens": 43,
}
ERROR = {"type": "server_error", "code": "server_error", "message": "The server had an error."}
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Text:
    """An assistant message with one output_text part, streamed in these pieces."""

    pieces: Sequence[str]
    id: str | None = None


@dataclass(frozen=True)
class Refusal:
    """An assistant message with one refusal part."""

    pieces: Sequence[str]
    id: str | None = None


@dataclass(frozen=True)
class Call:
    """A function_call whose arguments are streamed in these pieces."""

    name: str
    pieces: Sequence[str]
    call_id: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Reasoning:
    """A reasoning item: encrypted content, and a summary part per piece list."""

    summary: Sequence[Sequence[str]] = ()
    encrypted_content: str | None = "gAAAAABo2TBC-encrypted-reasoning=="
    id: str | None = None


@dataclass(frozen=True)
class WebSearch:
    """A hosted web_search_call (in_progress, searching, completed)."""

    query: str
    id: str | None = None


Item = Text | Refusal | Call | Reasoning | WebSearch
End = Literal["completed", "incomplete", "failed"]


def ev(kind: str, **fields: Any) -> Event:
    """An event with a placeholder sequence number (`responses_events` numbers them)."""
    return kind, {"type": kind, "sequence_number": -1, **fields}


def renumber(events: list[Event], start: int = 0) -> list[Event]:
    """Sequence numbers from `start` up by one, in list order (in place)."""
    for n, (_, payload) in enumerate(events, start):
        payload["sequence_number"] = n
    return events


def _obfuscation(n: int) -> str:
    return "8LmeBsRtkQoxtpMK8COHrCfpB"[: 4 + n % 12]


def _ids(index: int, item: Item) -> str:
    prefix = {Text: "msg", Refusal: "msg", Call: "fc", Reasoning: "rs", WebSearch: "ws"}
    return item.id or f"{prefix[type(item)]}_68d930{index:02d}"


def _tools(items: Sequence[Item]) -> list[dict[str, Any]]:
    names = dict.fromkeys(i.name for i in items if isinstance(i, Call))
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "description": f"{name} for a city",
            "name": name,
            "parameters": PARAMETERS,
            "strict": True,
        }
        for name in names
    ]
    if any(isinstance(i, WebSearch) for i in items):
        tools.append(
            {
                "type": "web_search",
                "filters": None,
                "search_context_size": "medium",
                "user_location": {"type": "approximate", "city": None, "country": "US"},
            }
        )
    return tools


def response_envelope(
    items: Sequence[Item],
    output: list[dict[str, Any]],
    status: str,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `response` object around `output`, every field present as the API sends it."""
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": "minimal", "summary": None},
        "safety_identifier": None,
        "service_tier": "default" if status != "in_progress" else "auto",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": _tools(items),
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _message(index: int, item: Text | Refusal, status: str) -> list[Event]:
    msg_id = _ids(index, item)
    where = {"item_id": msg_id, "output_index": index, "content_index": 0}
    whole = "".join(item.pieces)
    if isinstance(item, Text):
        empty: dict[str, Any] = {"type": "output_text", "annotations": [], "logprobs": []}
        part, full = empty | {"text": ""}, empty | {"text": whole}
        deltas = [
            ev(
                "response.output_text.delta",
                **where,
                delta=p,
                logprobs=[],
                obfuscation=_obfuscation(n),
            )
            for n, p in enumerate(item.pieces)
        ]
        text_done = ev("response.output_text.done", **where, text=whole, logprobs=[])
    else:
        part, full = {"type": "refusal", "refusal": ""}, {"type": "refusal", "refusal": whole}
        deltas = [
            ev("response.refusal.delta", **where, delta=p, obfuscation=_obfuscation(n))
            for n, p in enumerate(item.pieces)
        ]
        text_done = ev("response.refusal.done", **where, refusal=whole)
    added = {"id": msg_id, "type": "message", "status": "in_progress", "content": []}
    done = added | {"status": status, "content": [full]}
    return [
        ev("response.output_item.added", output_index=index, item=added | {"role": "assistant"}),
        ev("response.content_part.added", **where, part=part),
        *deltas,
        text_done,
        ev("response.content_part.done", **where, part=full),
        ev("response.output_item.done", output_index=index, item=done | {"role": "assistant"}),
    ]


def _call(index: int, item: Call, status: str) -> list[Event]:
    fc_id = _ids(index, item)
    call_id = item.call_id or f"call_Qx{index:02d}hT9vK3mW"
    where = {"item_id": fc_id, "output_index": index}
    added = {"id": fc_id, "type": "function_call", "status": "in_progress", "arguments": ""}
    added |= {"call_id": call_id, "name": item.name}
    whole = "".join(item.pieces)
    return [
        ev("response.output_item.added", output_index=index, item=added),
        *(
            ev(
                "response.function_call_arguments.delta",
                **where,
                delta=p,
                obfuscation=_obfuscation(n),
            )
            for n, p in enumerate(item.pieces)
        ),
        ev("response.function_call_arguments.done", **where, arguments=whole),
        ev(
            "response.output_item.done",
            output_index=index,
            item=added | {"status": status, "arguments": whole},
        ),
    ]


def _reasoning(index: int, item: Reasoning) -> list[Event]:
    rs_id = _ids(index, item)
    added: dict[str, Any] = {"id": rs_id, "type": "reasoning"}
    if item.encrypted_content is not None:
        added["encrypted_content"] = item.encrypted_content
    events = [ev("response.output_item.added", output_index=index, item=added | {"summary": []})]
    summary = []
    for s, pieces in enumerate(item.summary):
        where = {"item_id": rs_id, "output_index": index, "summary_index": s}
        whole = "".join(pieces)
        summary.append({"type": "summary_text", "text": whole})
        events += [
            ev(
                "response.reasoning_summary_part.added",
                **where,
                part={"type": "summary_text", "text": ""},
            ),
            *(
                ev(
                    "response.reasoning_summary_text.delta",
                    **where,
                    delta=p,
                    obfuscation=_obfuscation(n),
                )
                for n, p in enumerate(pieces)
            ),
            ev("response.reasoning_summary_text.done", **where, text=whole),
            ev("response.reasoning_summary_part.done", **where, part=summary[-1]),
        ]
    events.append(
        ev("response.output_item.done", output_index=index, item=added | {"summary": summary})
    )
    return events


def _web_search(index: int, item: WebSearch) -> list[Event]:
    ws_id = _ids(index, item)
    where = {"item_id": ws_id, "output_index": index}
    added = {
        "id": ws_id,
        "type": "web_search_call",
        "status": "in_progress",
        "action": {"type": "search"},
    }
    action = {"type": "search", "query": item.query, "sources": None}
    return [
        ev("response.output_item.added", output_index=index, item=added),
        ev("response.web_search_call.in_progress", **where),
        ev("response.web_search_call.searching", **where),
        ev("response.web_search_call.completed", **where),
        ev(
            "response.output_item.done",
            output_index=index,
            item=added | {"status": "completed", "action": action},
        ),
    ]


def _item_events(index: int, item: Item, last: bool, end: End) -> list[Event]:
    # An incomplete response's last item was cut: the API marks it "incomplete".
    status = "incomplete" if last and end == "incomplete" else "completed"
    if isinstance(item, Text | Refusal):
        return _message(index, item, status)
    if isinstance(item, Call):
        return _call(index, item, status)
    if isinstance(item, Reasoning):
        return _reasoning(index, item)
    return _web_search(index, item)


def done_items(events: list[Event]) -> list[dict[str, Any]]:
    """The items of the `output_item.done` events, in output_index order."""
    done = [p for k, p in events if k == "response.output_item.done"]
    return [copy.deepcopy(p["item"]) for p in sorted(done, key=lambda p: p["output_index"])]


def responses_events(items: Sequence[Item] = (), end: End = "completed") -> list[Event]:
    """A whole, valid stream of these items (fresh copies, numbered from 0).

    `end`: "completed"; "incomplete" (max_output_tokens; the last item "incomplete"); or
    "failed" (an `error` event in both shapes, then `response.failed` with the items)."""
    start = response_envelope(items, [], "in_progress")
    events = [ev("response.created", response=start), ev("response.in_progress", response=start)]
    for index, item in enumerate(items):
        events += _item_events(index, item, index == len(items) - 1, end)
    output = done_items(events)
    if end == "failed":
        flat = {"code": ERROR["code"], "message": ERROR["message"], "param": None}
        events.append(ev("error", **flat, error=ERROR | {"param": None}))
        failed = response_envelope(
            items, output, "failed", error={k: ERROR[k] for k in ("code", "message")}
        )
        events.append(ev("response.failed", response=failed))
    else:
        events.append(ev(f"response.{end}", response=response_envelope(items, output, end, USAGE)))
    # One copy per event: the same text must not be shared by two events' payloads, or a
    # test that breaks one copy would break them all.
    return [copy.deepcopy(event) for event in renumber(events)]


def responses_sse(events: list[Event]) -> bytes:
    """The events as the API writes them: `event:` line, one-line `data:`, blank line."""
    return b"".join(
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        for kind, payload in events
    )


def render_stream(items: Sequence[Item] = (), end: End = "completed") -> bytes:
    """The SSE bytes of a valid stream of these items."""
    return responses_sse(responses_events(items, end))


def response_object(items: Sequence[Item] = (), end: End = "completed") -> dict[str, Any]:
    """The non-streaming body that matches `render_stream(items, end)`: the terminal
    event's response."""
    return responses_events(items, end)[-1][1]["response"]


# Recorded-style shapes (research §3 "Event order"), for tests that want each of them.
SHAPES: dict[str, tuple[tuple[Item, ...], End]] = {
    "text": ((Text(["Hello", "!", " How can I help", " you today? ü 🌍"]),), "completed"),
    "function call": (
        (Call("get_weather", ['{"city"', ':"Paris"', "}"]),),
        "completed",
    ),
    "parallel calls": (
        (
            Call("get_weather", ['{"city":', '"Paris"}']),
            Call("get_time", ['{"city":"Tokyo"}']),
        ),
        "completed",
    ),
    "reasoning then text": (
        (Reasoning([["**Planning**", " the answer"]]), Text(["Paris", " is the capital."])),
        "completed",
    ),
    "reasoning without summary": (
        (Reasoning(), Call("get_weather", ['{"city":"Oslo"}'])),
        "completed",
    ),
    "refusal": ((Refusal(["I'm sorry,", " I can't help with that."]),), "completed"),
    "hosted tool": ((WebSearch("weather Paris"), Text(["It is ", "sunny."])), "completed"),
    "incomplete": ((Text(["The first", " part of a long"]),), "incomplete"),
    "failed after an error": ((), "failed"),
    "failed mid-stream": ((Text(["Half an ", "answer"]),), "failed"),
}


def shape_events(name: str) -> list[Event]:
    items, end = SHAPES[name]
    return responses_events(items, end)
