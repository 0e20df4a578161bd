"""Typed models of a Responses API request (`POST /v1/responses`): the body, its tools
and settings (the response echoes them) and its `input` items. Same rules as
`models.py`: unknown fields and types kept, known ones strict, key order kept. No
top-level field is required (a stored `prompt` may supply `model` and `input`, as the
SDK's types say); the dialect checks what it needs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag, ValidationError

from extproc.dialects.models_base import field_of, type_of
from extproc.dialects.responses.models import (
    BUILTIN_TOOL_TYPES,
    OTHER,
    ContentPart,
    CustomToolCall,
    FunctionCall,
    Model,
    ReasoningItem,
    dump,
    require_dict,
)

# --- tools and settings (in the request, echoed in the response) ----------------------


class FunctionTool(Model):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    # Both required by the SDK (nullable); the API accepts a tool without them.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(Model):
    type: Literal["custom"] = "custom"
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None  # {type: text} or {type: grammar, syntax, definition}


class NamespaceTool(Model):
    type: Literal["namespace"] = "namespace"
    name: str
    description: str | None = None
    tools: list[Tool]


class McpTool(Model):
    type: Literal["mcp"] = "mcp"
    server_label: str
    server_url: str | None = None
    connector_id: str | None = None
    server_description: str | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    require_approval: str | dict[str, Any] | None = None


class BuiltinTool(Model):
    """Any other type of `BUILTIN_TOOL_TYPES`; its settings are kept as extra fields."""

    type: str


class GenericTool(Model):
    """A tool type this gateway does not know (the dialect refuses those in requests)."""

    type: str


def _tool_tag(value: Any) -> str:
    kind = type_of(value)
    if not isinstance(kind, str):
        return OTHER
    if kind in ("function", "custom", "namespace", "mcp"):  # before the built-in set
        return kind
    return "builtin" if kind in BUILTIN_TOOL_TYPES else OTHER


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[McpTool, Tag("mcp")]
    | Annotated[BuiltinTool, Tag("builtin")]
    | Annotated[GenericTool, Tag(OTHER)],
    Discriminator(_tool_tag),
]
NamespaceTool.model_rebuild()


class ToolChoice(Model):
    """The object forms: {type: function|custom, name}, {type: mcp, server_label, name?},
    {type: allowed_tools, mode, tools}, {type: <built-in>}."""

    type: str
    name: str | None = None
    server_label: str | None = None
    mode: str | None = None
    tools: list[dict[str, Any]] | None = None


class Reasoning(Model):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None  # deprecated spelling of summary


class TextFormat(Model):
    type: str  # text | json_object | json_schema; `schema` stays an extra field
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(Model):
    format: TextFormat | None = None
    verbosity: str | None = None


# --- input items ----------------------------------------------------------------------


class InputMessage(Model):
    """A message of any role: the "easy" form (no type, content a string), the typed
    form, and an assistant output message replayed as history (with id and status)."""

    type: Literal["message"] | None = None
    id: str | None = None
    role: str
    content: str | list[ContentPart]
    status: str | None = None


class FunctionCallOutput(Model):
    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    call_id: str  # typed optional in today's SDK; the API requires it
    output: str | list[ContentPart]


class CustomToolCallOutput(Model):
    type: Literal["custom_tool_call_output"] = "custom_tool_call_output"
    id: str | None = None
    call_id: str
    output: str | list[ContentPart]


class ItemReference(Model):
    type: Literal["item_reference"] | None = None
    id: str


class GenericInputItem(Model):
    """Any other item (computer_call_output, mcp_approval_response, compaction, ...)."""

    type: str


# The items typed here; other items replayed as history (web_search_call, computer_call,
# mcp_*, ...) are generic: Codex sends them without the ids and statuses the output
# models require, and the gateway reads nothing in them.
_INPUT_ITEMS = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "item_reference",
    }
)


def _input_tag(value: Any) -> str:
    if not isinstance(value, dict):
        value = {"type": field_of(value, "type"), "role": field_of(value, "role")}
    kind = value.get("type")
    if kind is None:
        # Two items may omit their type: a message (it has a role) and a reference.
        return "message" if value.get("role") is not None else "item_reference"
    return kind if isinstance(kind, str) and kind in _INPUT_ITEMS else OTHER


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[CustomToolCall, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutput, Tag("custom_tool_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[ItemReference, Tag("item_reference")]
    | Annotated[GenericInputItem, Tag(OTHER)],
    Discriminator(_input_tag),
]


class StreamOptions(Model):
    include_obfuscation: bool | None = None  # on by default: padding on delta events


class ResponsesRequest(Model):
    model: str | None = None
    input: str | list[InputItem] | None = None
    instructions: str | None = None  # not carried over by previous_response_id
    tools: list[Tool] | None = None
    tool_choice: str | ToolChoice | None = None  # "none" | "auto" | "required" | object
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    include: list[str] | None = None  # e.g. "reasoning.encrypted_content"
    store: bool | None = None  # the API's default is true
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    background: bool | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    temperature: int | float | None = None
    top_p: int | float | None = None
    top_logprobs: int | None = None
    text: TextConfig | None = None
    truncation: str | None = None
    metadata: dict[str, str] | None = None
    prompt: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    user: str | None = None


def parse_request(payload: dict[str, Any]) -> ResponsesRequest:
    """Parse a request body; raises ValueError if it is not a valid request."""
    try:
        return ResponsesRequest.model_validate(require_dict(payload, "request"))
    except ValidationError as exc:
        raise ValueError(f"invalid Responses request: {exc}") from exc


def serialize_request(request: ResponsesRequest) -> bytes:
    return dump(request)
