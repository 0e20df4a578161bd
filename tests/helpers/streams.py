"""Checking what a client received: SSE bytes -> invariant violations."""

from __future__ import annotations

import json
from typing import Any

from extproc.apis import anthropic as anthropic_api
from extproc.apis import openai as openai_api
from extproc.sse import SSEFramer


def validate_stream(path: str, body: dict[str, Any], raw: bytes) -> list[str]:
    """Every invariant of DESIGN.md's stream section, checked on what the client got."""
    framer = SSEFramer()
    frames = [*framer.feed(raw), *framer.finish()]
    if path == "/v1/messages":
        validator: Any = anthropic_api.StreamValidator()
        for f in frames:
            if f.data is not None:
                validator.feed(f.event or "", json.loads(f.data))
    else:
        options = body.get("stream_options") or {}
        validator = openai_api.StreamValidator(expect_usage=bool(options.get("include_usage")))
        for f in frames:
            if f.data is not None:
                validator.feed(f.data)
    return list(validator.finish())


def anthropic_text(raw: bytes) -> str:
    framer = SSEFramer()
    out = []
    for f in [*framer.feed(raw), *framer.finish()]:
        if f.event == "content_block_delta" and f.data:
            delta = json.loads(f.data)["delta"]
            out.append(delta.get("text", ""))
    return "".join(out)


def openai_text(raw: bytes) -> str:
    framer = SSEFramer()
    out = []
    for f in [*framer.feed(raw), *framer.finish()]:
        if f.data and f.data.startswith("{"):
            for choice in json.loads(f.data).get("choices") or []:
                out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)
