"""The provider APIs: what a provider speaks natively (the `api:` of a provider entry)."""

from __future__ import annotations

from enum import StrEnum


class ProviderApi(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
