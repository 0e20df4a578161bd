"""Output items of the Responses API as the engines change them: the tool calls a gate
decides, the message that takes a blocked call's place, and the final `output` array
made to agree with what the client was sent (SDKs hand users that array, not the
deltas).
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.core.decisions import ToolCall
from extproc.engine.tools import parse_arguments

# Items the client runs, held until complete and decided: their calls come back to it.
# For the API-defined tools: the name policies know the call by, and the field holding
# what it asks for (the arguments).
CLIENT_CALLS: dict[str, tuple[str, str] | None] = {
    "function_call": None,  # its own name and JSON `arguments`
    "custom_tool_call": None,  # its own name; its free-form `input` as `input`
    "local_shell_call": ("local_shell", "action"),
    "shell_call": ("shell", "action"),
    "apply_patch_call": ("apply_patch", "operation"),
    "computer_call": ("computer", "action"),
}
GATED_ITEMS = frozenset(CLIENT_CALLS)
# Items the provider ran itself: already executed when they stream, so never gated.
PROVIDER_RUN_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "image_generation_call",
        "mcp_call",
        "mcp_list_tools",
    }
)


def item_key(item: dict[str, Any]) -> str:
    """What identifies an item across the stream and the final object."""
    return str(item.get("id") or item.get("call_id") or "")


def item_keys(*items: dict[str, Any]) -> set[str]:
    """Every identifier these copies of one item carry: a copy may lack its `id` and
    be known by its `call_id` alone."""
    return {str(v) for item in items for v in (item.get("id"), item.get("call_id")) if v}


def tool_call(item: dict[str, Any], index: int) -> ToolCall | None:
    """The call a complete gated item asks for, as policies see calls; None for an
    item that is no client tool call."""
    kind = item.get("type")
    call_id = str(item.get("call_id") or item.get("id") or "")
    if kind == "function_call":
        raw = item.get("arguments")
        raw = raw if isinstance(raw, str) else ""
        return ToolCall(call_id, str(item.get("name", "")), parse_arguments(raw), raw, index)
    if kind == "custom_tool_call":
        # Free-form input (a patch, a grammar's text): one argument, `input`.
        text = item.get("input")
        text = text if isinstance(text, str) else ""
        return ToolCall(call_id, str(item.get("name", "")), {"input": text}, text, index)
    defined = CLIENT_CALLS.get(str(kind))
    if defined is not None:
        name, field = defined
        value = item.get(field)
        arguments = value if isinstance(value, dict) else {}
        return ToolCall(call_id, name, arguments, orjson.dumps(arguments).decode(), index)
    return None


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(key: str, text: str, status: str = "completed") -> dict[str, Any]:
    """An assistant message saying `text`: what stands where a blocked call was."""
    content = [text_part(text)] if status == "completed" else []
    return {
        "id": f"msg_gw_{key}",
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def with_texts(item: dict[str, Any], texts: dict[int, str]) -> dict[str, Any]:
    """A message item whose output_text parts at these content indices say `texts`;
    their logprobs go, since they would spell the text that was replaced."""
    content = item.get("content")
    if not isinstance(content, list):
        return item
    parts = list(content)
    for index, text in texts.items():
        if index < len(parts) and isinstance(parts[index], dict):
            parts[index] = {**parts[index], "text": text, "logprobs": []}
    return {**item, "content": parts}


def rewrite_output(
    output: list[Any],
    replaced: dict[str, dict[str, Any] | None],
    texts: dict[str, dict[int, str]],
) -> list[Any] | None:
    """`output` with blocked calls replaced (a message) or removed (None) and rewritten
    texts put in; None when nothing changes."""
    out: list[Any] = []
    changed = False
    for item in output:
        if not isinstance(item, dict):
            out.append(item)
            continue
        key = item_key(item)
        found = next((k for k in item_keys(item) if k in replaced), None)
        if found is not None:
            new = replaced[found]
            changed = True
            if new is not None:
                out.append(new)
        elif texts.get(key):  # an empty entry: seen, nothing changed
            out.append(with_texts(item, texts[key]))
            changed = True
        else:
            out.append(item)
    return out if changed else None
