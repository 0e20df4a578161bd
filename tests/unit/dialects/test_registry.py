"""Which dialect a request speaks (extproc/dialects/registry.py)."""

from __future__ import annotations

import pytest

from extproc.dialects.base import Dialect
from extproc.dialects.registry import (
    ANTHROPIC,
    DEFAULT_DIALECT,
    DIALECTS,
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
    PATH_RULES,
    dialect_for,
    dialect_named,
    dialect_names,
)

VERSION = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/v1/messages", {}, ANTHROPIC),
        ("/v1/messages", VERSION, ANTHROPIC),
        ("/v1/messages/count_tokens", {}, ANTHROPIC),
        # Model lists are shared: Anthropic's clients send their version header.
        ("/v1/models", VERSION, ANTHROPIC),
        ("/v1/models/claude-x", VERSION, ANTHROPIC),
        ("/v1/models", {}, OPENAI_CHAT),
        ("/v1/models/gpt-x", {"x-api-key": "k"}, OPENAI_CHAT),
        ("/v1/chat/completions", {}, OPENAI_CHAT),
        ("/v1/responses", {}, OPENAI_RESPONSES),
        ("/v1/responses/resp_1/cancel", VERSION, OPENAI_RESPONSES),
        # The header claims only the shared prefixes.
        ("/v1/chat/completions", VERSION, OPENAI_CHAT),
        ("/v1/completions", {}, OPENAI_CHAT),
        ("/v1/embeddings", {}, OPENAI_EMBEDDINGS),
        ("/v1/embeddings", VERSION, OPENAI_EMBEDDINGS),
        ("/v2/messages", {}, DEFAULT_DIALECT),
        ("/healthz", {}, DEFAULT_DIALECT),
        ("/", VERSION, DEFAULT_DIALECT),
        ("", {}, DEFAULT_DIALECT),
    ],
)
def test_dialect_for(path: str, headers: dict[str, str], expected: Dialect) -> None:
    assert dialect_for(path, headers) is expected


def test_default_dialect_and_rules() -> None:
    assert DEFAULT_DIALECT is ANTHROPIC
    assert DIALECTS == (ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS)
    # Header rules come first, so they win over the plain prefix of another API.
    headed = [i for i, rule in enumerate(PATH_RULES) if rule.header is not None]
    plain = [i for i, rule in enumerate(PATH_RULES) if rule.header is None]
    assert headed and max(headed) < min(plain)
    assert {(r.prefix, r.dialect, r.header) for r in PATH_RULES if r.header} == {
        ("/v1/models", ANTHROPIC, "anthropic-version")
    }
    # Every dialect's own endpoint is claimed by a rule of its own.
    for dialect in DIALECTS:
        assert any(r.dialect is dialect and dialect.path.startswith(r.prefix) for r in PATH_RULES)


def test_dialect_named() -> None:
    assert dialect_named("anthropic") is ANTHROPIC
    assert dialect_named("openai") is OPENAI_CHAT
    assert dialect_named("responses") is OPENAI_RESPONSES
    assert dialect_named("embeddings") is OPENAI_EMBEDDINGS
    assert dialect_names() == ("anthropic", "openai", "responses", "embeddings")
    with pytest.raises(KeyError):
        dialect_named("gemini")
