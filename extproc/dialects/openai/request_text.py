"""Where a chat completions request keeps its visible texts: every message's `content`,
for every role, a string or a list of parts of which the `{"type": "text"}` ones count.
See `extproc/dialects/request_text.py` for what counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from extproc.core.request import DeclaredTool, TextFn, ToolKind
from extproc.dialects.request_text import messages_of, rewrite_list, rewrite_messages, rewrite_str


def texts(body: dict[str, Any]) -> Iterator[str]:
    for message in messages_of(body):
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if _is_text(part):
                    yield part["text"]


def _is_text(part: Any) -> bool:
    return (
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def rewrite_texts(body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
    return rewrite_messages(body, lambda content: _rewrite(content, fn))


def _rewrite(content: Any, fn: TextFn) -> Any:
    if isinstance(content, str):
        return rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def part_fn(part: Any) -> Any:
        if _is_text(part):
            text = rewrite_str(part["text"], fn)
            return part if text is part["text"] else {**part, "text": text}
        return part

    return rewrite_list(content, part_fn)


def declared_tools(body: dict[str, Any]) -> list[DeclaredTool]:
    out: list[DeclaredTool] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        out.append(DeclaredTool(ToolKind.CLIENT, str(name or "")))
    if "web_search_options" in body:
        # Search models search the web themselves when asked to.
        out.append(DeclaredTool(ToolKind.SERVER, "web_search"))
    return out
