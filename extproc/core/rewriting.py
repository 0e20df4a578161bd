"""The text-rewriting seam: what a policy hands the engine to rewrite response text."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Span:
    """Replace text[start:end] with `replacement`; `kind` says what was found there
    (`email`, `secret`...), for the record."""

    start: int
    end: int
    replacement: str
    kind: str = field(default="", compare=False)  # metadata: not part of the edit


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


# Told of each span a rewrite applies, with the original text it covered.
SpanListener = Callable[[Span, str], None]


@dataclass(frozen=True, slots=True)
class RewriteStep:
    """A rewriter as the chain hands it to the engine when its work is recorded or only
    shadowed: `on_span` hears of every span applied, and a `shadow` step finds its spans
    but sends the text as it came."""

    rewriter: TextRewriter
    on_span: SpanListener | None = None
    shadow: bool = False
