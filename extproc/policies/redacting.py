"""Secrets and personal data out of what people and records see: every pii pattern
(all detectors, secrets included) replaced by `[REDACTED:<kind>]`. The records
(`observe/redact.py`), traces and the approval panel all redact through here."""

from __future__ import annotations

from extproc.policies.matching import FinderRewriter, apply_spans
from extproc.policies.pii_patterns import DETECTORS

_REWRITER = FinderRewriter([d.finder(f"[REDACTED:{d.kind}]") for d in DETECTORS], holdback=0)
TRUNCATED = "…[truncated]"


def redact_text(text: str, limit: int | None = None) -> str:
    """`text` with every match replaced; past `limit` characters (of the original) cut,
    a match that begins before the cut replaced whole."""
    spans = _REWRITER.spans(text, 0)
    if limit is None or len(text) <= limit:
        return apply_spans(text, spans) if spans else text
    kept = [span for span in spans if span.start < limit]
    end = max(limit, kept[-1].end) if kept else limit
    return apply_spans(text[:end], kept) + TRUNCATED
