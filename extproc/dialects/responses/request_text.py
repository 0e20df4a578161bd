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

# Where a part of a message's or a tool output's content keeps its text.
_PART_TEXT = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
# Items whose text is one field: a string, or a list of parts.
_ITEM_TEXT = {
    "function_call_output": "output",
    "custom_tool_call_output": "output",
    "local_shell_call_output": "output",
    "apply_patch_call_output": "output",
    "mcp_approval_response": "reason",
}
# A shell command's output: a list of {stdout, stderr, ...}.
_SHELL_OUTPUT = "shell_call_output"
_STREAMS = ("stdout", "stderr")
# Tools the client runs although the API defines them: their calls come back as items.
_CLIENT_TOOL_TYPES = frozenset(
    {"local_shell", "shell", "apply_patch", "computer", "computer_use_preview"}
)
# Input items that carry tool lists of their own.
_TOOL_ITEMS = ("additional_tools", "tool_search_output")


def _is_message(item: dict[str, Any]) -> bool:
    # A message may omit its type ("easy input message").
    return item.get("type") in (None, "message") and "role" in item


def _part_field(part: Any) -> str | None:
    if not isinstance(part, dict):
        return None
    name = _PART_TEXT.get(str(part.get("type")))
    return name if name is not None and isinstance(part.get(name), str) else None


def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            name = _part_field(part)
            if name is not None:
                yield part[name]


def _field(item: dict[str, Any]) -> str | None:
    """The field of an input item that holds its text, if any."""
    if _is_message(item):
        return "content"
    return _ITEM_TEXT.get(str(item.get("type")))


def _items(value: Any) -> list[dict[str, Any]]:
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    return _items(body.get("input"))


def _item_texts(item: dict[str, Any]) -> Iterator[str]:
    if item.get("type") == _SHELL_OUTPUT:
        for run in _items(item.get("output")):
            yield from (run[k] for k in _STREAMS if isinstance(run.get(k), str))
        return
    name = _field(item)
    if name is not None:
        yield from _content_texts(item.get(name))


def _variables(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    variables = prompt.get("variables") if isinstance(prompt, dict) else None
    return variables if isinstance(variables, dict) else {}


def texts(body: dict[str, Any]) -> Iterator[str]:
    # `instructions` and `input`: a string, or a list of items.
    for key in ("instructions", "input"):
        value = body.get(key)
        if isinstance(value, str):
            yield value
        for item in _items(value):
            yield from _item_texts(item)
    # A stored prompt's variables: strings, or parts.
    for value in _variables(body).values():
        yield from _content_texts(value if isinstance(value, str) else [value])


def _rewrite_content(content: Any, fn: TextFn) -> Any:
    if isinstance(content, str):
        return rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def part_fn(part: Any) -> Any:
        name = _part_field(part)
        if name is None:
            return part
        text = rewrite_str(part[name], fn)
        return part if text is part[name] else {**part, name: text}

    return rewrite_list(content, part_fn)


def _rewrite_item(item: Any, fn: TextFn) -> Any:
    if not isinstance(item, dict):
        return item
    if item.get("type") == _SHELL_OUTPUT and isinstance(item.get("output"), list):

        def run_fn(run: Any) -> Any:
            if not isinstance(run, dict):
                return run
            changes = {
                k: new
                for k in _STREAMS
                if isinstance(run.get(k), str) and (new := rewrite_str(run[k], fn)) is not run[k]
            }
            return {**run, **changes} if changes else run

        output = rewrite_list(item["output"], run_fn)
        return item if output is item["output"] else {**item, "output": output}
    name = _field(item)
    if name is None or name not in item:
        return item
    new = _rewrite_content(item[name], fn)
    return item if new is item[name] else {**item, name: new}


def rewrite_texts(body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
    changes: dict[str, Any] = {}
    for key in ("instructions", "input"):
        value = body.get(key)
        if isinstance(value, str):
            new: Any = rewrite_str(value, fn)
        elif isinstance(value, list):
            new = rewrite_list(value, lambda item: _rewrite_item(item, fn))
        else:
            continue
        if new is not value:
            changes[key] = new
    variables = _variables(body)
    new_variables = {
        k: new
        for k, v in variables.items()
        if (new := _rewrite_content(v, fn) if isinstance(v, str) else _rewrite_part(v, fn)) is not v
    }
    if new_variables:
        changes["prompt"] = {**body["prompt"], "variables": {**variables, **new_variables}}
    return {**body, **changes} if changes else None


def _rewrite_part(part: Any, fn: TextFn) -> Any:
    new = _rewrite_content([part], fn)
    return part if new[0] is part else new[0]


def system_prompt(body: dict[str, Any]) -> str:
    """`instructions`, then the system and developer messages of `input`."""
    parts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    for item in [*_items(body.get("instructions")), *input_items(body)]:
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
    """The request's `tools`, and the tool lists input items carry."""
    tools = _items(body.get("tools"))
    for item in input_items(body):
        if item.get("type") in _TOOL_ITEMS:
            tools += _items(item.get("tools"))
    out = [tool for entry in tools for tool in _declared(entry)]
    if "prompt" in body:
        out.append(DeclaredTool(ToolKind.HIDDEN, "prompt"))
    return out


def _declared(tool: dict[str, Any]) -> list[DeclaredTool]:
    kind = str(tool.get("type", ""))
    if kind == "namespace":
        return [
            DeclaredTool(ToolKind.CLIENT, str(t.get("name", ""))) for t in _items(tool.get("tools"))
        ]
    if kind == "mcp":
        # Where it connects: its URL, or the connector (Gmail, Drive...) it names.
        where = tool.get("server_url") or tool.get("connector_id")
        label = str(tool.get("server_label", ""))
        return [DeclaredTool(ToolKind.MCP, label, where if isinstance(where, str) else None)]
    if kind in ("function", "custom"):
        return [DeclaredTool(ToolKind.CLIENT, str(tool.get("name", "")))]
    if kind in _CLIENT_TOOL_TYPES:
        return [DeclaredTool(ToolKind.CLIENT, kind)]
    return [DeclaredTool(ToolKind.SERVER, kind)]
