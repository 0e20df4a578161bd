"""Streaming text rewriting with a hold-back window."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from extproc.core.rewriting import HoldsGrowingMatches, RewriteStep, SpanListener, TextRewriter

E = TypeVar("E")

# Already-sent text kept before the unsent part, so `\b` and look-behind see context.
MIN_CONTEXT = 64
MAX_BATCH = 64


class RewriteStage:
    """One rewriter applied to one text block as its deltas arrive.

    Text is sent as soon as no rewrite can still change it: everything except the last
    `holdback` characters, and never half of a span.
    """

    __slots__ = (
        "_batch",
        "_context",
        "_hold_from",
        "_holdback",
        "_on_span",
        "_rewriter",
        "_shadow",
        "_start",
        "_text",
    )

    def __init__(self, rewriter: TextRewriter | RewriteStep) -> None:
        if isinstance(rewriter, RewriteStep):
            self._on_span: SpanListener | None = rewriter.on_span
            self._shadow = rewriter.shadow
            rewriter = rewriter.rewriter
        else:
            self._on_span, self._shadow = None, False
        self._rewriter = rewriter
        self._holdback = max(0, rewriter.holdback)
        self._hold_from = rewriter.hold_from if isinstance(rewriter, HoldsGrowingMatches) else None
        # Text is released in batches of up to this many characters beyond the window,
        # so the window is not rescanned on every small delta.
        self._batch = min(self._holdback, MAX_BATCH)
        self._context = max(MIN_CONTEXT, self._holdback)
        self._text = ""  # sent context + unsent text
        self._start = 0  # where the unsent text begins in _text

    def feed(self, delta: str) -> str:
        if not delta:
            return ""
        self._text += delta
        if len(self._text) - self._start <= self._holdback + self._batch:
            return ""
        return self._emit(final=False)

    def flush(self) -> str:
        return self._emit(final=True) if self._start < len(self._text) else ""

    def _emit(self, final: bool) -> str:
        text, start = self._text, self._start
        cut = len(text) if final else len(text) - self._holdback
        if not final and self._hold_from is not None:
            growing = self._hold_from(text, start)
            if growing is not None:
                cut = min(cut, growing)
        out: list[str] = []
        pos = start
        for span in self._rewriter.spans(text, start):
            if span.start < pos:
                continue  # overlaps sent text or an earlier span: not ours to apply
            if span.start >= cut:
                break
            if span.end > cut:
                cut = span.start  # keep the whole span for later: it may still grow
                break
            out.append(text[pos : span.start])
            if self._on_span is not None:
                self._on_span(span, text[span.start : span.end])
            # A shadow step only counts: the text leaves as it came.
            out.append(text[span.start : span.end] if self._shadow else span.replacement)
            pos = span.end
        if pos < cut:
            out.append(text[pos:cut])
            pos = cut
        drop = max(0, pos - self._context)
        self._text = text[drop:]
        self._start = pos - drop
        return "".join(out)


class TextPipeline:
    """The chain's rewriters for one text block, each fed what the previous one sent."""

    __slots__ = ("_stages",)

    def __init__(self, rewriters: Sequence[TextRewriter | RewriteStep]) -> None:
        self._stages = [RewriteStage(r) for r in rewriters]

    def feed(self, delta: str) -> str:
        for stage in self._stages:
            delta = stage.feed(delta)
        return delta

    def flush(self) -> str:
        out = ""
        for stage in self._stages:
            out = stage.feed(out) + stage.flush()
        return out

    def rewrite_all(self, text: str) -> str:
        """A whole text at once: the non-streaming path, same result as streaming it."""
        return self.feed(text) + self.flush()


class FaithfulText(Generic[E]):
    """Forwards the original delta events of one text while rewriting changed nothing.

    An original event is released once the rewritten output covers all of its text, so
    untouched text leaves as the provider's exact bytes (hold-back delays it, never
    re-splits it). From the first rewrite on, the text continues as synthesized deltas.
    Events without text (a ping, a tool-call chunk) queue behind held text as passengers
    and are never dropped.

    `feed` and `flush` return what to send, in order: original events, and strings of
    text to send as new deltas.
    """

    __slots__ = (
        "_emitted",
        "_identity",
        "_original",
        "_pending",
        "_pipeline",
        "_sent",
        "_total",
        "_waiting",
    )

    def __init__(self, pipeline: TextPipeline) -> None:
        self._pipeline = pipeline
        self._identity = True
        # (event, end offset in the text, carries text)
        self._pending: deque[tuple[E, int, bool]] = deque()
        self._original = ""  # original text from offset _sent on
        self._sent = 0  # original characters covered by released events
        self._total = 0  # original characters fed
        self._emitted = 0  # rewritten characters produced while identical
        # After the first rewrite, passengers wait for the next text sent, so they never
        # overtake text that came before them.
        self._waiting: list[E] = []

    def feed(self, event: E, text: str) -> list[E | str]:
        if not self._identity and not text:
            self._waiting.append(event)
            return []
        self._total += len(text)
        if self._identity:
            self._pending.append((event, self._total, bool(text)))
            self._original += text
        return self._take(self._pipeline.feed(text) if text else "")

    def flush(self) -> list[E | str]:
        out = self._take(self._pipeline.flush())
        if self._identity and self._emitted < self._total:
            # The rewrite removed the end of the text: what it did produce, unsent yet,
            # goes out as new text, then the passengers.
            self._identity = False
            produced = self._original[: self._emitted - self._sent]
            out += [produced] if produced else []
            out += [event for event, _, has_text in self._pending if not has_text]
            self._pending.clear()
            self._original = ""
        out += self._waiting
        self._waiting = []
        return out

    def _take(self, piece: str) -> list[E | str]:
        if not self._identity:
            if not piece:
                return []
            out: list[E | str] = [piece, *self._waiting]
            self._waiting = []
            return out
        offset = self._emitted - self._sent
        if piece == self._original[offset : offset + len(piece)]:
            self._emitted += len(piece)
            ready: list[E | str] = []
            end = self._sent
            while self._pending and self._pending[0][1] <= self._emitted:
                event, end, _ = self._pending.popleft()
                ready.append(event)
            if end > self._sent:
                self._original = self._original[end - self._sent :]
                self._sent = end
            return ready
        # The first rewrite: what was produced but not yet sent goes out with it, then
        # the passengers that were waiting behind it.
        self._identity = False
        out = [self._original[:offset] + piece]
        out.extend(event for event, _, has_text in self._pending if not has_text)
        self._pending.clear()
        self._original = ""
        return out
