"""Typed models, serializers and a stream validator for OpenAI chat completions.

Every model keeps unknown fields (``extra="allow"``) and validates strictly (no ``"1"`` ->
``1`` coercion, which would silently rewrite a payload). Serialization dumps with
``exclude_unset=True``: a field sent as ``null`` stays ``null``, an absent one stays absent.
Enum-like fields (``finish_reason``, ``role``, ``object``...) are plain strings so new
values from the API or compatible providers do not fail parsing.
"""

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

DONE = b"data: [DONE]\n\n"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


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


# --- stream validation ----------------------------------------------------------------


class _ToolCallState:
    __slots__ = ("arguments", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.arguments: list[str] = []


class _ChoiceState:
    __slots__ = ("finished", "tool_calls")

    def __init__(self) -> None:
        self.finished = False
        self.tool_calls: dict[int, _ToolCallState] = {}


class StreamValidator:
    """Checks the chunk grammar of one chat completions stream; see :meth:`finish`."""

    def __init__(self, expect_usage: bool = False) -> None:
        self._expect_usage = expect_usage
        self._violations: list[str] = []
        self._choices: dict[int, _ChoiceState] = {}
        self._chunks = 0
        self._done = False
        self._error = False
        self._usage_chunks = 0

    def _fail(self, message: str) -> None:
        self._violations.append(message)

    def feed(self, data: str) -> None:
        """Feed the raw text of one ``data:`` field, ``[DONE]`` included."""
        if data.strip() == "[DONE]":
            if self._done:
                self._fail("duplicate [DONE]")
            self._done = True
            return
        if self._done:
            self._fail("data after [DONE]")
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._fail(f"data is not valid JSON: {exc}")
            return
        if self._error:
            self._fail("data after an in-stream error")
        try:
            parsed = parse_stream_payload(payload)
        except ValueError as exc:
            self._fail(str(exc))
            return
        if isinstance(parsed, StreamError):
            self._error = True
            return
        self._chunks += 1
        if not parsed.choices:
            if parsed.usage is not None:
                self._usage_chunks += 1
                if self._usage_chunks > 1:
                    self._fail("duplicate usage chunk")
            return
        if self._usage_chunks:
            self._fail("chunk with choices after the usage chunk")
        for choice in parsed.choices:
            self._on_choice(choice)

    def _on_choice(self, choice: ChunkChoice) -> None:
        state = self._choices.get(choice.index)
        if state is None:
            state = self._choices[choice.index] = _ChoiceState()
            if choice.delta.role != "assistant":
                self._fail(
                    f"choice {choice.index}: first delta has role {choice.delta.role!r}, "
                    "expected 'assistant'"
                )
        if state.finished:
            if choice.finish_reason is not None:
                self._fail(f"choice {choice.index}: second finish_reason")
            else:
                self._fail(f"choice {choice.index}: delta after finish_reason")
            return
        for call in choice.delta.tool_calls or ():
            self._on_tool_call(choice.index, state, call)
        if choice.finish_reason is not None:
            state.finished = True
            if choice.finish_reason == "tool_calls" and not state.tool_calls:
                self._fail(f"choice {choice.index}: finish_reason tool_calls without tool calls")

    def _on_tool_call(self, choice: int, state: _ChoiceState, call: ToolCallDelta) -> None:
        where = f"choice {choice}: tool call {call.index}"
        function = call.function
        tool = state.tool_calls.get(call.index)
        if tool is None:
            expected = len(state.tool_calls)
            if call.index != expected:
                self._fail(f"choice {choice}: tool call index {call.index}, expected {expected}")
            if call.id is None or function is None or function.name is None:
                self._fail(f"{where}: first delta lacks id or function.name")
            tool = state.tool_calls[call.index] = _ToolCallState(call.index)
        elif call.id is not None or call.type is not None or (function and function.name):
            self._fail(f"{where}: later delta repeats id, type or function.name")
        if function is not None and function.arguments is not None:
            tool.arguments.append(function.arguments)

    def finish(self) -> list[str]:
        """The violations found (empty list: the stream is valid)."""
        violations = list(self._violations)
        if not self._done:
            violations.append("stream ended without [DONE]")
        if self._error:
            return violations
        if self._chunks == 0:
            violations.append("stream has no chunks")
        for index, state in sorted(self._choices.items()):
            if not state.finished:
                violations.append(f"choice {index}: no finish_reason")
            for tool in state.tool_calls.values():
                text = "".join(tool.arguments)
                try:
                    orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    violations.append(
                        f"choice {index}: tool call {tool.index} arguments are not valid JSON "
                        f"({text[:60]!r}: {exc})"
                    )
        if self._expect_usage and self._usage_chunks == 0:
            violations.append("usage was requested but no usage chunk was sent")
        return violations
