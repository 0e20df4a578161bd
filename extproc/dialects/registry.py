"""The dialects the gateway speaks, and the one rule that picks a request's dialect by
its path (and, for paths two APIs share, a header). Envoy's local-reply mappers are
rendered from the same rule (`extproc/envoy_config/local_replies.py`), so the gateway
and Envoy always answer a path in the same format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from extproc.dialects.anthropic.dialect import AnthropicDialect
from extproc.dialects.base import Dialect
from extproc.dialects.embeddings.dialect import OpenAIEmbeddingsDialect
from extproc.dialects.openai.dialect import OpenAIChatDialect
from extproc.dialects.responses.dialect import OpenAIResponsesDialect

ANTHROPIC: Dialect = AnthropicDialect()
OPENAI_CHAT: Dialect = OpenAIChatDialect()
OPENAI_RESPONSES: Dialect = OpenAIResponsesDialect()
OPENAI_EMBEDDINGS: Dialect = OpenAIEmbeddingsDialect()

DIALECTS: tuple[Dialect, ...] = (ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS)
# Paths no rule claims get this API's error format, which both SDKs at least surface
# as a readable message.
DEFAULT_DIALECT: Dialect = ANTHROPIC

_BY_NAME: dict[str, Dialect] = {d.name: d for d in DIALECTS}


@dataclass(frozen=True, slots=True)
class PathRule:
    """Requests whose path starts with `prefix` (and that carry `header`, when set)
    speak `dialect`."""

    prefix: str
    dialect: Dialect
    header: str | None = None


def _rules() -> tuple[PathRule, ...]:
    # Header rules first: they claim a shared prefix only for their own clients.
    shared = [
        PathRule(prefix, d, d.marker_header)
        for d in DIALECTS
        if d.marker_header is not None
        for prefix in d.shared_prefixes
    ]
    own = [PathRule(prefix, d) for d in DIALECTS for prefix in d.path_prefixes]
    return (*shared, *own)


PATH_RULES: tuple[PathRule, ...] = _rules()


def dialect_for(path: str, headers: Mapping[str, str]) -> Dialect:
    """The dialect of a request: the first rule its path and headers match."""
    for rule in PATH_RULES:
        if path.startswith(rule.prefix) and (rule.header is None or rule.header in headers):
            return rule.dialect
    return DEFAULT_DIALECT


def dialect_named(name: str) -> Dialect:
    """The dialect of this name (`anthropic`, `openai`); KeyError for another."""
    return _BY_NAME[name]


def dialect_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)
