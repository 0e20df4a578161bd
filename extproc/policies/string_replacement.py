"""Replace literal strings or regular expressions in response (and optionally request) text.

Several replacements do not apply one after another: all of them are searched in the
original text and the matches are taken left to right; where two overlap, the one that
starts first wins, and at the same start the one listed first wins. Each replacement is
applied to original text only, never to another replacement's output, which keeps the
spans non-overlapping and streaming identical to rewriting the whole text at once.

Streaming: a match is only caught whole if it is at most `holdback` characters long
(for a regex with look-around or `\\b`, count the characters those look at too). The
default holdback is the longest pattern for literals and 256 when any pattern is a regex.

Regex replacements may use group references (`\\1`, `\\g<name>`). A pattern that matches
the empty string is refused; empty matches (of look-around-only patterns) are skipped.

This module also holds the span-finding machinery the PII policy reuses.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from extproc.apis.request_text import rewrite_texts
from extproc.policies.base import ApiRequest, Policy, PolicyConfig, Reject, Span, TextRewriter

REGEX_HOLDBACK = 256

# -- span finding (shared with the PII policy) -----------------------------------------

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


def leftmost_spans(text: str, start: int, finders: Sequence[Finder]) -> list[Span]:
    """Non-overlapping spans in text[start:], taken left to right: the match that starts
    first wins, at equal starts the finder listed first. Each finder's next match is
    cached and only searched again once the scan has passed its start."""
    spans: list[Span] = []
    found: list[Found | None] = [find(text, start) for find in finders]
    pos = start
    while True:
        best: Found | None = None
        for i, candidate in enumerate(found):
            if candidate is not None and candidate[0] < pos:
                candidate = found[i] = finders[i](text, pos)
            if candidate is not None and (best is None or candidate[0] < best[0]):
                best = candidate
        if best is None:
            return spans
        spans.append(Span(*best))
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
    text block; `rewrite` applies it to a whole text (non-streaming, requests)."""

    __slots__ = ("finders", "hold_from", "holdback")

    def __init__(
        self,
        finders: Sequence[Finder],
        holdback: int,
        hold_from: Callable[[str, int], int | None] | None = None,
    ) -> None:
        self.finders = tuple(finders)
        self.holdback = holdback
        # Optional: where a match that may still grow begins (see TextRewriter).
        self.hold_from = hold_from

    def spans(self, text: str, start: int) -> list[Span]:
        return leftmost_spans(text, start, self.finders)

    def rewrite(self, text: str) -> str:
        spans = self.spans(text, 0)
        return apply_spans(text, spans) if spans else text


def compile_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a config regex, with an error that names it."""
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def check_format(template: str, field: str, **example: str) -> str:
    """Check a `str.format` template uses only the given placeholders."""
    try:
        template.format(**example)
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join("{" + k + "}" for k in example) or "none"
        raise ValueError(
            f"{field} {template!r} is not a valid template ({exc!r}); placeholders: {allowed}"
        ) from None
    return template


# -- the policy ------------------------------------------------------------------------


class Replacement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(min_length=1)
    replacement: str
    regex: bool = False
    ignore_case: bool = False

    @model_validator(mode="after")
    def _check_regex(self) -> Replacement:
        if self.regex:
            compiled = self.compile()
            if compiled.fullmatch(""):
                raise ValueError(f"regular expression {self.pattern!r} matches the empty string")
            # Expanding against an empty match of the same groups checks the references.
            try:
                re.compile(self.pattern + "\n|", compiled.flags).sub(self.replacement, "")
            except (re.error, IndexError) as exc:
                raise ValueError(
                    f"replacement {self.replacement!r} for {self.pattern!r}: {exc}"
                ) from None
        return self

    def compile(self) -> re.Pattern[str]:
        flags = re.IGNORECASE if self.ignore_case else 0
        if self.regex:
            return compile_regex(self.pattern, flags)
        return re.compile(re.escape(self.pattern), flags)

    def finder(self) -> Finder:
        if not self.regex and not self.ignore_case:
            return literal_finder(self.pattern, self.replacement)
        compiled = self.compile()
        if self.regex and "\\" in self.replacement:
            template = self.replacement
            return regex_finder(compiled, lambda m: m.expand(template))
        text = self.replacement
        return regex_finder(compiled, lambda m: text)


class StringReplacementConfig(PolicyConfig):
    type: Literal["string_replacement"] = "string_replacement"
    replacements: list[Replacement] = Field(min_length=1)
    apply_to_request: bool = False
    # None: the longest literal pattern, or 256 when any pattern is a regex.
    holdback: int | None = Field(default=None, ge=0)

    @property
    def longest_literal(self) -> int:
        return max((len(r.pattern) for r in self.replacements if not r.regex), default=0)

    @property
    def effective_holdback(self) -> int:
        if self.holdback is not None:
            return self.holdback
        if any(r.regex for r in self.replacements):
            return max(REGEX_HOLDBACK, self.longest_literal)
        return self.longest_literal

    @model_validator(mode="after")
    def _check_holdback(self) -> StringReplacementConfig:
        if self.holdback is not None and self.holdback < self.longest_literal:
            raise ValueError(
                f"holdback {self.holdback} is shorter than the longest literal pattern "
                f"({self.longest_literal} characters): a match split across deltas would "
                "be missed"
            )
        return self


class StringReplacementPolicy(Policy):
    type = "string_replacement"
    Config: ClassVar[builtins.type[PolicyConfig]] = StringReplacementConfig
    rewrites_text = True

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        cfg = cast(StringReplacementConfig, self.config)
        self.settings = cfg
        self._rewriter = FinderRewriter(
            [r.finder() for r in cfg.replacements], cfg.effective_holdback
        )

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return self._rewriter

    def rewrite(self, text: str) -> str:
        """The whole of one text rewritten."""
        return self._rewriter.rewrite(text)

    async def on_request(self, request: ApiRequest) -> Reject | None:
        if self.settings.apply_to_request:
            body = rewrite_texts(request.body, request.api, self._rewriter.rewrite)
            if body is not None:
                request.replace_body(body)
        return None


__all__ = [
    "REGEX_HOLDBACK",
    "Finder",
    "FinderRewriter",
    "Found",
    "Replacement",
    "StringReplacementConfig",
    "StringReplacementPolicy",
    "apply_spans",
    "check_format",
    "compile_regex",
    "leftmost_spans",
    "literal_finder",
    "regex_finder",
]
