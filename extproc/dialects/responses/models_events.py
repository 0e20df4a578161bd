"""Typed models of the Responses API's ``response`` object (the non-streaming body and
every lifecycle event's) and of its stream events (today's SDK `ResponseStreamEvent`).

Same rules as `models.py`. Events whose fields are the same share a class, with a
``type`` literal naming the whole family; `EVENT_TYPES` maps every known type to its
class. Every event carries ``sequence_number`` (required, as in the SDK). Delta events
may carry ``obfuscation`` padding, kept as an extra field.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import PrivateAttr, ValidationError, model_validator

from extproc.dialects.models_base import type_of
from extproc.dialects.responses.models import (
    ContentPart,
    Model,
    OutputItem,
    dump,
    require_dict,
)
from extproc.dialects.responses.models_request import Reasoning, TextConfig, Tool, ToolChoice

# --- the response object --------------------------------------------------------------


class ResponseError(Model):
    code: str | None = None
    message: str


class IncompleteDetails(Model):
    reason: str | None = None


class TokenDetails(Model):
    # The SDK requires `cache_write_tokens`; the API sends only `cached_tokens` (2025).
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class Usage(Model):
    input_tokens: int
    input_tokens_details: TokenDetails | None = None
    output_tokens: int
    output_tokens_details: TokenDetails | None = None
    total_tokens: int


class Response(Model):
    """The ``response`` object: the non-streaming body and every lifecycle event's."""

    id: str
    object: str  # "response"
    created_at: int | float
    status: str | None = None
    background: bool | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | list[Any] | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    service_tier: str | None = None
    store: bool | None = None
    temperature: int | float | None = None
    text: TextConfig | None = None
    tool_choice: str | ToolChoice
    tools: list[Tool]
    top_logprobs: int | None = None
    top_p: int | float | None = None
    truncation: str | None = None
    usage: Usage | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None


def parse_response(payload: dict[str, Any]) -> Response:
    """Parse a non-streaming response body; raises ValueError if it is not valid."""
    try:
        return Response.model_validate(require_dict(payload, "response"))
    except ValidationError as exc:
        raise ValueError(f"invalid response object: {exc}") from exc


def serialize_response(response: Response) -> bytes:
    return dump(response)


# --- events ---------------------------------------------------------------------------


class Event(Model):
    type: str
    sequence_number: int


class ResponseEvent(Event):
    """The lifecycle events: each carries the whole ``response`` object."""

    type: Literal[
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    response: Response


class OutputItemEvent(Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ItemEvent(Event):
    """A hosted tool's progress: only which item it is about."""

    type: Literal[
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
        "response.image_generation_call.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_list_tools.failed",
        "response.compaction.compacting",
    ]
    item_id: str
    output_index: int


class ItemDeltaEvent(Event):
    """A piece of an item's own streamed field (arguments, input, code)."""

    type: Literal[
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta",
        "response.code_interpreter_call_code.delta",
    ]
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(Event):
    type: Literal["response.function_call_arguments.done", "response.mcp_call_arguments.done"]
    item_id: str
    output_index: int
    arguments: str


class InputDoneEvent(Event):
    type: Literal["response.custom_tool_call_input.done"]
    item_id: str
    output_index: int
    input: str


class CodeDoneEvent(Event):
    type: Literal["response.code_interpreter_call_code.done"]
    item_id: str
    output_index: int
    code: str


class ContentPartEvent(Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ContentDeltaEvent(Event):
    """A piece of a content part's text; ``logprobs`` is sent on output_text only (and
    required there by the SDK, but streams before August 2025 lack it)."""

    type: Literal[
        "response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta"
    ]
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] | None = None


class ContentTextDoneEvent(Event):
    type: Literal["response.output_text.done", "response.reasoning_text.done"]
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] | None = None


class RefusalDoneEvent(Event):
    type: Literal["response.refusal.done"]
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class AnnotationAddedEvent(Event):
    type: Literal["response.output_text.annotation.added"]
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: dict[str, Any] | None = None


class SummaryPartEvent(Event):
    type: Literal["response.reasoning_summary_part.added", "response.reasoning_summary_part.done"]
    item_id: str
    output_index: int
    summary_index: int
    part: ContentPart


class SummaryDeltaEvent(Event):
    type: Literal["response.reasoning_summary_text.delta"]
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryDoneEvent(Event):
    type: Literal["response.reasoning_summary_text.done"]
    item_id: str
    output_index: int
    summary_index: int
    text: str


class PartialImageEvent(Event):
    type: Literal["response.image_generation_call.partial_image"]
    item_id: str
    output_index: int
    partial_image_b64: str
    partial_image_index: int


class AudioDeltaEvent(Event):
    type: Literal["response.audio.delta", "response.audio.transcript.delta"]
    delta: str


class AudioDoneEvent(Event):
    type: Literal["response.audio.done", "response.audio.transcript.done"]


class ShellCommandEvent(Event):
    type: Literal["response.shell_call_command.added", "response.shell_call_command.done"]
    output_index: int
    command_index: int
    command: str


class ShellCommandDeltaEvent(Event):
    type: Literal["response.shell_call_command.delta"]
    output_index: int
    command_index: int
    delta: str


class ShellOutputDeltaEvent(Event):
    type: Literal["response.shell_call_output_content.delta"]
    item_id: str
    output_index: int
    command_index: int
    delta: dict[str, Any]  # {stdout?, stderr?}


class ShellOutputDoneEvent(Event):
    type: Literal["response.shell_call_output_content.done"]
    item_id: str
    output_index: int
    command_index: int
    output: list[Any]


class ErrorDetail(Model):
    type: str | None = None
    code: str | int | None = None
    message: str
    param: str | None = None


class ErrorEvent(Event):
    """An in-stream error. The API documents (and the SDK types) it flat, ``{type,
    code, message, param}``; the real API nests the fields under ``error``. Either
    shape, or both at once (what the gateway writes), is valid."""

    type: Literal["error"]
    code: str | None = None
    message: str | None = None
    param: str | None = None
    error: ErrorDetail | None = None

    @model_validator(mode="after")
    def _has_a_message(self) -> ErrorEvent:
        if self.message is None and self.error is None:
            raise ValueError("error event has neither `message` nor `error`")
        return self

    @property
    def error_message(self) -> str:
        return self.error.message if self.error is not None else str(self.message)


class UnknownEvent(Model):
    """An event of an unknown type, or of a known type whose payload did not validate.

    ``type`` is whatever the payload held (normally a str). ``parse_error`` says why a
    known type was not parsed into its model (None for genuinely unknown types).
    """

    type: Any = None
    _parse_error: str | None = PrivateAttr(default=None)

    @property
    def parse_error(self) -> str | None:
        return self._parse_error


_FAMILIES: tuple[type[Event], ...] = (
    ResponseEvent,
    OutputItemEvent,
    ItemEvent,
    ItemDeltaEvent,
    ArgumentsDoneEvent,
    InputDoneEvent,
    CodeDoneEvent,
    ContentPartEvent,
    ContentDeltaEvent,
    ContentTextDoneEvent,
    RefusalDoneEvent,
    AnnotationAddedEvent,
    SummaryPartEvent,
    SummaryDeltaEvent,
    SummaryDoneEvent,
    PartialImageEvent,
    AudioDeltaEvent,
    AudioDoneEvent,
    ShellCommandEvent,
    ShellCommandDeltaEvent,
    ShellOutputDeltaEvent,
    ShellOutputDoneEvent,
    ErrorEvent,
)
# Every known event type -> its class, read from the classes' `type` literals.
EVENT_TYPES: dict[str, type[Event]] = {
    kind: family
    for family in _FAMILIES
    for kind in get_args(family.model_fields["type"].annotation)
}
LIFECYCLE_EVENTS = frozenset(get_args(ResponseEvent.model_fields["type"].annotation))
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def parse_event(payload: dict[str, Any]) -> Event | UnknownEvent:
    """Parse one stream event's JSON payload. Never raises for a dict."""
    require_dict(payload, "event")
    kind = payload.get("type")
    family = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if family is None:
        return UnknownEvent.model_validate(payload)
    try:
        return family.model_validate(payload)
    except ValidationError as exc:
        event = UnknownEvent.model_validate(payload)
        # One line, for the validator's messages and logs: "where: what; where: what".
        event._parse_error = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        return event


def serialize_event(event: Model) -> bytes:
    """``event: <type>\\ndata: <compact json>\\n\\n`` (no event line if type is not a str),
    as the API frames every event."""
    data = dump(event)
    kind = type_of(event)
    if not isinstance(kind, str):
        return b"data: " + data + b"\n\n"
    if "\n" in kind or "\r" in kind:
        raise ValueError(f"event type {kind!r} cannot be framed as SSE")
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
