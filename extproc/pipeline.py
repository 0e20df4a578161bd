"""One HTTP request's journey through the gateway, free of gRPC and Envoy types.

The server feeds the phases in the order Envoy delivers them (request headers, request
body, response headers, response body chunks, trailers) and turns each outcome into
an ext_proc reply. Everything a request holds lives on its `RequestPipeline`, so
dropping the object releases it all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from extproc.apis.errors import error_body
from extproc.apis.kind import (
    COUNT_TOKENS_PATH,
    PASSTHROUGH_METHODS,
    ApiKind,
    api_kind_for_path,
    error_format_for_path,
    forwarded_api,
)
from extproc.config import Settings
from extproc.engine.messages import process_response
from extproc.keys import GATEWAY_KEY_HEADER, Caller, KeyRegistry, presented_key
from extproc.policies.base import ApiRequest, PolicyChain
from extproc.routing import Router, Upstream
from extproc.sse_response import SseResponse
from extproc.stream_check import OutputValidator
from extproc.upstream_choice import (
    UPSTREAM_HEADER,
    headers_for,
    key_headers,
    upstream_for_model,
    upstream_for_models_path,
)

log = logging.getLogger("extproc.pipeline")

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(slots=True)
class Continue:
    """Let the message through, with these changes."""

    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    body: bytes | None = None
    clear_route_cache: bool = False


@dataclass(slots=True)
class Reject:
    """Answer the client directly; nothing goes upstream."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))


@dataclass(slots=True)
class BodyOut:
    data: bytes
    end_of_stream: bool


class ResponseMode(Enum):
    PASSTHROUGH = "passthrough"  # forward bytes as they come (errors, other content)
    SSE = "sse"  # frame, run the policy chain per event
    JSON = "json"  # buffer the whole body, run the policy chain once
    ERROR_REWRITE = "error_rewrite"  # a non-JSON error (often Envoy's own): make it in-format


class RequestPipeline:
    def __init__(
        self,
        settings: Settings,
        keys: KeyRegistry,
        chains: PolicyChain | dict[str, PolicyChain],
        router: Router,
        validate_streams: bool = False,
    ) -> None:
        self.settings = settings
        self.validate_streams = validate_streams
        self.validator: OutputValidator | None = None
        self.keys = keys
        self.chains = chains if isinstance(chains, dict) else {"default": chains}
        self.chain = self.chains["default"]  # the caller's chain, once authenticated
        self.caller: Caller | None = None
        self.router = router
        self.started = time.monotonic()
        self.method = ""
        self.path = ""
        self.request_id = ""
        self.forwarded = False  # a passthrough path (count_tokens, models)
        self.fmt = ApiKind.ANTHROPIC
        self.api: ApiKind | None = None
        self.request: ApiRequest | None = None
        self.upstream: Upstream | None = None
        self.sent_version = False  # the client sent anthropic-version itself
        self.status = 0
        self.mode = ResponseMode.PASSTHROUGH
        self.sse: SseResponse | None = None
        self.json_buf = bytearray()
        self.bytes_out = 0
        self.finished = False  # our last reply carried end_of_stream
        # Envoy says so in the stream's first message (protocol_config).
        self.envoy_sends_body = True

    # -- request side -------------------------------------------------------------

    def _reject(self, status: int, message: str, param: str | None = None) -> Reject:
        self.status = status
        return Reject(status, error_body(self.fmt, status, message, param))

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Continue | Reject:
        out = self._request_headers(headers, end_of_stream)
        if isinstance(out, Continue):
            # Envoy's own control headers (x-envoy-retry-on, -max-retries, timeouts,
            # x-envoy-original-path...) are not the client's to send: Envoy heeds some of
            # them for requests it deems internal, and they would reach the provider.
            out.remove_headers += [h for h in headers if h.startswith("x-envoy-")]
        return out

    def _request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Continue | Reject:
        self.method = headers.get(":method", "")
        # The query string is dropped here: it can carry credentials (?key=...), and
        # nothing in the gateway needs it (Envoy forwards the original path upstream).
        self.path = headers.get(":path", "").split("?", 1)[0]
        self.request_id = headers.get("x-request-id", "")[:128]
        self.fmt = error_format_for_path(self.path)
        self.api = api_kind_for_path(self.path)
        self.sent_version = "anthropic-version" in headers
        gateway_key = headers.get(GATEWAY_KEY_HEADER, "").strip()
        caller = self.keys.lookup(gateway_key or presented_key(headers))
        if caller is None:
            return self._reject(
                401,
                "invalid or missing gateway key (send it as x-api-key or Authorization: Bearer)",
            )
        if caller.passthrough and not gateway_key:
            return self._reject(
                401,
                f"this key uses passthrough: send it as {GATEWAY_KEY_HEADER}, and your own "
                "provider key as x-api-key or Authorization",
            )
        self.caller = caller
        chain = self.chains.get(caller.chain)
        if chain is None:
            log.error("caller %s: no policy chain named %r", caller.name, caller.chain)
            return self._reject(500, "gateway misconfigured: the caller's policy chain is missing")
        self.chain = chain
        forwarded = forwarded_api(self.path, headers)
        if forwarded is not None:
            return self._forward(forwarded, end_of_stream)
        if self.api is None:
            return self._reject(404, f"no such endpoint: {self.method} {self.path.split('?')[0]}")
        if not self.envoy_sends_body and not self.chain.passthrough:
            # Policies that look at responses would be silently skipped: refuse instead.
            log.error("Envoy does not send response bodies but the policies need them")
            return self._reject(
                500,
                "gateway misconfigured: Envoy's ext_proc response_body_mode is NONE but the "
                "policy chain needs response bodies; render the Envoy config again",
            )
        self.fmt = self.api
        if self.method != "POST":
            return self._reject(405, f"method {self.method} not allowed on {self.path}; use POST")
        ctype = headers.get("content-type", "")
        if "json" not in ctype.split(";", 1)[0].lower():
            return self._reject(
                415, f"content-type must be application/json, got {ctype or 'none'!r}"
            )
        length = headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > self.settings.max_request_bytes
        ):
            return self._reject(
                413, f"request body of {length} bytes exceeds {self.settings.max_request_bytes}"
            )
        if end_of_stream:
            return self._reject(400, "request body is required")
        return Continue(remove_headers=[*key_headers(self.caller, {}), UPSTREAM_HEADER])

    def _forward(self, api: ApiKind, end_of_stream: bool) -> Continue | Reject:
        """Token counting and model listing: auth and credentials, no body policies."""
        self.fmt = api
        bare = self.path.rstrip("/")
        method = PASSTHROUGH_METHODS.get(bare, "GET")
        if self.method != method:
            return self._reject(405, f"method {self.method} not allowed on {bare}; use {method}")
        self.forwarded = True
        if bare == COUNT_TOKENS_PATH:
            # Routed by the body's model, like /v1/messages.
            if end_of_stream:
                return self._reject(400, "request body is required")
            return Continue(remove_headers=[*key_headers(self.caller, {}), UPSTREAM_HEADER])
        if end_of_stream and not self.envoy_sends_body:
            self.finished = True  # nothing else of this request passes through ext_proc
        upstream = upstream_for_models_path(self.router, api, bare)
        return self._route(upstream, native=api is ApiKind.ANTHROPIC)

    def _route(self, upstream: Upstream, native: bool) -> Continue:
        chosen = headers_for(upstream, self.caller, native, self.sent_version)
        self.upstream = chosen.upstream
        return Continue(chosen.set_headers, chosen.remove_headers, clear_route_cache=True)

    def _refuse_model(self, model: str) -> Reject | None:
        """A 403 when the caller's key may not use `model`."""
        if self.caller is not None and not self.caller.allows(model):
            return self._reject(403, f"this key may not use model {model[:200]!r}", "model")
        return None

    def _find_upstream(self, model: str, api: ApiKind) -> Upstream | Reject:
        found = upstream_for_model(self.router, model, api)
        return self._reject(400, found, "model") if isinstance(found, str) else found

    async def _count_tokens(self, body: bytes) -> Continue | Reject:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._reject(400, f"request body is not valid JSON: {exc}")
        model = parsed.get("model") if isinstance(parsed, dict) else None
        if not isinstance(model, str) or not model:
            return self._reject(400, "model: a model name is required", "model")
        if (refused := self._refuse_model(model)) is not None:
            return refused
        found = self._find_upstream(model, ApiKind.ANTHROPIC)
        if isinstance(found, Reject):
            return found
        if not self.envoy_sends_body:
            self.finished = True
        return self._route(found, native=True)

    async def on_request_body(self, body: bytes) -> Continue | Reject:
        if self.forwarded:
            if self.upstream is None:
                return await self._count_tokens(body)
            if not self.envoy_sends_body:
                self.finished = True
            return Continue()  # forwarded as it is: no body policy applies here
        assert self.api is not None
        if len(body) > self.settings.max_request_bytes:
            return self._reject(
                413, f"request body of {len(body)} bytes exceeds {self.settings.max_request_bytes}"
            )
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._reject(400, f"request body is not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            return self._reject(400, "request body must be a JSON object")
        model = parsed.get("model")
        if not isinstance(model, str) or not model:
            return self._reject(400, "model: a model name is required", "model")
        if not isinstance(parsed.get("messages"), list):
            return self._reject(400, "messages: an array of messages is required", "messages")
        if (refused := self._refuse_model(model)) is not None:
            return refused
        self.request = ApiRequest(
            api=self.api,
            path=self.path,
            model=model,
            stream=parsed.get("stream") is True,
            body=parsed,
        )
        try:
            async with asyncio.timeout(self.settings.policy_timeout_s):
                verdict = await self.chain.on_request(self.request)
        except TimeoutError:
            return self._reject(504, "request policies did not finish in time")
        except Exception:
            # Fail closed: a request no policy could check does not go upstream.
            log.exception("%s %s: request policy failed", self.method, self.path)
            return self._reject(500, "a gateway policy failed while checking the request")
        if verdict is not None:
            log.info(
                "%s %s: request rejected by policy (%d)", self.method, self.path, verdict.status
            )
            return self._reject(verdict.status, verdict.message)
        # Routed after the policies: their verdicts (a model not allowed) come first, and
        # the model routed is the one that goes upstream.
        final = self.request.body.get("model")
        if final != model:
            if not isinstance(final, str) or not final:
                return self._reject(500, "a gateway policy removed the request's model")
            if (refused := self._refuse_model(final)) is not None:
                return refused
        upstream = self._find_upstream(final, self.api)
        if isinstance(upstream, Reject):
            return upstream
        out = self._route(upstream, native=self.api is ApiKind.ANTHROPIC)
        if self.request.body_changed:
            out.body = orjson.dumps(self.request.body)
            out.set_headers["content-length"] = str(len(out.body))
        if not self.envoy_sends_body:
            # The response bypasses ext_proc: this reply is our last word on the request,
            # however Envoy then ends the stream (half-close or cancel).
            self.finished = True
        return out

    # -- response side ------------------------------------------------------------

    def on_response_headers(
        self, headers: dict[str, str], end_of_stream: bool
    ) -> Continue | Reject:
        status = headers.get(":status", "0")
        self.status = int(status) if status.isdigit() else 0
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if (
            self.status >= 400
            and "json" not in ctype
            and self.api is not None
            and not end_of_stream
        ):
            # Plain-text errors come from Envoy itself (body over the buffer limit, upstream
            # unreachable) or from a proxy in front of the provider: SDKs want JSON.
            if not self.envoy_sends_body:
                self.finished = True
                return Reject(self.status, error_body(self.fmt, self.status, self._error_text("")))
            self.mode = ResponseMode.ERROR_REWRITE
            return Continue(set_headers=dict(JSON_HEADERS))
        if end_of_stream or not self.envoy_sends_body:
            self.finished = True  # no body will follow through ext_proc
        if self.request is None or not 200 <= self.status < 300 or end_of_stream:
            self.mode = ResponseMode.PASSTHROUGH
        elif ctype == "text/event-stream":
            self.mode = ResponseMode.SSE
            self.sse = SseResponse(
                self.request,
                self.chain,
                self.settings.max_sse_frame_bytes,
                self.settings.policy_timeout_s,
                f"{self.method} {self.path}",
            )
            if self.validate_streams:
                self.validator = OutputValidator(self.request)
        elif ctype == "application/json" and not self.chain.passthrough:
            self.mode = ResponseMode.JSON
        return Continue()

    async def on_response_body(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        if self.finished:
            # We already ended the client's stream (after a failure); drop the rest.
            return BodyOut(b"", False)
        if self.mode is ResponseMode.SSE:
            assert self.sse is not None
            out = BodyOut(*await self.sse.feed(chunk, end_of_stream))
        elif self.mode is ResponseMode.JSON:
            out = await self._json(chunk, end_of_stream)
        elif self.mode is ResponseMode.ERROR_REWRITE:
            out = self._rewrite_error(chunk, end_of_stream)
        else:
            out = BodyOut(chunk, end_of_stream)
        self.bytes_out += len(out.data)
        self.finished = out.end_of_stream
        if self.validator is not None:
            self.validator.feed(out.data, out.end_of_stream)
        return out

    async def on_response_trailers(self) -> BodyOut:
        """Trailers mark the end of the body when the upstream sends them."""
        out = await self.on_response_body(b"", True)
        return BodyOut(out.data, False)

    async def _json(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        assert self.request is not None
        self.json_buf += chunk
        if len(self.json_buf) > self.settings.max_response_bytes:
            # Too large for the policies to see whole: refuse rather than pass it unchecked.
            log.warning("%s %s: JSON response over the buffer limit", self.method, self.path)
            self.json_buf = bytearray()
            message = (
                f"the response exceeds the gateway's limit of "
                f"{self.settings.max_response_bytes} bytes for policy checks"
            )
            return BodyOut(error_body(self.request.api, 502, message), True)
        if not end_of_stream:
            return BodyOut(b"", False)
        raw, self.json_buf = bytes(self.json_buf), bytearray()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return BodyOut(raw, True)
        try:
            async with asyncio.timeout(self.settings.policy_timeout_s):
                new = await process_response(body, self.chain, self.request)
        except Exception:
            log.exception("%s %s: policy chain failed on a JSON response", self.method, self.path)
            return BodyOut(
                error_body(self.request.api, 500, "a gateway policy failed on the response"), True
            )
        return BodyOut(raw if new is body else orjson.dumps(new), True)

    def _rewrite_error(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        # Bounded: error pages are small, and only the first KiB is worth quoting.
        if len(self.json_buf) < 4096:
            self.json_buf += chunk[: 4096 - len(self.json_buf)]
        if not end_of_stream:
            return BodyOut(b"", False)
        text = " ".join(self.json_buf.decode("utf-8", "replace").split())[:1024]
        self.json_buf = bytearray()
        return BodyOut(error_body(self.fmt, self.status, self._error_text(text)), True)

    def _error_text(self, text: str) -> str:
        if self.status == 413:
            text = (
                f"request body exceeds the gateway limit of {self.settings.max_request_bytes} bytes"
            )
        elif not text:
            text = "the upstream failed" if self.status >= 500 else "request failed"
        return f"{text} (HTTP {self.status})"

    def close(self) -> None:
        """Release what the request holds: pending policy work first."""
        if self.sse is not None:
            self.sse.close()  # (kept: the summary counts its events)
        self.json_buf = bytearray()

    def summary(self) -> dict[str, Any]:
        """One log line's worth of facts about the request; never headers or bodies."""
        return {
            "id": self.request_id,
            "caller": self.caller.name if self.caller else None,
            "method": self.method,
            "path": self.path.split("?", 1)[0],
            "model": self.request.model if self.request else None,
            "stream": self.request.stream if self.request else None,
            "upstream": self.upstream.name if self.upstream else None,
            "status": self.status,
            "mode": self.mode.value,
            "events": self.sse.events_in if self.sse is not None else 0,
            "bytes_out": self.bytes_out,
            "ms": round((time.monotonic() - self.started) * 1000, 1),
            **({"violations": self.validator.count} if self.validator is not None else {}),
        }
