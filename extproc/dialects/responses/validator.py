"""The event grammar of one Responses API stream, checked as the client receives it
(`validate_streams` and the tests).

Beyond the event grammar, it checks that every copy of a text agrees: the API sends an
output_text four more times after its deltas (`output_text.done`, `content_part.done`,
`output_item.done`, the terminal `response.output`), and the SDK's
`get_final_response()` and Codex read those copies, not the deltas. A policy that
rewrote the deltas but missed a copy is caught here. Every copy is compared with the
*streamed* text (the part's initial text plus its deltas: what a streaming UI showed), so
one wrong copy is one violation. Function call arguments and custom tool input likewise.

Identities follow the SDK's accumulator (`ResponseStreamState`): an output index keeps
its item's type, id and call_id from `output_item.added` through `.done` to the terminal
response (a null id when added may be filled in later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.dialects.models_base import field_of
from extproc.dialects.responses.models import (
    CustomToolCall,
    FunctionCall,
    OutputMessage,
    ReasoningItem,
    item_identity,
    part_text,
)
from extproc.dialects.responses.models_events import (
    TERMINAL_EVENTS,
    ArgumentsDoneEvent,
    ContentDeltaEvent,
    ContentPartEvent,
    ContentTextDoneEvent,
    ErrorEvent,
    Event,
    InputDoneEvent,
    ItemDeltaEvent,
    OutputItemEvent,
    RefusalDoneEvent,
    ResponseEvent,
    SummaryDeltaEvent,
    SummaryDoneEvent,
    SummaryPartEvent,
    UnknownEvent,
    parse_event,
)
from extproc.sse import Frame

# A part is ("content", content_index) or ("summary", summary_index) of its item.
PartKey = tuple[str, int]

# Which part type each text delta / done event belongs to, and the done event's field.
_DELTA_PART = {
    "response.output_text.delta": "output_text",
    "response.refusal.delta": "refusal",
    "response.reasoning_text.delta": "reasoning_text",
    "response.reasoning_summary_text.delta": "summary_text",
}
_DONE_PART = {
    "response.output_text.done": "output_text",
    "response.refusal.done": "refusal",
    "response.reasoning_text.done": "reasoning_text",
    "response.reasoning_summary_text.done": "summary_text",
}
# Item types whose own field is streamed: delta event type -> (item type, done event).
_FIELD_STREAMS = {
    "response.function_call_arguments.delta": (
        "function_call",
        "response.function_call_arguments.done",
    ),
    "response.custom_tool_call_input.delta": (
        "custom_tool_call",
        "response.custom_tool_call_input.done",
    ),
}
_STATUS = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class _Part:
    type: str
    text: str  # the added part's text plus every delta: what was streamed
    explicit: bool = True  # opened by a *_part.added (reasoning_text may come without)
    closed: bool = False
    text_done: bool = False  # its output_text/refusal/... .done was seen


@dataclass
class _Item:
    index: int
    added: Any
    done: Any = None
    parts: dict[PartKey, _Part] = field(default_factory=dict)
    streamed: str | None = None  # function_call arguments / custom_tool_call input
    streamed_done: bool = False

    @property
    def kind(self) -> str:
        return item_identity(self.added)[0]


def _item_parts(item: Any, kind: str) -> list[Any] | None:
    """The parts of a copy of an item that stand for one kind of streamed part."""
    if isinstance(item, OutputMessage) and kind == "content":
        return list(item.content)
    if isinstance(item, ReasoningItem):
        return list(item.summary if kind == "summary" else item.content or [])
    return None


def _streamed_field(item: Any) -> str | None:
    if isinstance(item, FunctionCall):
        return item.arguments
    if isinstance(item, CustomToolCall):
        return item.input
    return None


class StreamValidator:
    """Checks the event grammar of one Responses stream; see :meth:`finish`."""

    def __init__(self) -> None:
        self._violations: list[str] = []
        self._fed = 0  # events with data
        self._next_seq: int | None = None
        self._response_id: str | None = None
        self._created = False
        self._terminal: str | None = None  # type of the terminal event seen
        self._error = False  # an `error` event was the last event so far
        self._items: dict[int, _Item] = {}
        self._next_index = 0

    def _fail(self, message: str) -> None:
        self._violations.append(message)

    # -- input ------------------------------------------------------------------------

    def feed(self, frame: Frame) -> None:
        """Feed one SSE event as the client received it."""
        if frame.data is None:
            if frame.event is not None:
                # The SDK parses every event's data: an empty one fails json.loads.
                self._fail(f"event {frame.event!r} without data")
            return  # comments carry nothing to check
        try:
            payload = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            self._fed += 1
            self._fail(
                f"event #{self._fed} ({frame.event}): data is not JSON: {_short(frame.data)}"
            )
            return
        self.feed_event(frame.event, payload)

    def feed_event(self, name: str | None, payload: Any) -> None:
        """Feed one event: its ``event:`` name (None if the frame had none) and its
        parsed ``data:`` JSON."""
        self._fed += 1
        if not isinstance(payload, dict):
            self._fail(f"event #{self._fed} ({name}): data is not a JSON object")
            return
        kind = payload.get("type")
        seq = payload.get("sequence_number")
        where = f"{kind} (seq {seq})"
        if name is not None and name != kind:
            self._fail(f"event {name!r} (seq {seq}) has data of type {kind!r}")
        if not self._check_sequence(where, seq):
            # Reported once; the rest of the event is still checked.
            payload = {**payload, "sequence_number": 0}
        if self._fed == 1 and kind != "response.created":
            self._fail(f"{where} is the first event, expected response.created")
        if self._terminal is not None:
            self._fail(f"{where} after the terminal event {self._terminal}")
            return
        if self._error and kind != "response.failed":
            self._fail(f"{where} after an error event (only response.failed may follow)")
            return
        self._error = kind == "error"
        event = parse_event(payload)
        if isinstance(event, UnknownEvent):
            if event.parse_error is not None:
                self._fail(f"malformed {where}: {event.parse_error}")
            return  # unknown event types pass
        self._on_event(where, event)

    def _check_sequence(self, where: str, seq: Any) -> bool:
        if not isinstance(seq, int) or isinstance(seq, bool):
            self._fail(f"{where} has no integer sequence_number")
            if self._next_seq is not None:
                self._next_seq += 1  # it stood in its place: the next one is not a gap
            return False
        if self._next_seq is not None and seq != self._next_seq:
            self._fail(f"{where}: sequence_number {seq}, expected {self._next_seq}")
        self._next_seq = seq + 1  # resynchronized: one gap or repeat is one violation
        return True

    # -- dispatch ---------------------------------------------------------------------

    def _on_event(self, where: str, event: Event) -> None:
        if isinstance(event, ResponseEvent):
            self._on_lifecycle(where, event)
            return
        if isinstance(event, ErrorEvent):
            return  # a valid end by itself, or before response.failed
        if isinstance(event, OutputItemEvent):
            if event.type == "response.output_item.added":
                self._on_item_added(where, event)
            else:
                self._on_item_done(where, event)
            return
        index = field_of(event, "output_index")
        if not isinstance(index, int):
            return  # audio events belong to no item
        item = self._open_item(where, index, field_of(event, "item_id"))
        if item is None:
            return
        if isinstance(event, ContentPartEvent | SummaryPartEvent):
            self._on_part(where, item, event)
        elif isinstance(event, ContentDeltaEvent | SummaryDeltaEvent):
            self._on_text_delta(where, item, event)
        elif isinstance(event, ContentTextDoneEvent | RefusalDoneEvent | SummaryDoneEvent):
            self._on_text_done(where, item, event)
        elif isinstance(event, ItemDeltaEvent) and event.type in _FIELD_STREAMS:
            self._on_field_delta(where, item, event)
        elif isinstance(event, ArgumentsDoneEvent | InputDoneEvent):
            self._on_field_done(where, item, event)

    def _open_item(self, where: str, index: int, item_id: Any) -> _Item | None:
        """The item an event is about, if it was added and is not done yet."""
        item = self._items.get(index)
        if item is None or item.done is not None:
            state = "never added" if item is None else "already done"
            self._fail(f"{where} for output_index {index}, which is {state}")
            return None
        added_id = item_identity(item.added)[1]
        if isinstance(item_id, str) and added_id is not None and item_id != added_id:
            self._fail(f"{where}: item_id {item_id!r} is not output_index {index}'s {added_id!r}")
        return item

    # -- lifecycle --------------------------------------------------------------------

    def _on_lifecycle(self, where: str, event: ResponseEvent) -> None:
        response = event.response
        if self._response_id is None:
            self._response_id = response.id
        elif response.id != self._response_id:
            self._fail(f"{where}: response id {response.id!r}, was {self._response_id!r}")
        if event.type == "response.created":
            if self._created:
                self._fail(f"duplicate {where}")
            self._created = True
            if response.output:
                # The SDK numbers them from 0; the first output_item.added then collides.
                self._fail(f"{where} already has {len(response.output)} output items")
        if event.type in TERMINAL_EVENTS:
            self._terminal = event.type
            if response.status != _STATUS[event.type]:
                self._fail(f"{where}: response status {response.status!r}")
            self._check_terminal_output(where, event)

    def _check_terminal_output(self, where: str, event: ResponseEvent) -> None:
        items = [self._items[i] for i in sorted(self._items)]
        output = event.response.output
        if event.type == "response.completed":
            for item in items:
                if item.done is None:
                    self._fail(f"{where}: output_index {item.index} was added but never done")
        elif event.type == "response.failed" and not output:
            return  # a failure may drop the items produced so far
        listed: list[_Item] = []
        for item in items:
            if item.done is None and event.type != "response.completed":
                # A cut item may be listed (status "incomplete") or left out.
                position = len(listed)
                if (
                    position >= len(output)
                    or item_identity(output[position])[:2] != (item_identity(item.added)[:2])
                ):
                    continue
            listed.append(item)
        if len(output) != len(listed):
            self._fail(f"{where}: output has {len(output)} items, {len(listed)} were streamed")
        for position, (item, copy) in enumerate(zip(listed, output, strict=False)):
            label = f"{where}: output[{position}]"
            if self._same_identity(label, item, copy):
                self._compare_copy(label, item, copy, whole=item.done is not None)

    # -- items ------------------------------------------------------------------------

    def _on_item_added(self, where: str, event: OutputItemEvent) -> None:
        index = event.output_index
        if index in self._items:
            self._fail(f"{where}: output_index {index} added twice")
            return
        if index != self._next_index:
            self._fail(f"{where}: output_index {index}, expected {self._next_index}")
        self._next_index = max(self._next_index, index + 1)
        item = self._items[index] = _Item(index, event.item)
        field_value = _streamed_field(event.item)
        if field_value is not None:
            item.streamed = field_value

    def _on_item_done(self, where: str, event: OutputItemEvent) -> None:
        index = event.output_index
        item = self._items.get(index)
        if item is None or item.done is not None:
            state = "never added" if item is None else "already done"
            self._fail(f"{where}: output_index {index} was {state}")
            return
        item.done = event.item
        for key, part in sorted(item.parts.items()):
            if part.explicit and not part.closed:
                self._fail(f"{where}: {key[0]} part {key[1]} of output_index {index} is open")
        if item.kind in ("function_call", "custom_tool_call") and not item.streamed_done:
            done_type = "function_call_arguments" if item.kind == "function_call" else "input"
            self._fail(f"{where}: output_index {index} had no {done_type} .done event")
        if not self._same_identity(where, item, event.item):
            return
        parts = _item_parts(event.item, "content")
        streamed = sum(1 for k, p in item.parts.items() if k[0] == "content" and p.explicit)
        if isinstance(event.item, OutputMessage) and parts is not None and len(parts) != streamed:
            self._fail(f"{where}: the message has {len(parts)} parts, {streamed} were streamed")
        self._compare_copy(where, item, event.item, whole=True)

    def _same_identity(self, where: str, item: _Item, copy: Any) -> bool:
        (kind, ident, call), (c_kind, c_ident, c_call) = (
            item_identity(item.added),
            item_identity(copy),
        )
        if c_kind != kind:
            self._fail(f"{where}: item type {c_kind!r}, output_index {item.index} is {kind!r}")
            return False
        # The SDK lets a null id when added be filled in later, never changed.
        if ident is not None and c_ident != ident:
            self._fail(f"{where}: item id {c_ident!r}, output_index {item.index} is {ident!r}")
            return False
        if c_call != call:
            self._fail(f"{where}: call_id {c_call!r}, output_index {item.index} has {call!r}")
            return False
        return True

    def _compare_copy(self, where: str, item: _Item, copy: Any, whole: bool) -> None:
        """A copy of a finished (`whole`) or cut item against what was streamed."""
        for (kind, n), part in sorted(item.parts.items()):
            parts = _item_parts(copy, kind)
            if parts is None:
                continue
            if n >= len(parts):
                if whole:
                    self._fail(f"{where}: the item has no {kind} part {n}")
                continue
            text = part_text(parts[n])
            if text is not None and text != part.text:
                self._fail(
                    f"{where}: {kind} part {n} text {_short(text)} differs from the "
                    f"streamed {_short(part.text)}"
                )
        value = _streamed_field(copy)
        if value is not None and item.streamed is not None and value != item.streamed:
            self._fail(
                f"{where}: {item.kind} {_short(value)} differs from the streamed "
                f"{_short(item.streamed)}"
            )

    # -- parts and text ---------------------------------------------------------------

    def _on_part(self, where: str, item: _Item, event: ContentPartEvent | SummaryPartEvent) -> None:
        if isinstance(event, ContentPartEvent):
            key: PartKey = ("content", event.content_index)
        else:
            key = ("summary", event.summary_index)
        part = item.parts.get(key)
        if event.type.endswith(".added"):
            if part is not None and part.explicit:
                self._fail(f"{where}: {key[0]} part {key[1]} added twice")
                return
            expected = sum(1 for k, p in item.parts.items() if k[0] == key[0] and p.explicit)
            if key[1] != expected:
                self._fail(f"{where}: {key[0]}_index {key[1]}, expected {expected}")
            start = part_text(event.part) or ""
            if part is not None:  # reasoning text streamed before its part was added
                part.explicit, part.type = True, event.part.type
            else:
                item.parts[key] = _Part(event.part.type, start)
            return
        if part is None or not part.explicit or part.closed:
            self._fail(f"{where}: {key[0]} part {key[1]} is not open")
            return
        part.closed = True
        if event.part.type != part.type:
            self._fail(f"{where}: part type {event.part.type!r}, was added as {part.type!r}")
            return
        if part.type in _DONE_PART.values() and not part.text_done:
            self._fail(f"{where}: {key[0]} part {key[1]} had no {part.type} .done event")
        text = part_text(event.part)
        if text is not None and text != part.text:
            self._fail(
                f"{where}: text {_short(text)} differs from the streamed {_short(part.text)}"
            )

    def _text_part(self, where: str, item: _Item, event: Any, part_type: str) -> _Part | None:
        """The open part a text delta or done event is about."""
        if isinstance(event, SummaryDeltaEvent | SummaryDoneEvent):
            key: PartKey = ("summary", event.summary_index)
        else:
            key = ("content", event.content_index)
        part = item.parts.get(key)
        if part is None and part_type == "reasoning_text" and item.kind == "reasoning":
            # Raw reasoning may stream without content_part events.
            part = item.parts[key] = _Part("reasoning_text", "", explicit=False)
        if part is None or part.closed:
            self._fail(f"{where}: {key[0]} part {key[1]} of output_index {item.index} is not open")
            return None
        if part.type != part_type:
            self._fail(f"{where}: {key[0]} part {key[1]} is {part.type}, not {part_type}")
            return None
        return part

    def _on_text_delta(
        self, where: str, item: _Item, event: ContentDeltaEvent | SummaryDeltaEvent
    ) -> None:
        part = self._text_part(where, item, event, _DELTA_PART[event.type])
        if part is not None:
            if part.text_done:
                self._fail(f"{where} after its {part.type} .done event")
            part.text += event.delta

    def _on_text_done(
        self,
        where: str,
        item: _Item,
        event: ContentTextDoneEvent | RefusalDoneEvent | SummaryDoneEvent,
    ) -> None:
        part = self._text_part(where, item, event, _DONE_PART[event.type])
        if part is None:
            return
        if part.text_done:
            self._fail(f"duplicate {where}")
        part.text_done = True
        text = event.refusal if isinstance(event, RefusalDoneEvent) else event.text
        if text != part.text:
            self._fail(
                f"{where}: text {_short(text)} differs from the streamed {_short(part.text)}"
            )

    def _on_field_delta(self, where: str, item: _Item, event: ItemDeltaEvent) -> None:
        item_type, _ = _FIELD_STREAMS[event.type]
        if item.kind != item_type:
            self._fail(f"{where}: output_index {item.index} is a {item.kind}, not a {item_type}")
            return
        if item.streamed_done:
            self._fail(f"{where} after its .done event")
        item.streamed = (item.streamed or "") + event.delta

    def _on_field_done(
        self, where: str, item: _Item, event: ArgumentsDoneEvent | InputDoneEvent
    ) -> None:
        if event.type == "response.mcp_call_arguments.done":
            return  # mcp_call arguments are not compared (the provider runs the tool)
        item_type = "custom_tool_call" if isinstance(event, InputDoneEvent) else "function_call"
        if item.kind != item_type:
            self._fail(f"{where}: output_index {item.index} is a {item.kind}, not a {item_type}")
            return
        if item.streamed_done:
            self._fail(f"duplicate {where}")
        item.streamed_done = True
        value = event.input if isinstance(event, InputDoneEvent) else event.arguments
        if value != (item.streamed or ""):
            self._fail(
                f"{where}: {_short(value)} differs from the streamed {_short(item.streamed or '')}"
            )

    # -- end --------------------------------------------------------------------------

    def finish(self) -> list[str]:
        """The violations found (empty list: the stream is valid)."""
        violations = list(self._violations)
        if self._fed == 0:
            violations.append("empty stream")
        elif self._terminal is None and not self._error:
            violations.append(
                "stream ended without a terminal event "
                "(response.completed, response.incomplete or response.failed)"
            )
        return violations
