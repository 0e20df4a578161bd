"""Checking what a client received: complete, well-formed, and the text it should carry."""

from __future__ import annotations

import orjson

from benchmarks.scenarios import SLOW_COUNT, Api, expected_text

# Configurations whose policies may merge or re-split text deltas (hold-back).
REWRITING = frozenset({"string_replacement"})


def _events(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e.strip()]


def _data(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data: "):
            return line[6:]
    return None


def stream_text(api_name: str, body: bytes) -> str:
    """The text the stream carries (Anthropic text deltas, OpenAI content deltas,
    Responses output_text deltas)."""
    out: list[str] = []
    for event in _events(body):
        data = _data(event)
        if data is None or data == b"[DONE]":
            continue
        obj = orjson.loads(data)
        if api_name == "anthropic":
            delta = obj.get("delta") if obj.get("type") == "content_block_delta" else None
            if delta is not None and delta.get("type") == "text_delta":
                out.append(delta["text"])
        elif api_name == "responses":
            if obj.get("type") == "response.output_text.delta":
                out.append(obj["delta"])
        else:
            for choice in obj.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def stream_problem(api: Api, status: int, body: bytes, config: str) -> str | None:
    """Why this streamed answer is not what the client should get, or None."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if not body.endswith(api.terminator):
        return f"no terminator, ends with {body[-80:]!r}"
    count = len(_events(body))
    if config in REWRITING:
        # A rewrite re-splits the text after it (deltas of up to holdback + 64 chars);
        # the text itself is checked exactly below.
        if not api.events // 10 <= count <= api.events:
            return f"{count} events, expected {api.events // 10}..{api.events}"
    elif count != api.events:
        return f"{count} events, expected {api.events}"
    try:
        text = stream_text(api.name, body)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable event: {exc}"
    want = expected_text(api.text, config)
    if text != want:
        at = next((i for i, (a, b) in enumerate(zip(text, want, strict=False)) if a != b), None)
        return f"text differs (len {len(text)} vs {len(want)}, first difference at {at})"
    return None


SLOW_TEXT = "1" + "".join(f", {i}" for i in range(2, SLOW_COUNT + 1))


def slow_problem(status: int, body: bytes) -> str | None:
    """Checks one slow (mock LLM) Anthropic stream: complete and counting to SLOW_COUNT."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if not body.rstrip().endswith(b'data: {"type":"message_stop"}'):
        return f"no message_stop, ends with {body[-80:]!r}"
    try:
        text = stream_text("anthropic", body)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable event: {exc}"
    return None if text == SLOW_TEXT else f"unexpected text {text[:60]!r}..."
