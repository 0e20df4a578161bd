"""The text-rewriting seam: what a policy hands the engine to rewrite response text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Span:
    """Replace text[start:end] with `replacement`."""

    start: int
    end: int
    replacement: str


class TextRewriter(Protocol):
    """Rewrites response text as it streams.

    `holdback` is the longest stretch of text one rewrite can cover: the engine keeps that
    many characters unsent, so a match split across deltas is still caught, while the rest
    flows on at once. `spans(text, start)` returns sorted, non-overlapping spans that lie
    in text[start:]; text[:start] is already sent and given only as context (for `\\b`,
    look-behind...). The same rewriter serves streaming and non-streaming responses, so a
    policy sees the same content either way.
    """

    holdback: int

    def spans(self, text: str, start: int) -> Iterable[Span]: ...


@runtime_checkable
class HoldsGrowingMatches(Protocol):
    """An optional capability of a TextRewriter: `hold_from(text, start)` is where a
    match that has begun may still grow past `holdback` (a PEM block between its BEGIN
    and END lines); the engine then keeps everything from there unsent too."""

    def hold_from(self, text: str, start: int) -> int | None: ...
