"""Typed models of OpenAI's Responses API, in three modules: here the shared base,
content parts and output items; the request, its input items and tools in
`models_request.py`; the ``response`` object and the stream events (``parse_event``,
``parse_response``) in `models_events.py`.

They serve the stream validator (`validator.py`) and the tests that check what clients
receive; the live path never builds them (it forwards original bytes and edits JSON
where a policy changed something).

Lenient about *unknown* things, strict about *known* ones, as the other dialects:

- every model keeps unknown fields (``extra="allow"``) and they survive a round trip;
- an unknown item, part or tool ``type`` parses into a generic model;
- a known type is validated in strict mode (no ``"1"`` -> ``1`` coercion, which would
  silently rewrite a payload). Required fields are the ones the ``openai`` SDK requires,
  except where real traffic omits them (noted at the field).

Serialization dumps with ``exclude_unset=True`` (absent stays absent, ``null`` stays
``null``) and in the key order the payload came in: the API's order differs between
objects and versions (``id, type, status`` in one item, ``type, id`` in another), and a
re-serialized event must be the provider's bytes. Fields set later go last. Enum-like
fields (``status``, ``role``, ``object``...) are plain strings so that a new value from
the API does not fail parsing; numbers the API sends as floats are ``int | float`` so
that ``1759064129`` does not come back as ``1759064129.0``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from extproc.dialects.models_base import OTHER, LenientModel, discriminator, field_of

# Tool types the API itself defines (today's SDK `ToolParam`), beside the client's own
# `function` and `custom` tools. Some run on OpenAI's side (web_search, mcp...), some are
# run by the client although the API defines their calls (computer, local_shell, shell,
# apply_patch). `namespace` is no tool but a named group of function and custom tools; it
# is listed so that the dialect, which accepts function, custom and these, accepts it.
BUILTIN_TOOL_TYPES: frozenset[str] = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer",
        "computer_use_preview",
        "local_shell",
        "shell",
        "apply_patch",
        "mcp",
        "tool_search",
        "programmatic_tool_calling",
        "namespace",
    }
)


class Model(LenientModel):
    """Base of every Responses model: the dialects' lenient base, key order kept."""

    _keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_key_order(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, dict):
            model._keys = tuple(data)
        return model

    def __init__(self, /, **data: Any) -> None:
        super().__init__(**data)
        self._keys = ()  # built in code, not parsed: the declaration order is the order

    @model_serializer(mode="wrap")
    def _in_key_order(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if not self._keys or not isinstance(out, dict):
            return out
        ordered = {key: out[key] for key in self._keys if key in out}
        ordered.update(out)  # keys already there keep their place; new ones go last
        return ordered


def _tags(*classes: type[Model]) -> frozenset[str]:
    return frozenset(str(cls.model_fields["type"].default) for cls in classes)


# --- content parts --------------------------------------------------------------------
# One union serves message content (input and output), content_part events, reasoning
# summaries and reasoning content: which type may stand where is the validator's concern.


class OutputText(Model):
    type: Literal["output_text"] = "output_text"
    text: str
    # Required by the SDK on output, but Codex replays assistant text without them.
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(Model):
    type: Literal["refusal"] = "refusal"
    refusal: str


class ReasoningText(Model):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class SummaryText(Model):
    type: Literal["summary_text"] = "summary_text"
    text: str


class InputText(Model):
    type: Literal["input_text"] = "input_text"
    text: str


class InputImage(Model):
    type: Literal["input_image"] = "input_image"
    detail: str | None = None  # required by the SDK; the API defaults it (Codex omits it)
    image_url: str | None = None
    file_id: str | None = None


class InputFile(Model):
    type: Literal["input_file"] = "input_file"
    file_id: str | None = None
    file_url: str | None = None
    file_data: str | None = None
    filename: str | None = None


class GenericPart(Model):
    """Any other part type (input_audio, ...); keeps all fields."""

    type: str


_PARTS = (OutputText, Refusal, ReasoningText, SummaryText, InputText, InputImage, InputFile)
ContentPart = Annotated[
    Annotated[OutputText, Tag("output_text")]
    | Annotated[Refusal, Tag("refusal")]
    | Annotated[ReasoningText, Tag("reasoning_text")]
    | Annotated[SummaryText, Tag("summary_text")]
    | Annotated[InputText, Tag("input_text")]
    | Annotated[InputImage, Tag("input_image")]
    | Annotated[InputFile, Tag("input_file")]
    | Annotated[GenericPart, Tag(OTHER)],
    discriminator(_tags(*_PARTS)),
]


def part_text(part: Any) -> str | None:
    """The text a person reads in a part (a refusal's too); None for other parts."""
    if isinstance(part, OutputText | ReasoningText | SummaryText | InputText):
        return part.text
    if isinstance(part, Refusal):
        return part.refusal
    return None


# --- output items ---------------------------------------------------------------------


class OutputMessage(Model):
    id: str
    type: Literal["message"] = "message"
    status: str
    role: str
    content: list[ContentPart]


class FunctionCall(Model):
    id: str | None = None  # "fc_..."; absent in replayed input
    type: Literal["function_call"] = "function_call"
    status: str | None = None
    arguments: str  # a JSON text, streamed in pieces
    call_id: str
    name: str


class CustomToolCall(Model):
    id: str | None = None
    type: Literal["custom_tool_call"] = "custom_tool_call"
    status: str | None = None
    input: str
    call_id: str
    name: str


class ReasoningItem(Model):
    id: str | None = None  # "rs_..."; required by the SDK, but Codex replays it without
    type: Literal["reasoning"] = "reasoning"
    summary: list[ContentPart]
    content: list[ContentPart] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class WebSearchCall(Model):
    id: str
    type: Literal["web_search_call"] = "web_search_call"
    status: str
    action: dict[str, Any] | None = None  # required by the SDK; its query comes at done


class FileSearchCall(Model):
    id: str
    type: Literal["file_search_call"] = "file_search_call"
    status: str
    queries: list[str]
    results: list[Any] | None = None


class CodeInterpreterCall(Model):
    id: str
    type: Literal["code_interpreter_call"] = "code_interpreter_call"
    status: str
    container_id: str
    code: str | None = None
    outputs: list[Any] | None = None


class ImageGenerationCall(Model):
    id: str
    type: Literal["image_generation_call"] = "image_generation_call"
    status: str
    result: str | None = None


class McpCall(Model):
    id: str
    type: Literal["mcp_call"] = "mcp_call"
    status: str | None = None
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    error: Any = None  # a string in older streams, an object in today's SDK


class McpListTools(Model):
    id: str
    type: Literal["mcp_list_tools"] = "mcp_list_tools"
    server_label: str
    tools: list[dict[str, Any]]
    error: Any = None


class McpApprovalRequest(Model):
    id: str
    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    server_label: str
    name: str
    arguments: str


class ComputerCall(Model):
    id: str
    type: Literal["computer_call"] = "computer_call"
    status: str
    call_id: str
    pending_safety_checks: list[Any]


class LocalShellCall(Model):
    id: str
    type: Literal["local_shell_call"] = "local_shell_call"
    status: str
    call_id: str
    action: dict[str, Any]


class GenericItem(Model):
    """Any other item type (shell_call, apply_patch_call, compaction, ...)."""

    type: str


OUTPUT_ITEM_CLASSES: tuple[type[Model], ...] = (
    OutputMessage,
    FunctionCall,
    CustomToolCall,
    ReasoningItem,
    WebSearchCall,
    FileSearchCall,
    CodeInterpreterCall,
    ImageGenerationCall,
    McpCall,
    McpListTools,
    McpApprovalRequest,
    ComputerCall,
    LocalShellCall,
)
OutputItem = Annotated[
    Annotated[OutputMessage, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[CustomToolCall, Tag("custom_tool_call")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[WebSearchCall, Tag("web_search_call")]
    | Annotated[FileSearchCall, Tag("file_search_call")]
    | Annotated[CodeInterpreterCall, Tag("code_interpreter_call")]
    | Annotated[ImageGenerationCall, Tag("image_generation_call")]
    | Annotated[McpCall, Tag("mcp_call")]
    | Annotated[McpListTools, Tag("mcp_list_tools")]
    | Annotated[McpApprovalRequest, Tag("mcp_approval_request")]
    | Annotated[ComputerCall, Tag("computer_call")]
    | Annotated[LocalShellCall, Tag("local_shell_call")]
    | Annotated[GenericItem, Tag(OTHER)],
    discriminator(_tags(*OUTPUT_ITEM_CLASSES)),
]

# --- parse / serialize ----------------------------------------------------------------


def require_dict(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError(f"Responses {what} must be a JSON object, got {type(payload).__name__}")
    return payload


def dump(model: BaseModel) -> bytes:
    """Compact JSON, as the API writes it."""
    return orjson.dumps(model.model_dump(mode="json", exclude_unset=True))


def item_identity(item: Any) -> tuple[str, str | None, str | None]:
    """(type, id, call_id): what the SDK's accumulator requires to stay the same for one
    output index from `output_item.added` through `.done` to the terminal response."""
    kind, ident, call = (field_of(item, name) for name in ("type", "id", "call_id"))
    return (
        str(kind),
        ident if isinstance(ident, str) else None,
        call if isinstance(call, str) else None,
    )
