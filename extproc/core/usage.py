"""Token counts from a provider's own usage report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """`input_tokens` as the provider counts them: Anthropic's leave cache reads and
    writes out, OpenAI's (`prompt_tokens`, `input_tokens`) include the cached ones,
    which `input_includes_cache` says; `uncached_input_tokens` is the same on both."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    input_includes_cache: bool = False

    @property
    def uncached_input_tokens(self) -> int | None:
        if self.input_tokens is None or not self.input_includes_cache:
            return self.input_tokens
        return max(self.input_tokens - (self.cache_read_tokens or 0), 0)

    def merged(self, later: Usage | None) -> Usage:
        """This report updated by a later one. Output tokens: what the later one states
        wins (a stream's last count is its total). Input and cache tokens are known from
        the start, and some Anthropic-compatible servers (SGLang...) repeat them as 0 at
        the end: a later 0 never wipes an earlier count."""
        if later is None:
            return self
        return Usage(
            _known(self.input_tokens, later.input_tokens),
            _later(self.output_tokens, later.output_tokens),
            _known(self.cache_read_tokens, later.cache_read_tokens),
            _known(self.cache_write_tokens, later.cache_write_tokens),
            self.input_includes_cache or later.input_includes_cache,
        )


def _later(old: int | None, new: int | None) -> int | None:
    return old if new is None else new


def _known(old: int | None, new: int | None) -> int | None:
    return old if new is None or (new == 0 and old) else new


def count(value: Any) -> int | None:
    """A token count as a provider wrote it, or None for anything that is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def field_count(document: Any, *path: str) -> int | None:
    """The count at `path` in nested objects, or None."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return count(document)


def usage_object(document: Any, wrapper: str) -> dict[str, Any] | None:
    """The `usage` object of a whole response, or of one wrapped in a stream event's
    `wrapper` field (`message` in Anthropic's message_start, `response` in the
    Responses API's terminal events); None when there is none."""
    if not isinstance(document, dict):
        return None
    inner = document.get(wrapper)
    usage = (inner if isinstance(inner, dict) else document).get("usage")
    return usage if isinstance(usage, dict) else None
