"""Typed models and serializers for OpenAI chat completions.

They serve the stream validator (`validator.py`) and the tests that check what clients
receive; the live path never builds them.

Every model keeps unknown fields (``extra="allow"``) and validates strictly (no ``"1"`` ->
``1`` coercion, which would silently rewrite a payload). Serialization dumps with
``exclude_unset=True``: a field sent as ``null`` stays ``null``, an absent one stays absent.
Enum-like fields (``finish_reason``, ``role``, ``object``...) are plain strings so new
values from the API or compatible providers do not fail parsing.
"""

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from extproc.dialects.models_base import LenientModel

_Model = LenientModel


# --- streaming ------------------------------------------------------------------------


class FunctionDelta(_Model):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Model):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class ChoiceDelta(_Model):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(_Model):
    index: int
    delta: ChoiceDelta
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class CompletionUsage(_Model):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class ChatCompletionChunk(_Model):
    id: str
    object: str
    created: int
    model: str
    service_tier: str | None = None
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class StreamErrorDetail(_Model):
    message: str | None = None
    type: str | None = None
    param: Any = None
    code: Any = None


class StreamError(_Model):
    """An in-stream error payload: ``{"error": {...}}`` with no ``object``."""

    error: StreamErrorDetail | str


# --- non-streaming --------------------------------------------------------------------


class FunctionCall(_Model):
    name: str
    arguments: str


class ToolCall(_Model):
    id: str
    type: str
    function: FunctionCall | None = None  # absent for non-function (custom) tool calls


class ChatCompletionMessage(_Model):
    role: str
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_Model):
    index: int
    message: ChatCompletionMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletion(_Model):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None


# --- parse / serialize ----------------------------------------------------------------


def _require_dict(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError(f"OpenAI {what} must be a JSON object, got {type(payload).__name__}")
    return payload


def parse_chunk(payload: dict[str, Any]) -> ChatCompletionChunk:
    """Parse one ``data:`` chunk; raises ValueError if it is not a valid chunk."""
    try:
        return ChatCompletionChunk.model_validate(_require_dict(payload, "chunk"))
    except ValidationError as exc:
        raise ValueError(f"invalid chat.completion.chunk: {exc}") from exc


def is_stream_error(payload: Any) -> bool:
    return isinstance(payload, dict) and "error" in payload and "object" not in payload


def parse_stream_payload(payload: dict[str, Any]) -> ChatCompletionChunk | StreamError:
    """A chunk, or a :class:`StreamError` for an in-stream error; ValueError otherwise."""
    if is_stream_error(payload):
        try:
            return StreamError.model_validate(payload)
        except ValidationError as exc:
            raise ValueError(f"invalid in-stream error payload: {exc}") from exc
    return parse_chunk(payload)


def parse_completion(payload: dict[str, Any]) -> ChatCompletion:
    """Parse a non-streaming response body; raises ValueError if it is not valid."""
    try:
        return ChatCompletion.model_validate(_require_dict(payload, "completion"))
    except ValidationError as exc:
        raise ValueError(f"invalid chat.completion: {exc}") from exc


def _dump(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_unset=True))


def serialize_chunk(chunk: ChatCompletionChunk | StreamError) -> bytes:
    """``data: <compact json>\\n\\n``."""
    return b"data: " + _dump(chunk) + b"\n\n"


def serialize_completion(completion: ChatCompletion) -> bytes:
    return _dump(completion)
