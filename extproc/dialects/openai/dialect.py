"""OpenAI chat completions' wire knowledge (https://platform.openai.com/docs/api-reference/chat),
also spoken by Anthropic's OpenAI-compatible endpoint and most self-hosted servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest, DeclaredTool, TextFn
from extproc.core.usage import Usage
from extproc.dialects.base import Dialect, ForwardedPath, RoutedBy
from extproc.dialects.openai import message_engine, request_text
from extproc.dialects.openai.errors import OpenAIWire, stream_error_type
from extproc.dialects.openai.stream_engine import DONE, OpenAIStreamEngine
from extproc.dialects.openai.usage import (
    ask_for_usage,
    chunk_reports_usage,
    prompt_usage,
    without_usage,
)
from extproc.dialects.openai.validator import StreamValidator
from extproc.dialects.request_text import last_user_text, messages_of, text_of
from extproc.events import StreamEvent
from extproc.sse import Frame

_TEXT_KINDS = ("text", "input_text")
_INSTRUCTION_ROLES = ("system", "developer")

_DONE_EVENT = b"data: " + DONE.encode() + b"\n\n"


class OpenAIChatDialect(OpenAIWire, Dialect):
    name = "openai"
    provider_api = ProviderApi.OPENAI
    path = "/v1/chat/completions"
    # OpenAI-style clients call /v1/chat/completions, /v1/models, /v1/completions...
    path_prefixes = ("/v1/chat", "/v1/completions", "/v1/models")
    forwarded = (ForwardedPath("/v1/models", ("GET",), RoutedBy.PATH_MODEL),)
    max_tokens_fields = ("max_tokens", "max_completion_tokens")

    # -- requests -------------------------------------------------------------------

    def request_problem(self, body: dict[str, Any]) -> tuple[str, str] | None:
        if not isinstance(body.get("messages"), list):
            return "messages: an array of messages is required", "messages"
        return None

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        return request_text.texts(body)

    def rewrite_texts(self, body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
        return request_text.rewrite_texts(body, fn)

    def system_prompt(self, body: dict[str, Any]) -> str:
        return "\n\n".join(
            text
            for m in messages_of(body)
            if m.get("role") in _INSTRUCTION_ROLES
            for text in [text_of(m.get("content"), _TEXT_KINDS)]
            if text
        )

    def last_user_text(self, body: dict[str, Any]) -> str:
        return last_user_text(body, _TEXT_KINDS)

    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]:
        return request_text.declared_tools(body)

    # -- upstream ---------------------------------------------------------------------

    def wrong_provider(self, model: str, provider: str, api: ProviderApi) -> str | None:
        return None  # Anthropic serves chat completions too, on its compatible endpoint

    # -- errors -------------------------------------------------------------------------

    def stream_error(self, message: str, error_type: str = "api_error") -> bytes:
        # An `error` object in a data line; [DONE] follows so clients stop reading.
        otype = stream_error_type(error_type)
        payload = orjson.dumps(
            {"error": {"message": message, "type": otype, "param": None, "code": None}}
        )
        return b"data: " + payload + b"\n\n" + _DONE_EVENT

    # -- streams ------------------------------------------------------------------------

    def ends_stream(self, frame: Frame) -> bool:
        return frame.data == DONE

    def is_error_payload(self, frame: Frame) -> bool:
        return frame.data is not None and frame.data.startswith('{"error"')

    def close_after_error(self) -> bytes | None:
        return _DONE_EVENT

    def reports_usage(self, frame: Frame) -> bool:
        return chunk_reports_usage(frame)

    def usage(self, document: Any) -> Usage | None:
        return prompt_usage(document)

    def ask_for_usage(self, body: dict[str, Any]) -> bool:
        return ask_for_usage(body)

    def unasked_usage(self, frame: Frame) -> Frame | None:
        return without_usage(frame)

    def event(self, payload: dict[str, Any]) -> StreamEvent:
        return StreamEvent.made(b"data: " + orjson.dumps(payload) + b"\n\n", payload)

    def stream_engine(self, chain: ResponsePolicies, request: ApiRequest) -> OpenAIStreamEngine:
        return OpenAIStreamEngine(chain, request)

    async def process_message(self, body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
        return await message_engine.process_message(body, chain, request)

    def validator(self, request: ApiRequest) -> StreamValidator:
        # What the client asked for: a usage chunk the gateway asked for is not sent on.
        options = request.body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return StreamValidator(expect_usage=usage and not request.usage_added)

    # -- as a client --------------------------------------------------------------------

    simple_path = "/chat/completions"

    def simple_request(self, model: str, system: str, user: str) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
        }

    def reply_text(self, document: Any) -> str:
        return text_of(document["choices"][0]["message"]["content"], _TEXT_KINDS)
