"""Upper-case all response text (a demonstration of text rewriting; tool calls untouched)."""

from __future__ import annotations

from typing import Literal

from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span, TextRewriter
from extproc.policies.base import Policy, PolicyConfig


class AllCapsConfig(PolicyConfig):
    type: Literal["all_caps"] = "all_caps"


class AllCapsRewriter:
    """Needs no look-ahead: every character is rewritten on its own."""

    holdback = 0

    def spans(self, text: str, start: int) -> list[Span]:
        rest = text[start:]
        upper = rest.upper()
        return [Span(start, len(text), upper)] if upper != rest else []


class AllCapsPolicy(Policy[AllCapsConfig]):
    type = "all_caps"
    rewrites_text = True

    _rewriter = AllCapsRewriter()

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return self._rewriter
