"""Secrets and personal data out of what is recorded: a decision's target (tool
arguments...), its message and the judge's explanation pass through every pii pattern
(all detectors, secrets included) before they reach the store, and so the admin API and
the live feed that read it.

This is the slow part of recording, so the recorder's own thread does it
(`redact_decision`), never the event loop; the loop only bounds sizes
(`records.bound_target`, `records.clip_text`). A string the loop clipped still holds
`REDACTION_CONTEXT_CHARS` past its cut: it is redacted with that context, then cut, so
a secret that straddles the cut is replaced whole rather than left half visible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from extproc.observe.records import (
    MAX_DEPTH,
    MAX_STRING_CHARS,
    MAX_TEXT_CHARS,
    TOO_DEEP,
    DecisionRecord,
)
from extproc.policies.redacting import redact_text


def redact_value(value: Any, limit: int | None = None, depth: int = 0) -> Any:
    """A JSON value with every string (keys included) redacted, and cut past `limit`."""
    if isinstance(value, str):
        return redact_text(value, limit)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {
            redact_text(str(k), limit): redact_value(v, limit, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, limit, depth + 1) for v in value]
    return value


def redact_decision(record: DecisionRecord, examples: Any = None) -> DecisionRecord:
    """The record as it may be stored: target, message and explanation redacted and cut
    to their bounds. `examples` (before/after pairs of rewritten text, given only when
    the policy file keeps originals) go into the target as they are: they are the very
    text a policy hid, kept on purpose for the before/after view."""
    target: dict[str, Any] = redact_value(record.target, MAX_STRING_CHARS)
    if examples:
        target["examples"] = examples
    message, explanation = record.message, record.explanation
    return dataclasses.replace(
        record,
        target=target,
        message=None if message is None else redact_text(message, MAX_TEXT_CHARS),
        explanation=None if explanation is None else redact_text(explanation, MAX_TEXT_CHARS),
    )
