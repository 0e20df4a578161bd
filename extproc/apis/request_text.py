"""The user-visible texts of a request body, for policies that read or rewrite them.

Visible text is what a person wrote or will read: system prompts, message text and tool
results. Everything else is left alone: images and documents, tool_use inputs and OpenAI
tool-call arguments (structured data the client reads back), thinking and
redacted_thinking blocks (their signatures cover them; changing one makes the API reject
the request), and non-text fields such as names, ids and cache_control.

Anthropic (/v1/messages): `system` (a string or a list of text blocks), every message's
`content` (a string or a list of blocks: `text` blocks, and `tool_result` blocks whose
`content` is a string or a list of blocks of which the `text` ones count).

OpenAI (/v1/chat/completions): every message's `content`, for every role: a string or a
list of parts of which the `{"type": "text"}` ones count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from extproc.apis.kind import ApiKind

TextFn = Callable[[str], str]


# -- reading -------------------------------------------------------------------------


def iter_texts(body: dict[str, Any], api: ApiKind) -> Iterator[str]:
    """Every user-visible text of a request, in document order."""
    if api == ApiKind.ANTHROPIC:
        yield from _anthropic_texts(body.get("system"), nested=True)
    for message in _messages(body):
        content = message.get("content")
        if api == ApiKind.ANTHROPIC:
            yield from _anthropic_texts(content, nested=False)
        else:
            yield from _openai_texts(content)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _anthropic_texts(content: Any, *, nested: bool) -> Iterator[str]:
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
            yield from _anthropic_texts(block.get("content"), nested=True)


def _openai_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if (
                isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ):
                yield part["text"]


# -- rewriting -----------------------------------------------------------------------
# Each helper returns its input object itself when nothing changed, and a new object
# (copied only along the changed path) otherwise, so unchanged parts are shared.


def rewrite_texts(body: dict[str, Any], api: ApiKind, fn: TextFn) -> dict[str, Any] | None:
    """A new body with `fn` applied to every user-visible text, or None when `fn` changed
    nothing. `body` itself is never modified."""
    new_body: dict[str, Any] | None = None
    if api == ApiKind.ANTHROPIC and "system" in body:
        system = _rewrite_anthropic(body["system"], fn, nested=True)
        if system is not body["system"]:
            new_body = {**body, "system": system}
    messages = body.get("messages")
    if isinstance(messages, list):
        new_messages: list[Any] | None = None
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "content" not in message:
                continue
            content = message["content"]
            if api == ApiKind.ANTHROPIC:
                new_content = _rewrite_anthropic(content, fn, nested=False)
            else:
                new_content = _rewrite_openai(content, fn)
            if new_content is not content:
                if new_messages is None:
                    new_messages = list(messages)
                new_messages[i] = {**message, "content": new_content}
        if new_messages is not None:
            new_body = {**(new_body or body), "messages": new_messages}
    return new_body


def _rewrite_str(text: str, fn: TextFn) -> str:
    new = fn(text)
    return text if new == text else new


def _rewrite_list(items: list[Any], rewrite_item: Callable[[Any], Any]) -> list[Any]:
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = rewrite_item(item)
        if new is not item:
            if out is None:
                out = list(items)
            out[i] = new
    return items if out is None else out


def _rewrite_anthropic(content: Any, fn: TextFn, *, nested: bool) -> Any:
    if isinstance(content, str):
        return _rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def block_fn(block: Any) -> Any:
        if not isinstance(block, dict):
            return block
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            text = _rewrite_str(block["text"], fn)
            return block if text is block["text"] else {**block, "text": text}
        if kind == "tool_result" and not nested and "content" in block:
            inner = _rewrite_anthropic(block["content"], fn, nested=True)
            return block if inner is block["content"] else {**block, "content": inner}
        return block

    return _rewrite_list(content, block_fn)


def _rewrite_openai(content: Any, fn: TextFn) -> Any:
    if isinstance(content, str):
        return _rewrite_str(content, fn)
    if not isinstance(content, list):
        return content

    def part_fn(part: Any) -> Any:
        if (
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            text = _rewrite_str(part["text"], fn)
            return part if text is part["text"] else {**part, "text": text}
        return part

    return _rewrite_list(content, part_fn)
