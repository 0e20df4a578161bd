"""Block tool calls by name (allow and deny lists of globs) or by their arguments.

A call is blocked when `allow` is set and no glob matches its name ("not on the allow
list"), when a `deny` glob matches ("on the deny list"), or when an argument rule for the
tool finds its pattern (`re.search`) in the argument: a string argument as is, any other
value as compact JSON, and with `argument: null` the whole arguments JSON as the model
wrote it. Globs are fnmatch-style and case-sensitive. The client sees `block_message`
(placeholders `{tool}` and `{reason}`) as text in place of the call.

Tools that run at the provider (server tools such as web search or code execution, and
MCP servers the provider connects to) never come back as calls to block: `server_tools`
and `mcp_servers` govern them on the request, which gets a 403 in the API's format
naming the tool. Server tools match by type (`web_search_20250305`, `code_interpreter`),
MCP servers by URL or by name (Anthropic's `name`, the Responses API's `server_label`).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.core.decisions import BlockToolCall, Deny, ToolCall
from extproc.core.request import ApiRequest, ToolKind
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import check_format, compile_regex, matches_any


class ArgumentRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(min_length=1)  # glob over tool names
    argument: str | None = None  # a top-level argument; None: all the arguments' JSON
    pattern: str = Field(min_length=1)  # regex, searched
    message: str | None = None  # the reason given; default names the argument

    @field_validator("pattern")
    @classmethod
    def _compile(cls, value: str) -> str:
        compile_regex(value)
        return value

    @property
    def reason(self) -> str:
        if self.message is not None:
            return self.message
        if self.argument is None:
            return "its arguments match a forbidden pattern"
        return f"argument '{self.argument}' matches a forbidden pattern"


class NameRules(BaseModel):
    """Allow and deny lists of globs; deny wins, and with `allow` set nothing else
    passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)

    def reason(self, *names: str) -> str | None:
        """Why something known by these names is refused, or None."""
        if any(matches_any(name, self.deny) for name in names):
            return "on the deny list"
        if self.allow is not None and not any(matches_any(n, self.allow) for n in names):
            return "not on the allow list"
        return None


class ToolFilterConfig(PolicyConfig):
    type: Literal["tool_filter"] = "tool_filter"
    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    argument_rules: list[ArgumentRule] = Field(default_factory=list)
    server_tools: NameRules | None = None
    mcp_servers: NameRules | None = None
    block_message: str = "Tool call '{tool}' was blocked by the gateway: {reason}."

    @field_validator("block_message")
    @classmethod
    def _check_message(cls, value: str) -> str:
        return check_format(value, "block_message", tool="t", reason="r")


def _normalized(url: str) -> str:
    """Scheme and host are case-insensitive: lower-cased, so a glob cannot be dodged."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url  # a connector's id
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))


def _argument_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class ToolFilterPolicy(Policy[ToolFilterConfig]):
    type = "tool_filter"
    reads_requests = True
    gates_tool_calls = True

    def __init__(self, config: ToolFilterConfig | None = None) -> None:
        super().__init__(config)
        self._rules = [(rule, re.compile(rule.pattern)) for rule in self.config.argument_rules]

    def reason(self, call: ToolCall) -> str | None:
        """Why the call is blocked, or None when it may go through."""
        name = call.name
        allow = self.config.allow
        if allow is not None and not matches_any(name, allow):
            return "not on the allow list"
        if matches_any(name, self.config.deny):
            return "on the deny list"
        for rule, pattern in self._rules:
            if not matches_any(name, (rule.tool,)):
                continue
            if rule.argument is None:
                text = call.raw_arguments or orjson.dumps(call.arguments).decode()
            elif rule.argument in call.arguments:
                text = _argument_text(call.arguments[rule.argument])
            else:
                continue
            if pattern.search(text):
                return rule.reason
        return None

    async def on_request(self, request: ApiRequest) -> Deny | None:
        servers, mcp = self.config.server_tools, self.config.mcp_servers
        if servers is None and mcp is None:
            return None
        for tool in request.declared_tools():
            if tool.kind is ToolKind.HIDDEN:
                return Deny(
                    403,
                    f"the tools of a stored {tool.name} cannot be checked here: send the "
                    "tools in the request",
                )
            if tool.kind is ToolKind.SERVER and servers is not None:
                reason = servers.reason(tool.name)
                if reason is not None:
                    return Deny(403, f"server tool '{tool.name}' is not allowed here: {reason}")
            elif tool.kind is ToolKind.MCP and mcp is not None:
                reason = self._mcp_reason(mcp, tool.name, tool.server_url)
                if reason is not None:
                    return Deny(403, f"MCP server '{tool.name}' is not allowed here: {reason}")
        return None

    @staticmethod
    def _mcp_reason(rules: NameRules, name: str, url: str | None) -> str | None:
        """An MCP server is where its URL points: the allow-list must match the URL
        (the name is the caller's to choose, so it cannot vouch for it); a deny glob
        on either refuses it. The URL may carry a token: matched, never repeated."""
        if url is None:
            return rules.reason(name)
        denied = rules.reason(name)
        if denied == "on the deny list":
            return denied
        return rules.reason(_normalized(url))

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall | None:
        reason = self.reason(call)
        if reason is None:
            return None
        # The template supplies its own punctuation ("...: {reason}.").
        reason = reason.rstrip(" .")
        return BlockToolCall(self.config.block_message.format(tool=call.name, reason=reason))
