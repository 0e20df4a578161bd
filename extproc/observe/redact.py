"""Secrets and personal data out of what is recorded: tool arguments, block messages and
judge explanations pass through every pii pattern (all detectors, secrets included)
before they reach a record, a span or a log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extproc.policies.matching import FinderRewriter
from extproc.policies.pii_patterns import DETECTORS

_REWRITER = FinderRewriter([d.finder(f"[REDACTED:{d.kind}]") for d in DETECTORS], holdback=0)
# Deeper than any real tool call nests; beyond it the value is dropped, not walked.
_MAX_DEPTH = 32


def redact_text(text: str) -> str:
    return _REWRITER.rewrite(text)


def redact_value(value: Any, depth: int = 0) -> Any:
    """A JSON value with every string (keys included) redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {redact_text(str(k)): redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value
