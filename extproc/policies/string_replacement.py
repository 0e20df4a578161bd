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

"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from extproc.core.decisions import Allow
from extproc.core.request import ApiRequest
from extproc.core.rewriting import TextRewriter
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import (
    Finder,
    FinderRewriter,
    compile_regex,
    literal_finder,
    regex_finder,
    rewrite_request,
)

REGEX_HOLDBACK = 256


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


class StringReplacementPolicy(Policy[StringReplacementConfig]):
    type = "string_replacement"
    reads_requests = True
    rewrites_text = True

    def __init__(self, config: StringReplacementConfig | None = None) -> None:
        super().__init__(config)
        self.reads_requests = self.config.apply_to_request
        rules = self.config.replacements
        self._rewriter = FinderRewriter(
            [r.finder() for r in rules],
            self.config.effective_holdback,
            # The record names a rule by its place: a pattern may itself be sensitive.
            [f"pattern {i}" for i in range(1, len(rules) + 1)],
        )

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return self._rewriter

    def rewrite(self, text: str) -> str:
        """The whole of one text rewritten."""
        return self._rewriter.rewrite(text)

    async def on_request(self, request: ApiRequest) -> Allow | None:
        return rewrite_request(request, self._rewriter) if self.config.apply_to_request else None
