"""The interface every API's dialect implements, and the small types it uses."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol

import orjson

from extproc.core.allowance import Allowance, go_duration
from extproc.core.chain import ResponsePolicies
from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest, DeclaredTool, TextFn
from extproc.core.usage import Usage
from extproc.engine.stream import StreamEngine
from extproc.events import StreamEvent
from extproc.sse import Frame


class StreamValidator(Protocol):
    """Checks the event grammar of one response stream as the client receives it."""

    def feed(self, frame: Frame) -> None: ...

    def finish(self) -> list[str]:
        """The violations found (empty: the stream is valid)."""
        ...


class StreamEnding(Protocol):
    """Ends one response stream in format when the gateway must: it sees every byte
    sent to the client, so an API whose events are numbered numbers the error too."""

    def seen(self, data: bytes) -> None: ...

    def error(self, message: str) -> bytes:
        """An in-stream error event that also ends the stream validly."""
        ...


class StatelessEnding:
    """For APIs whose error event depends on nothing sent before it."""

    __slots__ = ("_dialect",)

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect

    def seen(self, data: bytes) -> None:
        pass

    def error(self, message: str) -> bytes:
        return self._dialect.stream_error(message)


class RoutedBy(Enum):
    BODY_MODEL = "body_model"  # the request body's `model`
    PATH_MODEL = "path_model"  # the path's tail (`/v1/models/{model}`), if any
    API_DEFAULT = "api_default"  # the API's default provider (objects stored by id)


@dataclass(frozen=True)
class ForwardedPath:
    """A path forwarded with the gateway key checked and the provider's key injected,
    but without response policies (token counting, model lists, stored responses).

    `template` is the path, where `{id}` stands for one path segment; a PATH_MODEL path
    also matches with a model name after it. `request_policies`: the body is a request
    of the dialect's own shape, and the request policies check it (a model call whose
    answer is not the API's usual one, like a compaction). `response_policies`: the
    answer is one of the API's own responses, streamed or not (a stored response read
    back), and the response policies see it as they saw it the first time. `billed`: a
    model call the provider charges tokens for, so it counts against the caller's
    limits like the API's own endpoint (its answer's usage report is read)."""

    template: str
    methods: tuple[str, ...]
    routed_by: RoutedBy
    request_policies: bool = False
    response_policies: bool = False
    billed: bool = False
    # Query parameters refused (400): with them the answer would be a part of the
    # response that the response policies cannot read (a stream resumed midway).
    refused_query: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.escape(self.template).replace(re.escape("{id}"), "[^/]+")
        if self.routed_by is RoutedBy.PATH_MODEL:
            regex += "(?:/(?P<model>.+))?"
        object.__setattr__(self, "pattern", re.compile(regex))

    def matches(self, bare_path: str) -> bool:
        return self.pattern.fullmatch(bare_path) is not None

    def path_model(self, bare_path: str) -> str:
        """The model a PATH_MODEL path names (`/v1/models/{model}`); "" for none."""
        found = self.pattern.fullmatch(bare_path)
        return (found.group("model") or "") if found and "model" in found.groupdict() else ""


class Dialect(ABC):
    """One API's wire knowledge. Instances are stateless singletons (`registry.py`);
    per-request state lives in the engines and validators they make."""

    # -- identity and paths ---------------------------------------------------------
    # The API's name in logs and config (`judge.api`).
    name: ClassVar[str]
    # What a request does, in OpenTelemetry's GenAI terms (`gen_ai.operation.name`).
    operation: ClassVar[str] = "chat"
    # The provider API this one is native to: where model lists and defaults come from.
    provider_api: ClassVar[ProviderApi]
    # The endpoint whose bodies the gateway parses and runs policies on.
    path: ClassVar[str]
    # Paths whose errors are written in this API's format (prefixes).
    path_prefixes: ClassVar[tuple[str, ...]]
    # Prefixes shared with another API, claimed only with `marker_header` present.
    shared_prefixes: ClassVar[tuple[str, ...]] = ()
    # A header this API's clients always send and others never do.
    marker_header: ClassVar[str | None] = None
    forwarded: ClassVar[tuple[ForwardedPath, ...]] = ()
    # Request fields that cap the output length.
    max_tokens_fields: ClassVar[tuple[str, ...]]

    def forwarded_path(self, bare_path: str) -> ForwardedPath | None:
        return next((f for f in self.forwarded if f.matches(bare_path)), None)

    # -- requests ---------------------------------------------------------------------

    @abstractmethod
    def request_problem(self, body: dict[str, Any]) -> tuple[str, str] | None:
        """What is missing from a policy request body the API requires, as (message,
        param), beyond a JSON object with a `model` (checked for every API)."""

    @abstractmethod
    def texts(self, body: dict[str, Any]) -> Iterator[str]: ...

    @abstractmethod
    def rewrite_texts(self, body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None: ...

    @abstractmethod
    def system_prompt(self, body: dict[str, Any]) -> str: ...

    @abstractmethod
    def last_user_text(self, body: dict[str, Any]) -> str: ...

    @abstractmethod
    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]: ...

    # -- upstream -------------------------------------------------------------------

    @abstractmethod
    def wrong_provider(self, model: str, provider: str, api: ProviderApi) -> str | None:
        """Why a provider of `api` cannot serve this API's requests (a 400), or None."""

    @abstractmethod
    def credential_headers(self, key: str) -> dict[str, str]:
        """The provider key, as this API's requests carry it."""

    def added_headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers the API requires that the client did not send."""
        return {}

    # -- errors ---------------------------------------------------------------------

    @abstractmethod
    def error_document(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        """A complete error response body as JSON data; `code` overrides the API's own
        error code where it has one (Envoy's response-code details)."""

    def error_body(self, status: int, message: str, param: str | None = None) -> bytes:
        return orjson.dumps(self.error_document(status, message, param))

    @abstractmethod
    def stream_error(self, message: str, error_type: str = "api_error") -> bytes:
        """An in-stream error event that also ends the stream validly."""

    def stream_ending(self) -> StreamEnding:
        """What ends one stream in format (fresh per response)."""
        return StatelessEnding(self)

    # -- streams ----------------------------------------------------------------------

    def keepalive(self) -> bytes:
        """What keeps a stream alive while the gateway holds it back (a tool call
        waiting for a person): an SSE comment, which every SSE client skips, unless the
        API has a ping event of its own."""
        return b": keepalive\n\n"

    @abstractmethod
    def ends_stream(self, frame: Frame) -> bool:
        """Whether this event is the stream's own terminator."""

    def is_error_payload(self, frame: Frame) -> bool:
        """An in-stream error that is not itself a terminator."""
        return False

    def close_after_error(self) -> bytes | None:
        """What ends a stream after an in-stream error payload; None: nothing does, the
        stream is incomplete."""
        return None

    # -- usage ------------------------------------------------------------------------

    def reports_usage(self, frame: Frame) -> bool:
        """Whether this stream event may carry the provider's usage report: a cheap look
        at its name or first bytes, so only those events are parsed for it."""
        return False

    def usage(self, document: Any) -> Usage | None:
        """The usage a response body, or a stream event's payload, reports."""
        return None

    def ask_for_usage(self, body: dict[str, Any]) -> bool:
        """Make a streaming request ask for the usage report its API leaves out unless
        asked (so a caller's tokens can be counted); True when `body` was changed. The
        stream then goes through `unasked_usage`."""
        return False

    def unasked_usage(self, frame: Frame) -> Frame | None:
        """A stream event of a request `ask_for_usage` changed, as the client would have
        had it without the ask: None drops it (the usage report itself)."""
        return frame

    # The status of "too busy, retry": the SDKs retry it with backoff.
    overloaded_status: ClassVar[int] = 503

    def rate_limit_headers(self, allowance: Allowance) -> dict[str, str]:
        """The caller's remaining allowance under the names the providers use (OpenAI's
        `x-ratelimit-*`, which SDKs and tools read whatever the API)."""
        headers: dict[str, str] = {}
        for metric, left in (("requests", allowance.requests), ("tokens", allowance.tokens)):
            if left is not None:
                headers[f"x-ratelimit-limit-{metric}"] = str(left.limit)
                headers[f"x-ratelimit-remaining-{metric}"] = str(left.remaining)
                headers[f"x-ratelimit-reset-{metric}"] = go_duration(left.reset_s)
        return headers

    @abstractmethod
    def event(self, payload: dict[str, Any]) -> StreamEvent:
        """A new event, serialized the way the API writes it."""

    @abstractmethod
    def stream_engine(self, chain: ResponsePolicies, request: ApiRequest) -> StreamEngine: ...

    @abstractmethod
    async def process_message(self, body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
        """A non-streaming response body through the chain; the same object when
        nothing changed."""

    @abstractmethod
    def validator(self, request: ApiRequest) -> StreamValidator: ...

    # -- as a client (the judge) --------------------------------------------------------

    # Where a one-turn request goes, after a base URL ending in `/v1`.
    simple_path: ClassVar[str]

    @abstractmethod
    def simple_request(self, model: str, system: str, user: str) -> dict[str, Any]:
        """The body of a one-turn request: a system prompt and one user message."""

    def client_headers(self) -> dict[str, str]:
        """Headers every request of a client of this API carries."""
        return self.added_headers({})

    @abstractmethod
    def reply_text(self, document: Any) -> str:
        """The text of a non-streaming reply; KeyError, IndexError or TypeError when the
        document has another shape."""

    def __repr__(self) -> str:
        return f"<{self.name} dialect>"
