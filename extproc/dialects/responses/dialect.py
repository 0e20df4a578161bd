"""OpenAI's Responses API (`POST /v1/responses`,
https://platform.openai.com/docs/api-reference/responses): what Codex CLI and the
OpenAI Agents SDK speak. Native end to end: nothing is translated to chat completions.

Streams are typed events (`event: <type>`), each with a `sequence_number`, and end with
`response.completed`, `response.incomplete` or `response.failed` (after an `error`
event when the provider fails mid-way); there is no `[DONE]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest, DeclaredTool, TextFn
from extproc.core.usage import Usage, field_count, usage_object
from extproc.dialects.base import Dialect, ForwardedPath, RoutedBy
from extproc.dialects.openai.errors import OpenAIWire, stream_error_type
from extproc.dialects.responses import message_engine, request_text
from extproc.dialects.responses.models import BUILTIN_TOOL_TYPES
from extproc.dialects.responses.numbering import last_sequence, new_event
from extproc.dialects.responses.stream_engine import TERMINAL_EVENTS, ResponsesStreamEngine
from extproc.dialects.responses.validator import StreamValidator
from extproc.events import StreamEvent
from extproc.sse import Frame

# A stream's end when the event is not named: the payload's type says it.
_END_PAYLOAD = re.compile(
    r'\{\s*"type"\s*:\s*"(?:response\.completed|response\.incomplete|response\.failed|error)"'
)
_END_EVENTS = frozenset({*TERMINAL_EVENTS, "error"})
_TOOL_TYPES = frozenset({"function", "custom", *BUILTIN_TOOL_TYPES})


def error_event(message: str, error_type: str, sequence_number: int | None) -> bytes:
    """The `error` event the gateway writes. The API nests the error (what the openai
    SDK raises on); the documented shape has the fields flat (what other clients read):
    both are written."""
    otype = stream_error_type(error_type)
    payload: dict[str, Any] = {"type": "error"}
    if sequence_number is not None:
        payload["sequence_number"] = sequence_number
    payload |= {"code": otype, "message": message, "param": None}
    payload["error"] = {"type": otype, "code": otype, "message": message, "param": None}
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


class NumberedEnding:
    """An error event numbered after the last event the client got."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def seen(self, data: bytes) -> None:
        last = last_sequence(data)
        if last is not None:
            self._last = last

    def error(self, message: str) -> bytes:
        return error_event(message, "api_error", None if self._last is None else self._last + 1)


class OpenAIResponsesDialect(OpenAIWire, Dialect):
    name = "responses"
    provider_api = ProviderApi.OPENAI
    path = "/v1/responses"
    path_prefixes = ("/v1/responses",)
    # First match wins: the fixed names before the id templates.
    forwarded = (
        # Counting reads the whole prompt: redacted first, like any model call.
        ForwardedPath(
            "/v1/responses/input_tokens", ("POST",), RoutedBy.BODY_MODEL, request_policies=True
        ),
        # A model call that answers with a compacted history, not a response: only
        # its request is checked, and it is billed like any model call.
        ForwardedPath(
            "/v1/responses/compact",
            ("POST",),
            RoutedBy.BODY_MODEL,
            request_policies=True,
            billed=True,
        ),
        # A stored response read back (also replayed as a stream) or cancelled is the
        # model's answer again: the response policies see it as they did the first time.
        ForwardedPath(
            "/v1/responses/{id}/cancel", ("POST",), RoutedBy.API_DEFAULT, response_policies=True
        ),
        ForwardedPath("/v1/responses/{id}/input_items", ("GET",), RoutedBy.API_DEFAULT),
        ForwardedPath(
            "/v1/responses/{id}",
            ("GET", "DELETE"),
            RoutedBy.API_DEFAULT,
            response_policies=True,
            # A replay from midway starts after the parts and calls it continues: the
            # SDK's responses.stream(response_id=...) asks for all and skips itself.
            refused_query=("starting_after",),
        ),
    )
    max_tokens_fields = ("max_output_tokens",)

    # -- requests -------------------------------------------------------------------

    def request_problem(self, body: dict[str, Any]) -> tuple[str, str] | None:
        value = body.get("input")
        if value is None and "prompt" not in body:
            return "input: a string or an array of input items is required", "input"
        if value is not None and not isinstance(value, str | list):
            return "input: must be a string or an array of input items", "input"
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            return "tools: must be an array of tools", "tools"
        for n, tool in enumerate(tools or []):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if not isinstance(kind, str) or kind not in _TOOL_TYPES:
                # A tool the gateway does not know cannot be governed: refused.
                return f"tools[{n}].type: unknown tool type {str(kind)[:80]!r}", f"tools[{n}].type"
        return None

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        return request_text.texts(body)

    def rewrite_texts(self, body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
        return request_text.rewrite_texts(body, fn)

    def system_prompt(self, body: dict[str, Any]) -> str:
        return request_text.system_prompt(body)

    def last_user_text(self, body: dict[str, Any]) -> str:
        return request_text.last_user_text(body)

    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]:
        return request_text.declared_tools(body)

    # -- upstream ---------------------------------------------------------------------

    def wrong_provider(self, model: str, provider: str, api: ProviderApi) -> str | None:
        if api is ProviderApi.OPENAI:
            return None
        return (
            f"model {model[:200]!r} is served by provider {provider!r}, which does not speak "
            "the Responses API: call /v1/messages or /v1/chat/completions for it"
        )

    # -- errors -------------------------------------------------------------------------

    def stream_error(self, message: str, error_type: str = "api_error") -> bytes:
        return error_event(message, error_type, None)

    def stream_ending(self) -> NumberedEnding:
        return NumberedEnding()

    # -- streams ------------------------------------------------------------------------

    def reports_usage(self, frame: Frame) -> bool:
        if frame.event is not None:
            return frame.event in TERMINAL_EVENTS
        data = frame.data
        return data is not None and _END_PAYLOAD.match(data) is not None

    def usage(self, document: Any) -> Usage | None:
        # A stream's terminal event wraps the response; a whole response is one.
        usage = usage_object(document, "response")
        if usage is None:
            return None
        return Usage(
            input_tokens=field_count(usage, "input_tokens"),
            output_tokens=field_count(usage, "output_tokens"),
            cache_read_tokens=field_count(usage, "input_tokens_details", "cached_tokens"),
            input_includes_cache=True,
        )

    def ends_stream(self, frame: Frame) -> bool:
        if frame.event is not None:
            return frame.event in _END_EVENTS
        data = frame.data
        if data is None:
            return False
        if _END_PAYLOAD.match(data) is not None:
            return True
        # A server that writes no `event:` lines may also put `type` after other keys:
        # events naming a terminal type anywhere are parsed to be sure.
        if not any(f'"{name}"' in data for name in _END_EVENTS):
            return False
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        return isinstance(payload, dict) and payload.get("type") in _END_EVENTS

    def event(self, payload: dict[str, Any]) -> StreamEvent:
        return new_event(payload)

    def stream_engine(self, chain: ResponsePolicies, request: ApiRequest) -> ResponsesStreamEngine:
        return ResponsesStreamEngine(chain, request)

    async def process_message(self, body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
        return await message_engine.process_message(body, chain, request)

    def validator(self, request: ApiRequest) -> StreamValidator:
        return StreamValidator()

    # -- as a client --------------------------------------------------------------------

    simple_path = "/responses"

    def simple_request(self, model: str, system: str, user: str) -> dict[str, Any]:
        return {"model": model, "instructions": system, "input": user, "store": False}

    def reply_text(self, document: Any) -> str:
        return "\n".join(
            part["text"]
            for item in document["output"]
            if item.get("type") == "message"
            for part in item["content"]
            if part.get("type") == "output_text"
        )
