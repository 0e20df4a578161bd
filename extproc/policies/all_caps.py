"""Upper-case all response text (a demonstration of text rewriting; tool calls untouched)."""

from __future__ import annotations

import builtins
from typing import ClassVar, Literal

from extproc.policies.base import ApiRequest, Policy, PolicyConfig, Span, TextRewriter


class AllCapsConfig(PolicyConfig):
    type: Literal["all_caps"] = "all_caps"


class AllCapsRewriter:
    """Needs no look-ahead: every character is rewritten on its own."""

    holdback = 0

    def spans(self, text: str, start: int) -> list[Span]:
        rest = text[start:]
        upper = rest.upper()
        return [Span(start, len(text), upper)] if upper != rest else []


class AllCapsPolicy(Policy):
    type = "all_caps"
    Config: ClassVar[builtins.type[PolicyConfig]] = AllCapsConfig
    rewrites_text = True

    _rewriter = AllCapsRewriter()

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return self._rewriter
