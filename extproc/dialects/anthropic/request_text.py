"""Where a Messages request keeps its visible texts: `system` (a string or a list of
text blocks) and every message's `content` (a string or a list of blocks: `text`
blocks, and `tool_result` blocks whose `content` is a string or a list of blocks of
which the `text` ones count). See `extproc/dialects/request_text.py` for what counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from extproc.core.request import DeclaredTool, TextFn, ToolKind
from extproc.dialects.request_text import messages_of, rewrite_list, rewrite_messages, rewrite_str


def texts(body: dict[str, Any]) -> Iterator[str]:
    yield from _texts(body.get("system"), nested=True)
    for message in messages_of(body):
        yield from _texts(message.get("content"), nested=False)


def _texts(content: Any, *, nested: bool) -> Iterator[str]:
    """Texts of a content value; `nested` is True inside a tool_result (or for `system`),
    where a further tool_result is not valid and is not looked into."""
    if isinstance(content, str):
        yield content
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            yield block["text"]
        elif kind == "tool_result" and not nested:
            yield from _texts(block.get("content"), nested=True)


def rewrite_texts(body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
    new_body: dict[str, Any] | None = None
    if "system" in body:
        system = _rewrite(body["system"], fn, nested=True)
        if system is not body["system"]:
            new_body = {**body, "system": system}
    rewritten = rewrite_messages(new_body or body, lambda c: _rewrite(c, fn, nested=False))
    return rewritten if rewritten is not None else new_body


def _rewrite(content: Any, fn: TextFn, *, nested: bool) -> Any:
    if isinstance(content, str):
        return rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def block_fn(block: Any) -> Any:
        if not isinstance(block, dict):
            return block
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            text = rewrite_str(block["text"], fn)
            return block if text is block["text"] else {**block, "text": text}
        if kind == "tool_result" and not nested and "content" in block:
            inner = _rewrite(block["content"], fn, nested=True)
            return block if inner is block["content"] else {**block, "content": inner}
        return block

    return rewrite_list(content, block_fn)


# Anthropic-defined tools the client runs (their calls come back as `tool_use`); every
# other typed tool runs at Anthropic (web search and fetch, code execution, ...), and an
# unknown type is taken for one of those: governed on the request, not let through.
_CLIENT_TOOL_TYPES = ("custom", "bash_", "text_editor_", "computer_", "memory_")


def declared_tools(body: dict[str, Any]) -> list[DeclaredTool]:
    out: list[DeclaredTool] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        name = str(tool.get("name", ""))
        if kind is None or (isinstance(kind, str) and kind.startswith(_CLIENT_TOOL_TYPES)):
            out.append(DeclaredTool(ToolKind.CLIENT, name))
        else:
            out.append(DeclaredTool(ToolKind.SERVER, str(kind)))
    servers = body.get("mcp_servers")
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, dict):
            url = server.get("url")
            out.append(
                DeclaredTool(
                    ToolKind.MCP,
                    str(server.get("name", "")),
                    url if isinstance(url, str) else None,
                )
            )
    return out
