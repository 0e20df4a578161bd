"""The event grammar of one Anthropic Messages stream, checked as the client receives it
(`validate_streams` and the tests)."""

from __future__ import annotations

from typing import Any

import orjson

from extproc.dialects.anthropic.models import (
    EVENT_TYPES,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageStop,
    UnknownEvent,
    parse_event,
)
from extproc.sse import Frame

# Which block types each known delta type may update; blocks of unknown types accept any.
_DELTA_BLOCKS: dict[str, frozenset[str]] = {
    "text_delta": frozenset({"text"}),
    "citations_delta": frozenset({"text"}),
    "input_json_delta": frozenset({"tool_use", "server_tool_use", "mcp_tool_use"}),
    "thinking_delta": frozenset({"thinking"}),
    "signature_delta": frozenset({"thinking"}),
}
_KNOWN_BLOCKS = frozenset(
    {"text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "mcp_tool_use"}
)


class StreamValidator:
    """Checks the event grammar of one Messages stream; see :meth:`finish`."""

    def __init__(self) -> None:
        self._violations: list[str] = []
        self._fed = 0
        self._known = 0  # known, non-error events seen
        self._started = False
        self._reported_no_start = False
        self._stopped = False
        self._last: str | None = None
        self._next_index = 0
        self._open: tuple[int, str] | None = None  # (index, block type)
        self._tool_json: list[str] = []
        self._saw_tool_use = False
        self._message_delta = False

    def _fail(self, message: str) -> None:
        self._violations.append(message)

    def feed(self, frame: Frame) -> None:
        """Feed one SSE event as the client received it."""
        if frame.data is None:
            return  # comments and empty events carry nothing to check
        try:
            payload = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            payload = None
        self.feed_event(frame.event or "", payload if isinstance(payload, dict) else None)

    def feed_event(self, event_type: str, payload: dict[str, Any] | None) -> None:
        """Feed one event: its ``event:`` name and its parsed ``data:`` JSON."""
        self._fed += 1
        if event_type not in EVENT_TYPES:
            return  # unknown event types pass
        if payload is not None and payload.get("type") != event_type:
            self._fail(f"event {event_type!r} has data of type {payload.get('type')!r}")
        if self._stopped:
            self._fail(f"{event_type} after message_stop")
        self._last = event_type
        if event_type == "error":
            return  # a valid terminator anywhere
        self._known += 1
        if event_type == "message_start":
            self._on_message_start()
        elif not self._started and not self._reported_no_start:
            self._reported_no_start = True
            self._fail(f"{event_type} before message_start")
        if payload is None:
            if event_type != "ping":
                self._fail(f"{event_type} event without JSON data")
            return
        event = parse_event(payload)
        if isinstance(event, UnknownEvent):
            self._fail(f"malformed {event_type} event: {event.parse_error}")
        elif isinstance(event, ContentBlockStart):
            self._on_block_start(event)
        elif isinstance(event, ContentBlockDelta):
            self._on_block_delta(event)
        elif isinstance(event, ContentBlockStop):
            self._on_block_stop(event.index)
        elif isinstance(event, MessageDelta):
            self._on_message_delta(event)
        elif isinstance(event, MessageStop):
            self._stopped = True
            if self._open is not None:
                self._fail(f"message_stop while content block {self._open[0]} is open")

    def _on_message_start(self) -> None:
        if self._started:
            self._fail("duplicate message_start")
        elif self._known > 1 and not self._reported_no_start:
            self._fail("message_start is not the first event")
        self._started = True

    def _on_block_start(self, event: ContentBlockStart) -> None:
        index, kind = event.index, event.content_block.type
        if self._message_delta:
            self._fail(f"content_block_start {index} after message_delta")
        if self._open is not None:
            self._fail(f"content_block_start {index} while block {self._open[0]} is still open")
        if index != self._next_index:
            self._fail(f"content_block_start index {index}, expected {self._next_index}")
        if kind == "text" and self._saw_tool_use:
            self._fail(f"text block {index} after a tool_use block")
        if kind == "tool_use":
            self._saw_tool_use = True
        self._open = (index, kind)
        self._next_index = index + 1
        self._tool_json = []

    def _on_block_delta(self, event: ContentBlockDelta) -> None:
        delta = event.delta
        if self._open is None or self._open[0] != event.index:
            open_index = "none" if self._open is None else self._open[0]
            self._fail(f"content_block_delta for index {event.index}, open block is {open_index}")
            return
        kind = self._open[1]
        allowed = _DELTA_BLOCKS.get(delta.type)
        if allowed is not None and kind in _KNOWN_BLOCKS and kind not in allowed:
            self._fail(f"{delta.type} for {kind} block {event.index}")
        if isinstance(delta, InputJsonDelta):
            self._tool_json.append(delta.partial_json)

    def _on_block_stop(self, index: int) -> None:
        if self._open is None or self._open[0] != index:
            open_index = "none" if self._open is None else self._open[0]
            self._fail(f"content_block_stop for index {index}, open block is {open_index}")
            return
        if self._open[1] == "tool_use":
            text = "".join(self._tool_json) or "{}"
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                self._fail(f"tool_use block {index} input is not valid JSON: {exc}")
            else:
                if not isinstance(parsed, dict):
                    self._fail(f"tool_use block {index} input is not a JSON object")
        self._open = None

    def _on_message_delta(self, event: MessageDelta) -> None:
        if self._message_delta:
            self._fail("duplicate message_delta")
        self._message_delta = True
        if self._open is not None:
            self._fail(f"message_delta while content block {self._open[0]} is open")
            self._open = None  # report the missing stop once
        if event.delta.stop_reason == "tool_use" and not self._saw_tool_use:
            self._fail("stop_reason is tool_use but no tool_use block was sent")

    def finish(self) -> list[str]:
        """The violations found (empty list: the stream is valid)."""
        violations = list(self._violations)
        if self._fed == 0:
            violations.append("empty stream")
        elif not self._stopped and self._last != "error":
            violations.append("stream ended without message_stop")
        return violations
