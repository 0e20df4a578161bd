"""Helpers the dialects share for reading and rewriting a request's visible texts.

Visible text is what a person wrote or will read: system prompts, message text and tool
results. Everything else is left alone: images and documents, tool-call inputs and
arguments (structured data the client reads back), thinking blocks (their signatures
cover them; changing one makes the API reject the request), and non-text fields such as
names, ids and cache_control. Each dialect says where the texts are in its bodies.

Rewriting copies only along the changed path: each helper returns its input object
itself when nothing changed, and a new object otherwise, so unchanged parts are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from extproc.core.request import TextFn


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's `messages` that are objects."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def rewrite_str(text: str, fn: TextFn) -> str:
    new = fn(text)
    return text if new == text else new


def rewrite_list(items: list[Any], rewrite_item: Callable[[Any], Any]) -> list[Any]:
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = rewrite_item(item)
        if new is not item:
            if out is None:
                out = list(items)
            out[i] = new
    return items if out is None else out


def rewrite_messages(
    body: dict[str, Any], rewrite_content: Callable[[Any], Any]
) -> dict[str, Any] | None:
    """`body` with each message's `content` rewritten, or None when none changed."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    new_messages: list[Any] | None = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "content" not in message:
            continue
        content = message["content"]
        new_content = rewrite_content(content)
        if new_content is not content:
            if new_messages is None:
                new_messages = list(messages)
            new_messages[i] = {**message, "content": new_content}
    return None if new_messages is None else {**body, "messages": new_messages}


def text_of(content: Any, kinds: tuple[str, ...] = ("text",)) -> str:
    """The text of a content value: a string, or the text blocks (parts) of a list,
    one per line."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") in kinds
        and isinstance(block.get("text"), str)
    )


def last_user_text(body: dict[str, Any], kinds: tuple[str, ...] = ("text",)) -> str:
    """The text of the last user message that has text (tool results alone skipped)."""
    for message in reversed(messages_of(body)):
        if message.get("role") == "user":
            text = text_of(message.get("content"), kinds)
            if text.strip():
                return text
    return ""
