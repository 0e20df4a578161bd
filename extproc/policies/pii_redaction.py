"""Redact personal data and secrets from responses and requests.

Detectors (all on by default; `detectors` picks a subset, `secrets` stands for all the
secret kinds): email, phone (international "+44 20 7946 0958", US "(415) 555-2671",
national "020 7946 0958"; 10-15 digits with separators, not plain integers, years,
versions or dates), credit_card (13-19 digits, Luhn-checked), iban (mod-97 checked),
and the secrets anthropic_key, openai_key, aws_access_key, github_token, slack_token,
private_key (a whole PEM block). Each match becomes `replacement` with `{kind}` set to
email, phone, credit_card, iban or secret.

Where matches overlap, the one starting first wins (at the same start: secrets, then
credit_card, iban, email, phone).

Trade-offs: a phone number starting with 0 right after another number and one space
("... 2671 020 7946 0958") is not taken for a phone, so digit groups such as an IBAN with
a wrong checksum are not either; 13-19 plain digits that pass Luhn count as a card.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from extproc.core.audit import Action
from extproc.core.decisions import Allow
from extproc.core.request import ApiRequest
from extproc.core.rewriting import TextRewriter
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import (
    FinderRewriter,
    GrowingFinderRewriter,
    check_format,
    rewrite_request,
)
from extproc.policies.pii_patterns import DETECTORS, SECRET_DETECTORS

DetectorName = Literal[
    "email",
    "phone",
    "credit_card",
    "iban",
    "secrets",
    "anthropic_key",
    "openai_key",
    "aws_access_key",
    "github_token",
    "slack_token",
    "private_key",
]
ALL_DETECTORS: list[DetectorName] = ["email", "phone", "credit_card", "iban", "secrets"]

HOLDBACK = 256
# A PEM block is held from its BEGIN line until its END line arrives, up to this size;
# the fixed window stays short for everything else.
MAX_PEM_BLOCK = 16 * 1024
_PEM_BEGIN = "-----BEGIN "
_PEM_END = "-----END "


def open_pem_block(text: str, start: int) -> int | None:
    """Where an unfinished PEM block begins in text[start:], if one does."""
    at = text.rfind(_PEM_BEGIN, max(start, len(text) - MAX_PEM_BLOCK))
    if at < 0 or text.find(_PEM_END, at) >= 0:
        # Also hold a BEGIN marker that may be arriving split across deltas.
        tail = text[max(start, len(text) - len(_PEM_BEGIN)) :]
        for cut in range(len(tail), 0, -1):
            if _PEM_BEGIN.startswith(tail[-cut:]):
                return len(text) - cut
        return None
    return at


class PiiRedactionConfig(PolicyConfig):
    type: Literal["pii_redaction"] = "pii_redaction"
    detectors: list[DetectorName] = Field(default_factory=lambda: list(ALL_DETECTORS))
    replacement: str = "[REDACTED:{kind}]"
    # None: 4096 when private_key is on (a PEM block is long), else 256.
    holdback: int | None = Field(default=None, ge=1)
    redact_requests: bool = True
    redact_responses: bool = True

    @field_validator("detectors")
    @classmethod
    def _not_empty(cls, value: list[DetectorName]) -> list[DetectorName]:
        if not value:
            raise ValueError("at least one detector is needed (leave the field out for all)")
        return value

    @field_validator("replacement")
    @classmethod
    def _check_replacement(cls, value: str) -> str:
        return check_format(value, "replacement", kind="email")

    @property
    def enabled(self) -> frozenset[str]:
        names: set[str] = set(self.detectors)
        if "secrets" in names:
            names.discard("secrets")
            names.update(SECRET_DETECTORS)
        return frozenset(names)

    @property
    def effective_holdback(self) -> int:
        if self.holdback is not None:
            return self.holdback
        return HOLDBACK


class PiiRedactionPolicy(Policy[PiiRedactionConfig]):
    type = "pii_redaction"
    reads_requests = True
    rewrites_text = True
    rewrite_action = Action.REDACT

    def __init__(self, config: PiiRedactionConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.reads_requests = cfg.redact_requests
        enabled = cfg.enabled
        detectors = [d for d in DETECTORS if d.name in enabled]
        finders = [d.finder(cfg.replacement.format(kind=d.kind)) for d in detectors]
        kinds = [d.kind for d in detectors]
        self._rewriter = (
            GrowingFinderRewriter(finders, cfg.effective_holdback, open_pem_block, kinds)
            if "private_key" in enabled
            else FinderRewriter(finders, cfg.effective_holdback, kinds)
        )

    def redact(self, text: str) -> str:
        """The whole of one text redacted."""
        return self._rewriter.rewrite(text)

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return self._rewriter if self.config.redact_responses else None

    async def on_request(self, request: ApiRequest) -> Allow | None:
        return rewrite_request(request, self._rewriter) if self.config.redact_requests else None
