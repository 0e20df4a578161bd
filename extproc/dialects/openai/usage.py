"""The usage object of chat completions and embeddings: `prompt_tokens`,
`completion_tokens`, and cached prompt tokens under `prompt_tokens_details`."""

from __future__ import annotations

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
    )


def chunk_reports_usage(frame: Frame) -> bool:
    """Only the last chunk of a stream asked for with `include_usage` has a usage object;
    the others carry `"usage": null` or none."""
    data = frame.data
    return data is not None and ('"usage":{' in data or '"usage": {' in data)
