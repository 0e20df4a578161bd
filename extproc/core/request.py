"""The parsed request a response belongs to, and what a policy may ask of its API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from extproc.core.audit import DecisionLog

TextFn = Callable[[str], str]


class ToolKind(StrEnum):
    CLIENT = "client"  # run by the client: its calls come back in the response
    SERVER = "server"  # run by the provider (web search, code execution...)
    MCP = "mcp"  # an MCP server the provider itself connects to
    # Tools the request does not show (a stored prompt's): no rule can vouch for them.
    HIDDEN = "hidden"


@dataclass(frozen=True, slots=True)
class DeclaredTool:
    """A tool a request offers the model. Server tools and MCP servers run at the
    provider, so only the request can govern them."""

    kind: ToolKind
    # The function's name; a server tool's type (`web_search_20250305`); an MCP
    # server's name or label.
    name: str
    # MCP servers: where the provider connects (the URL, or a connector's id).
    server_url: str | None = None


class RequestDialect(Protocol):
    """The part of an API's dialect a policy may use: the request's visible texts and
    limits, in that API's own shapes (see `extproc/dialects/`)."""

    @property
    def name(self) -> str: ...

    @property
    def max_tokens_fields(self) -> tuple[str, ...]:
        """Request fields that cap the output length."""
        ...

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        """Every user-visible text of a request body, in document order."""
        ...

    def rewrite_texts(self, body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
        """A new body with `fn` applied to every user-visible text, or None when `fn`
        changed nothing; `body` itself is never modified."""
        ...

    def system_prompt(self, body: dict[str, Any]) -> str:
        """The system (and developer) instructions, as one text."""
        ...

    def last_user_text(self, body: dict[str, Any]) -> str:
        """The text of the last user message that has text (tool results alone skipped)."""
        ...

    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]:
        """The tools and MCP servers the request offers the model."""
        ...


@dataclass(slots=True)
class ApiRequest:
    """The parsed request a response belongs to."""

    dialect: RequestDialect
    path: str
    model: str
    stream: bool
    body: dict[str, Any]
    # Per-request scratch space for policies.
    state: dict[str, Any] = field(default_factory=dict)
    body_changed: bool = False
    # The gateway asked for a usage report the client did not (`Dialect.ask_for_usage`):
    # the stream is given back without it.
    usage_added: bool = False
    # Where the chain logs its decisions about this request (the pipeline gives it a
    # sink when decisions are recorded).
    decisions: DecisionLog = field(default_factory=DecisionLog)
    # Who sent it (the caller's name from the keys file) and Envoy's x-request-id.
    caller: str | None = None
    request_id: str = ""

    @property
    def api(self) -> str:
        """The API's name (`anthropic`, `openai`), for logs."""
        return self.dialect.name

    def replace_body(self, body: dict[str, Any]) -> None:
        """The only way to change the request: the engine then re-serializes it."""
        self.body = body
        self.body_changed = True

    def texts(self) -> Iterator[str]:
        return self.dialect.texts(self.body)

    def declared_tools(self) -> list[DeclaredTool]:
        return self.dialect.declared_tools(self.body)

    def rewrite_texts(self, fn: TextFn) -> bool:
        """Apply `fn` to every user-visible text; whether anything changed."""
        body = self.dialect.rewrite_texts(self.body, fn)
        if body is None:
            return False
        self.replace_body(body)
        return True
