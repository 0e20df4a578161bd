"""Typed models and serializers for the Anthropic Messages API.

They serve the stream validator (`validator.py`) and the tests that check what clients
receive; the live path never builds them (it forwards original bytes and edits JSON
where a policy changed something).

Models are lenient about *unknown* things and strict about *known* ones:

- every model keeps unknown fields (``extra="allow"``) and they survive a round trip;
- an unknown event, content block or delta ``type`` parses into a generic model;
- a known type whose fields do not validate (strict mode: no ``"1"`` -> ``1`` coercion,
  which would silently rewrite the payload) makes :func:`parse_event` return an
  :class:`UnknownEvent` carrying the payload unchanged and the reason in ``parse_error``.

Serialization dumps with ``exclude_unset=True``, so absent fields stay absent and explicit
``null`` stays ``null``. Fields are declared in the order the API sends them.
"""

from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
)

from extproc.dialects.models_base import OTHER, LenientModel, discriminator, type_of

_OTHER = OTHER
_Model = LenientModel


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
    discriminator(frozenset({"text", "thinking", "redacted_thinking", "tool_use"})),
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
    discriminator(
        frozenset({"text_delta", "input_json_delta", "thinking_delta", "signature_delta"})
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
    discriminator(EVENT_TYPES),
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
    kind = type_of(event)
    if not isinstance(kind, str):
        return b"data: " + data + b"\n\n"
    if "\n" in kind or "\r" in kind:
        raise ValueError(f"event type {kind!r} cannot be framed as SSE")
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def serialize_message(message: Message) -> bytes:
    return _dump(message)
