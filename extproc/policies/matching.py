"""What policies match with: glob lists, config regexes and templates, and span finders
(the machinery text rewriters are built from).

A finder finds the leftmost match at or after a position; `leftmost_spans` combines
several into non-overlapping spans, taken left to right; `FinderRewriter` is a
TextRewriter over a list of finders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase

from extproc.core.audit import MAX_EXAMPLE_CHARS, MAX_EXAMPLES, Evidence
from extproc.core.decisions import Allow
from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span

# -- globs, regexes, templates ----------------------------------------------------------


def matches_any(name: str, globs: Iterable[str]) -> bool:
    """Whether `name` matches one of the fnmatch-style globs (case-sensitive)."""
    return any(fnmatchcase(name, glob) for glob in globs)


def compile_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a config regex, with an error that names it."""
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def check_format(template: str, field: str, **example: object) -> str:
    """Check a `str.format` template uses only the given placeholders."""
    try:
        template.format(**example)
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join("{" + k + "}" for k in example) or "none"
        raise ValueError(
            f"{field} {template!r} is not a valid template ({exc!r}); placeholders: {allowed}"
        ) from None
    return template


# -- span finding -----------------------------------------------------------------------

Found = tuple[int, int, str]
# Finds the leftmost match in `text` that starts at or after `pos`: (start, end,
# replacement), or None. It may look at text before `pos` (look-behind, `\b`).
Finder = Callable[[str, int], Found | None]


def regex_finder(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str | None]
) -> Finder:
    """A finder over a compiled regex; `replace` returns the replacement text for a
    match, or None to reject it (validation failed), after which the search goes on
    from the next character."""

    def find(text: str, pos: int) -> Found | None:
        while pos <= len(text):
            match = pattern.search(text, pos)
            if match is None:
                return None
            if match.end() > match.start():
                replacement = replace(match)
                if replacement is not None:
                    return match.start(), match.end(), replacement
            pos = match.start() + 1
        return None

    return find


def literal_finder(literal: str, replacement: str) -> Finder:
    def find(text: str, pos: int) -> Found | None:
        at = text.find(literal, pos)
        return None if at < 0 else (at, at + len(literal), replacement)

    return find


def leftmost_spans(
    text: str, start: int, finders: Sequence[Finder], kinds: Sequence[str] = ()
) -> list[Span]:
    """Non-overlapping spans in text[start:], taken left to right: the match that starts
    first wins, at equal starts the finder listed first. Each finder's next match is
    cached and only searched again once the scan has passed its start. A span's kind is
    its finder's entry in `kinds` (empty when not given)."""
    spans: list[Span] = []
    found: list[Found | None] = [find(text, start) for find in finders]
    pos = start
    while True:
        best: Found | None = None
        best_at = 0
        for i, candidate in enumerate(found):
            if candidate is not None and candidate[0] < pos:
                candidate = found[i] = finders[i](text, pos)
            if candidate is not None and (best is None or candidate[0] < best[0]):
                best, best_at = candidate, i
        if best is None:
            return spans
        spans.append(Span(*best, kinds[best_at] if kinds else ""))
        pos = best[1]


def apply_spans(text: str, spans: Sequence[Span]) -> str:
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos : span.start])
        out.append(span.replacement)
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


class FinderRewriter:
    """A TextRewriter over a list of finders. Stateless, so one instance serves every
    text block; `rewrite` applies it to a whole text (non-streaming, requests). `kinds`
    names what each finder finds, for the record (`email`, `pattern 2`)."""

    __slots__ = ("finders", "holdback", "kinds")

    def __init__(self, finders: Sequence[Finder], holdback: int, kinds: Sequence[str] = ()) -> None:
        self.finders = tuple(finders)
        self.holdback = holdback
        self.kinds = tuple(kinds)

    def spans(self, text: str, start: int) -> list[Span]:
        return leftmost_spans(text, start, self.finders, self.kinds)

    def rewrite(self, text: str, tally: MatchTally | None = None) -> str:
        spans = self.spans(text, 0)
        if not spans:
            return text
        if tally is not None:
            for span in spans:
                tally.add(span, text[span.start : span.end])
        return apply_spans(text, spans)


class MatchTally:
    """The matches a whole-text rewrite made, per kind, for the decision record (and a
    few before/after pairs when originals may be kept)."""

    __slots__ = ("counts", "examples", "keep")

    def __init__(self, keep_examples: bool = False) -> None:
        self.counts: dict[str, int] = {}
        self.examples: list[tuple[str, str]] = []
        self.keep = keep_examples

    def add(self, span: Span, original: str) -> None:
        self.counts[span.kind] = self.counts.get(span.kind, 0) + 1
        if self.keep and len(self.examples) < MAX_EXAMPLES:
            self.examples.append((original[:MAX_EXAMPLE_CHARS], span.replacement))

    def evidence(self) -> Evidence | None:
        if not self.counts:
            return None
        return Evidence(matches=dict(self.counts), examples=tuple(self.examples))


def rewrite_request(request: ApiRequest, rewriter: FinderRewriter) -> Allow | None:
    """Every user-visible text of the request rewritten; the matches, for the record."""
    tally = MatchTally(request.decisions.keep_originals)
    request.rewrite_texts(lambda text: rewriter.rewrite(text, tally))
    evidence = tally.evidence()
    return None if evidence is None else Allow(evidence)


class GrowingFinderRewriter(FinderRewriter):
    """A FinderRewriter whose matches may grow past `holdback` while they are open
    (HoldsGrowingMatches): `hold_from` says where an unfinished one begins."""

    __slots__ = ("_hold_from",)

    def __init__(
        self,
        finders: Sequence[Finder],
        holdback: int,
        hold_from: Callable[[str, int], int | None],
        kinds: Sequence[str] = (),
    ) -> None:
        super().__init__(finders, holdback, kinds)
        self._hold_from = hold_from

    def hold_from(self, text: str, start: int) -> int | None:
        return self._hold_from(text, start)
