"""Response body handlers: one per way a response body is treated, chosen once at the
response headers (`response_mode`), as h11 picks a reader per framing. Each takes the
body's chunks in order and returns what the client gets; `close` releases what it holds
whatever state it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import Enum
from typing import Any, Protocol

import orjson

from extproc.contract import too_large_message, with_status
from extproc.core.request import ApiRequest
from extproc.core.usage import Usage
from extproc.dialects.base import Dialect
from extproc.pipeline.replies import BodyOut
from extproc.policies.base import PolicyChain

log = logging.getLogger("extproc.pipeline")

# Error pages are small, and only their beginning is worth quoting.
ERROR_PAGE_BYTES = 4096
ERROR_QUOTE_CHARS = 1024


class ResponseMode(Enum):
    FORWARD = "forward"  # bytes as they come (errors, other content, nothing to check)
    METERED = "metered"  # bytes as they come, a copy read for the usage report at the end
    SSE = "sse"  # framed into events, each through the policy chain
    JSON = "json"  # buffered whole, through the policy chain once
    ERROR_REWRITE = "error_rewrite"  # a non-JSON error (often Envoy's own): made in-format


def response_mode(
    status: int, content_type: str, parsed_request: bool, reads_responses: bool
) -> ResponseMode:
    """How a response body is handled, from its status and content type (lower-cased,
    without parameters)."""
    if status >= 400 and "json" not in content_type:
        # Plain-text errors come from Envoy itself (body over the buffer limit, upstream
        # unreachable) or from a proxy in front of the provider: SDKs want JSON.
        return ResponseMode.ERROR_REWRITE
    if not parsed_request or not 200 <= status < 300:
        return ResponseMode.FORWARD
    if content_type == "text/event-stream":
        return ResponseMode.SSE
    if content_type == "application/json" and reads_responses:
        return ResponseMode.JSON
    return ResponseMode.FORWARD


def error_text(status: int, quoted: str, max_request_bytes: int) -> str:
    """The message of an in-format error made from a non-JSON one (`quoted`: its text)."""
    if status == 413:
        # Envoy's own 413 says only "Payload Too Large": say which limit.
        quoted = too_large_message(max_request_bytes)
    elif not quoted:
        quoted = "the upstream failed" if status >= 500 else "request failed"
    return with_status(quoted, status)


class BodyHandler(Protocol):
    mode: ResponseMode
    # The provider's usage report, as far as the body showed it.
    usage: Usage

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut: ...

    def close(self) -> None: ...


class ForwardBody:
    mode = ResponseMode.FORWARD
    usage = Usage()

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        return BodyOut(chunk, end_of_stream)

    def close(self) -> None:
        pass


class MeteredBody:
    """A JSON response no policy reads, passed on chunk by chunk as it comes; a copy
    (up to `max_bytes`) is read for its usage report when it ends, to charge the caller."""

    mode = ResponseMode.METERED

    def __init__(self, dialect: Dialect, max_bytes: int) -> None:
        self.dialect = dialect
        self.max_bytes = max_bytes
        self.copy: bytearray | None = bytearray()
        self.usage = Usage()

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        if self.copy is not None:
            self.copy += chunk
            if len(self.copy) > self.max_bytes:
                self.copy = None  # too large to read: charged as if no report came
        if end_of_stream and self.copy is not None:
            # Not JSON after all: charged as if no report came.
            with contextlib.suppress(orjson.JSONDecodeError):
                self.usage = self.usage.merged(self.dialect.usage(orjson.loads(self.copy)))
            self.copy = None
        return BodyOut(chunk, end_of_stream)

    def close(self) -> None:
        self.copy = None


class JsonBody:
    """A non-streaming response, buffered up to `max_bytes` and run through the chain's
    message engine; its original bytes go out when nothing changed."""

    mode = ResponseMode.JSON

    def __init__(
        self,
        dialect: Dialect,
        request: ApiRequest,
        chain: PolicyChain,
        max_bytes: int,
        policy_timeout_s: float,
        label: str,
    ) -> None:
        self.dialect = dialect
        self.request = request
        self.chain = chain
        self.max_bytes = max_bytes
        self.policy_timeout_s = policy_timeout_s
        self.label = label
        self.buffer = bytearray()
        self.usage = Usage()

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        dialect = self.dialect
        self.buffer += chunk
        if len(self.buffer) > self.max_bytes:
            # Too large for the policies to see whole: refuse rather than pass it unchecked.
            log.warning("%s: JSON response over the buffer limit", self.label)
            self.buffer = bytearray()
            message = (
                f"the response exceeds the gateway's limit of {self.max_bytes} bytes for "
                "policy checks"
            )
            return BodyOut(dialect.error_body(502, message), True)
        if not end_of_stream:
            return BodyOut(b"", False)
        raw, self.buffer = bytes(self.buffer), bytearray()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return BodyOut(raw, True)
        self.usage = self.usage.merged(dialect.usage(body))
        try:
            async with asyncio.timeout(self.policy_timeout_s):
                new = await dialect.process_message(body, self.chain, self.request)
        except Exception:
            log.exception("%s: policy chain failed on a JSON response", self.label)
            return BodyOut(dialect.error_body(500, "a gateway policy failed on the response"), True)
        return BodyOut(raw if new is body else orjson.dumps(new), True)

    def close(self) -> None:
        self.buffer = bytearray()


class ErrorRewriteBody:
    """A non-JSON error body, replaced by the API's own error with its first KiB quoted."""

    mode = ResponseMode.ERROR_REWRITE

    def __init__(self, dialect: Dialect, status: int, max_request_bytes: int) -> None:
        self.dialect = dialect
        self.status = status
        self.max_request_bytes = max_request_bytes
        self.buffer = bytearray()
        self.usage = Usage()

    async def feed(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        if len(self.buffer) < ERROR_PAGE_BYTES:
            self.buffer += chunk[: ERROR_PAGE_BYTES - len(self.buffer)]
        if not end_of_stream:
            return BodyOut(b"", False)
        text = " ".join(self.buffer.decode("utf-8", "replace").split())[:ERROR_QUOTE_CHARS]
        self.buffer = bytearray()
        message = error_text(self.status, text, self.max_request_bytes)
        return BodyOut(self.dialect.error_body(self.status, message), True)

    def close(self) -> None:
        self.buffer = bytearray()
