"""The usage object of chat completions and embeddings: `prompt_tokens`,
`completion_tokens`, and cached prompt tokens under `prompt_tokens_details`."""

from __future__ import annotations

import dataclasses
from typing import Any

from extproc.core.usage import Usage, field_count
from extproc.sse import Frame


def prompt_usage(document: Any) -> Usage | None:
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(
        input_tokens=field_count(usage, "prompt_tokens"),
        output_tokens=field_count(usage, "completion_tokens"),
        cache_read_tokens=field_count(usage, "prompt_tokens_details", "cached_tokens"),
        input_includes_cache=True,
    )


def chunk_reports_usage(frame: Frame) -> bool:
    """Only the last chunk of a stream asked for with `include_usage` has a usage object;
    the others carry `"usage": null` or none."""
    data = frame.data
    return data is not None and ('"usage":{' in data or '"usage": {' in data)


def ask_for_usage(body: dict[str, Any]) -> bool:
    """A chat stream reports usage only with `stream_options.include_usage`: ask."""
    if body.get("stream") is not True:
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    body["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return True


# With include_usage every chunk carries `"usage":null`, and one more chunk with no
# choices carries the report. JSON strings escape their quotes, so these bytes can only
# be the chunk's own key (as OpenAI writes it, or with a space after the colon).
_NULL_USAGE = (b',"usage":null', b', "usage": null')


def without_usage(frame: Frame) -> Frame | None:
    """A chunk as it would be without include_usage: the report dropped, the null field
    removed from the others."""
    if chunk_reports_usage(frame):
        data = frame.data or ""
        if '"choices":[]' in data or '"choices": []' in data:
            return None
        return frame  # a report riding on a chunk with content: kept whole
    raw = frame.raw
    for null in _NULL_USAGE:
        if null in raw:
            data = (frame.data or "").replace(null.decode(), "", 1)
            return dataclasses.replace(frame, raw=raw.replace(null, b"", 1), data=data)
    return frame
