"""The Anthropic Messages API's wire knowledge (https://docs.anthropic.com/en/api)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from extproc.core.allowance import Allowance
from extproc.core.chain import ResponsePolicies
from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest, DeclaredTool, TextFn
from extproc.core.usage import Usage, field_count, usage_object
from extproc.dialects.anthropic import message_engine, request_text
from extproc.dialects.anthropic.stream_engine import AnthropicStreamEngine, new_event
from extproc.dialects.anthropic.validator import StreamValidator
from extproc.dialects.base import Dialect, ForwardedPath, RoutedBy
from extproc.dialects.request_text import last_user_text, text_of
from extproc.events import StreamEvent
from extproc.sse import Frame

VERSION_HEADER = "anthropic-version"
# Sent upstream when the client named no version (the Messages API requires one).
DEFAULT_VERSION = "2023-06-01"
# The Messages API requires max_tokens; a one-turn answer (a judge's verdict) is short.
SIMPLE_MAX_TOKENS = 256
# Texts the judge reads: content blocks of these types.
_TEXT_KINDS = ("text", "input_text")

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}
# A stream's end when the event is not named: the payload's type says it.
_END_PAYLOAD = re.compile(r'\{\s*"type"\s*:\s*"(?:message_stop|error)"')
_END_EVENTS = ("message_stop", "error")
_USAGE_EVENTS = ("message_start", "message_delta")
# As the Messages API writes its own pings.
PING_EVENT = b'event: ping\ndata: {"type": "ping"}\n\n'
_USAGE_PAYLOAD = re.compile(r'\{\s*"type"\s*:\s*"(?:message_start|message_delta)"')


class AnthropicDialect(Dialect):
    name = "anthropic"
    provider_api = ProviderApi.ANTHROPIC
    path = "/v1/messages"
    path_prefixes = ("/v1/messages",)
    # Model lists are shared with OpenAI's clients; Anthropic's SDKs send the version.
    shared_prefixes = ("/v1/models",)
    marker_header = VERSION_HEADER
    forwarded = (
        ForwardedPath("/v1/messages/count_tokens", ("POST",), RoutedBy.BODY_MODEL),
        ForwardedPath("/v1/models", ("GET",), RoutedBy.PATH_MODEL),
    )
    max_tokens_fields = ("max_tokens",)

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
        return text_of(body.get("system"), _TEXT_KINDS)

    def last_user_text(self, body: dict[str, Any]) -> str:
        return last_user_text(body, _TEXT_KINDS)

    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]:
        return request_text.declared_tools(body)

    # -- upstream ---------------------------------------------------------------------

    def wrong_provider(self, model: str, provider: str, api: ProviderApi) -> str | None:
        if api is ProviderApi.ANTHROPIC:
            return None
        return (
            f"model {model[:200]!r} is served by provider {provider!r}, which speaks the "
            "OpenAI API: call /v1/chat/completions for it"
        )

    def credential_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def added_headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {} if VERSION_HEADER in client_headers else {VERSION_HEADER: DEFAULT_VERSION}

    # -- errors -------------------------------------------------------------------------

    # Anthropic's own "overloaded" (overloaded_error), which its SDK retries.
    overloaded_status = 529

    def rate_limit_headers(self, allowance: Allowance) -> dict[str, str]:
        # Anthropic's own names too (reset as an RFC 3339 time), which its SDK and
        # Claude Code read.
        headers = super().rate_limit_headers(allowance)
        now = time.time()
        for metric, left in (("requests", allowance.requests), ("tokens", allowance.tokens)):
            if left is not None:
                reset = datetime.fromtimestamp(now + left.reset_s, UTC).replace(microsecond=0)
                prefix = f"anthropic-ratelimit-{metric}"
                headers[f"{prefix}-limit"] = str(left.limit)
                headers[f"{prefix}-remaining"] = str(left.remaining)
                headers[f"{prefix}-reset"] = reset.isoformat().replace("+00:00", "Z")
        return headers

    def error_document(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": message}}

    def stream_error(self, message: str, error_type: str = "api_error") -> bytes:
        # The API ends a failed stream with an `error` event and nothing after it; the
        # SDKs raise on that event.
        payload = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"

    # -- streams ------------------------------------------------------------------------

    def keepalive(self) -> bytes:
        return PING_EVENT

    def ends_stream(self, frame: Frame) -> bool:
        if frame.event is not None:
            return frame.event in _END_EVENTS
        data = frame.data
        return data is not None and _END_PAYLOAD.match(data) is not None

    def reports_usage(self, frame: Frame) -> bool:
        if frame.event is not None:
            return frame.event in _USAGE_EVENTS
        data = frame.data
        return data is not None and _USAGE_PAYLOAD.match(data) is not None

    def usage(self, document: Any) -> Usage | None:
        # message_start carries the message with the input side's usage; message_delta
        # and a whole message carry it at the top.
        usage = usage_object(document, "message")
        if usage is None:
            return None
        return Usage(
            input_tokens=field_count(usage, "input_tokens"),
            output_tokens=field_count(usage, "output_tokens"),
            cache_read_tokens=field_count(usage, "cache_read_input_tokens"),
            cache_write_tokens=field_count(usage, "cache_creation_input_tokens"),
        )

    def event(self, payload: dict[str, Any]) -> StreamEvent:
        return new_event(payload)

    def stream_engine(self, chain: ResponsePolicies, request: ApiRequest) -> AnthropicStreamEngine:
        return AnthropicStreamEngine(chain, request)

    async def process_message(self, body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
        return await message_engine.process_message(body, chain, request)

    def validator(self, request: ApiRequest) -> StreamValidator:
        return StreamValidator()

    # -- as a client --------------------------------------------------------------------

    simple_path = "/messages"

    def simple_request(self, model: str, system: str, user: str) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": SIMPLE_MAX_TOKENS,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }

    def reply_text(self, document: Any) -> str:
        return text_of(document["content"], _TEXT_KINDS)
