"""Typed models, serializers and a stream validator for the Anthropic Messages API.

Models are lenient about *unknown* things and strict about *known* ones:

- every model keeps unknown fields (``extra="allow"``) and they survive a round trip;
- an unknown event, content block or delta ``type`` parses into a generic model;
- a known type whose fields do not validate (strict mode: no ``"1"`` -> ``1`` coercion,
  which would silently rewrite the payload) makes :func:`parse_event` return an
  :class:`UnknownEvent` carrying the payload unchanged and the reason in ``parse_error``.

Serialization dumps with ``exclude_unset=True``, so absent fields stay absent and explicit
``null`` stays ``null``. Fields are declared in the order the API sends them.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
)

_OTHER = "__other__"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    def model_post_init(self, context: Any, /) -> None:
        # A `type` filled in from its default (programmatic construction) must still be
        # serialized under exclude_unset; a parsed payload always has it set anyway.
        if "type" in type(self).model_fields and getattr(self, "type", None) is not None:
            self.__pydantic_fields_set__.add("type")


def _discriminator(known: frozenset[str]) -> Callable[[Any], str]:
    def tag(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if isinstance(kind, str) and kind in known else _OTHER

    return tag


# --- content blocks -------------------------------------------------------------------


class TextBlock(_Model):
    type: Literal["text"] = "text"
    text: str
    citations: list[Any] | None = None


class ThinkingBlock(_Model):
    type: Literal["thinking"] = "thinking"
    thinking: str
    # Absent in the content_block_start of a stream (it arrives as a signature_delta).
    signature: str | None = None


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class ToolUseBlock(_Model):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class GenericBlock(_Model):
    """Any other block type (server_tool_use, web_search_tool_result, ...); keeps all fields."""

    type: str


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[GenericBlock, Tag(_OTHER)],
    Discriminator(_discriminator(frozenset({"text", "thinking", "redacted_thinking", "tool_use"}))),
]

# --- deltas ---------------------------------------------------------------------------


class TextDelta(_Model):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(_Model):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(_Model):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(_Model):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class GenericDelta(_Model):
    """Any other delta type (citations_delta, ...); keeps all fields."""

    type: str


Delta = Annotated[
    Annotated[TextDelta, Tag("text_delta")]
    | Annotated[InputJsonDelta, Tag("input_json_delta")]
    | Annotated[ThinkingDelta, Tag("thinking_delta")]
    | Annotated[SignatureDelta, Tag("signature_delta")]
    | Annotated[GenericDelta, Tag(_OTHER)],
    Discriminator(
        _discriminator(
            frozenset({"text_delta", "input_json_delta", "thinking_delta", "signature_delta"})
        )
    ),
]

# --- message and events ---------------------------------------------------------------


class Usage(_Model):
    """Token usage; both the full form (message) and the cumulative delta form."""

    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens: int | None = None


class Message(_Model):
    id: str
    type: Literal["message"] = "message"
    role: str
    model: str
    content: list[ContentBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageStart(_Model):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStart(_Model):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class ContentBlockDelta(_Model):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Delta


class ContentBlockStop(_Model):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaBody(_Model):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDelta(_Model):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaBody
    usage: Usage


class MessageStop(_Model):
    type: Literal["message_stop"] = "message_stop"


class Ping(_Model):
    type: Literal["ping"] = "ping"


class ErrorDetail(_Model):
    type: str
    message: str


class ErrorEvent(_Model):
    type: Literal["error"] = "error"
    error: ErrorDetail


class UnknownEvent(_Model):
    """An event of an unknown type, or of a known type whose payload did not validate.

    ``type`` is whatever the payload held (normally a str). ``parse_error`` says why a
    known type was not parsed into its model (None for genuinely unknown types).
    """

    type: Any = None
    _parse_error: str | None = PrivateAttr(default=None)

    @property
    def parse_error(self) -> str | None:
        return self._parse_error


_EVENT_MODELS: dict[str, type[_Model]] = {
    "message_start": MessageStart,
    "content_block_start": ContentBlockStart,
    "content_block_delta": ContentBlockDelta,
    "content_block_stop": ContentBlockStop,
    "message_delta": MessageDelta,
    "message_stop": MessageStop,
    "ping": Ping,
    "error": ErrorEvent,
}
EVENT_TYPES: frozenset[str] = frozenset(_EVENT_MODELS)

AnthropicEvent = Annotated[
    Annotated[MessageStart, Tag("message_start")]
    | Annotated[ContentBlockStart, Tag("content_block_start")]
    | Annotated[ContentBlockDelta, Tag("content_block_delta")]
    | Annotated[ContentBlockStop, Tag("content_block_stop")]
    | Annotated[MessageDelta, Tag("message_delta")]
    | Annotated[MessageStop, Tag("message_stop")]
    | Annotated[Ping, Tag("ping")]
    | Annotated[ErrorEvent, Tag("error")]
    | Annotated[UnknownEvent, Tag(_OTHER)],
    Discriminator(_discriminator(EVENT_TYPES)),
]

_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnthropicEvent)


def parse_event(payload: dict[str, Any]) -> AnthropicEvent:
    """Parse one streaming event's JSON payload. Never raises for a dict."""
    if not isinstance(payload, dict):
        raise ValueError(f"Anthropic event payload must be a JSON object, got {type(payload)}")
    try:
        return _EVENT_ADAPTER.validate_python(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        event = UnknownEvent.model_validate(payload)
        event._parse_error = str(exc)
        return event


def parse_message(payload: dict[str, Any]) -> Message:
    """Parse a non-streaming response body; raises ValueError if it is not a valid Message."""
    if not isinstance(payload, dict):
        raise ValueError(f"Anthropic message must be a JSON object, got {type(payload)}")
    return Message.model_validate(payload)


def _dump(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_unset=True))


def serialize_event(event: BaseModel) -> bytes:
    """``event: <type>\\ndata: <compact json>\\n\\n`` (no event line if type is not a str)."""
    data = _dump(event)
    kind = getattr(event, "type", None)
    if not isinstance(kind, str):
        return b"data: " + data + b"\n\n"
    if "\n" in kind or "\r" in kind:
        raise ValueError(f"event type {kind!r} cannot be framed as SSE")
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def serialize_message(message: Message) -> bytes:
    return _dump(message)


# --- stream validation ----------------------------------------------------------------

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

    def feed(self, event_type: str, payload: dict[str, Any] | None) -> None:
        """Feed one SSE event: its ``event:`` name and its parsed ``data:`` JSON."""
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
