"""Where a Responses API request keeps its visible texts and its tools.

Texts: `instructions` (a string), and `input`: a string, or a list of items of which
messages count (their `content`: a string or a list of parts whose `input_text` and
`output_text` ones count) and tool outputs (`function_call_output` and
`custom_tool_call_output`: their `output`, a string or a list of `input_text` parts).
Function-call arguments, reasoning items (encrypted) and references are left alone. See
`extproc/dialects/request_text.py` for what counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from extproc.core.request import DeclaredTool, TextFn, ToolKind
from extproc.dialects.request_text import rewrite_list, rewrite_str

# Parts of a message's or a tool output's content that carry text a person reads.
TEXT_PARTS = ("input_text", "output_text")
_OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")
# Tools the client runs although the API defines them: their calls come back as items.
_CLIENT_TOOL_TYPES = frozenset(
    {
        "function",
        "custom",
        "local_shell",
        "shell",
        "apply_patch",
        "computer",
        "computer_use_preview",
    }
)


def _is_message(item: dict[str, Any]) -> bool:
    # A message may omit its type ("easy input message").
    return item.get("type", "message") == "message" and "role" in item


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") in TEXT_PARTS
        and isinstance(part.get("text"), str)
    )


def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        yield from (part["text"] for part in content if _is_text_part(part))


def _field(item: dict[str, Any]) -> str | None:
    """The field of an input item that holds its text, if any."""
    if _is_message(item):
        return "content"
    if item.get("type") in _OUTPUT_ITEMS:
        return "output"
    return None


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def texts(body: dict[str, Any]) -> Iterator[str]:
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        yield instructions
    value = body.get("input")
    if isinstance(value, str):
        yield value
        return
    for item in input_items(body):
        name = _field(item)
        if name is not None:
            yield from _content_texts(item.get(name))


def _rewrite_content(content: Any, fn: TextFn) -> Any:
    if isinstance(content, str):
        return rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def part_fn(part: Any) -> Any:
        if _is_text_part(part):
            text = rewrite_str(part["text"], fn)
            return part if text is part["text"] else {**part, "text": text}
        return part

    return rewrite_list(content, part_fn)


def _rewrite_item(item: Any, fn: TextFn) -> Any:
    if not isinstance(item, dict):
        return item
    name = _field(item)
    if name is None or name not in item:
        return item
    new = _rewrite_content(item[name], fn)
    return item if new is item[name] else {**item, name: new}


def rewrite_texts(body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
    changes: dict[str, Any] = {}
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        new = rewrite_str(instructions, fn)
        if new is not instructions:
            changes["instructions"] = new
    value = body.get("input")
    if isinstance(value, str):
        new = rewrite_str(value, fn)
        if new is not value:
            changes["input"] = new
    elif isinstance(value, list):
        items = rewrite_list(value, lambda item: _rewrite_item(item, fn))
        if items is not value:
            changes["input"] = items
    return {**body, **changes} if changes else None


def system_prompt(body: dict[str, Any]) -> str:
    """`instructions`, then the system and developer messages of `input`."""
    parts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    for item in input_items(body):
        if _is_message(item) and item.get("role") in ("system", "developer"):
            parts.append("\n".join(_content_texts(item.get("content"))))
    return "\n\n".join(p for p in parts if p)


def last_user_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    if isinstance(value, str):
        return value
    for item in reversed(input_items(body)):
        if _is_message(item) and item.get("role") == "user":
            text = "\n".join(_content_texts(item.get("content")))
            if text.strip():
                return text
    return ""


def declared_tools(body: dict[str, Any]) -> list[DeclaredTool]:
    out: list[DeclaredTool] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", ""))
        if kind == "namespace":
            inner = tool.get("tools")
            out += [
                DeclaredTool(ToolKind.CLIENT, str(t.get("name", "")))
                for t in (inner if isinstance(inner, list) else [])
                if isinstance(t, dict)
            ]
        elif kind == "mcp":
            url = tool.get("server_url")
            out.append(
                DeclaredTool(
                    ToolKind.MCP,
                    str(tool.get("server_label", "")),
                    url if isinstance(url, str) else None,
                )
            )
        elif kind in ("function", "custom"):
            out.append(DeclaredTool(ToolKind.CLIENT, str(tool.get("name", ""))))
        elif kind in _CLIENT_TOOL_TYPES:
            out.append(DeclaredTool(ToolKind.CLIENT, kind))
        else:
            out.append(DeclaredTool(ToolKind.SERVER, kind))
    return out
