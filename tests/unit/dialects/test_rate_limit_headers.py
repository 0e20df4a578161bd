"""A caller's remaining allowance in response headers, under the names clients read:
OpenAI's `x-ratelimit-*` for every API, and Anthropic's own `anthropic-ratelimit-*`
(reset as an RFC 3339 time) beside them for Anthropic's."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

import pytest

from extproc.core.allowance import Allowance, Remaining
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_EMBEDDINGS, OPENAI_RESPONSES

BOTH = Allowance(requests=Remaining(100, 99, 30), tokens=Remaining(50_000, 12_345, 5400))
OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-reset-requests": "30s",
    "x-ratelimit-limit-tokens": "50000",
    "x-ratelimit-remaining-tokens": "12345",
    "x-ratelimit-reset-tokens": "1h30m0s",
}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.parametrize("dialect", [OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS])
def test_openai_apis_get_x_ratelimit_headers_only(dialect: Dialect) -> None:
    assert dialect.rate_limit_headers(BOTH) == OPENAI_HEADERS


@pytest.mark.parametrize("dialect", [OPENAI_CHAT, ANTHROPIC])
def test_only_the_limited_metrics_are_named(dialect: Dialect) -> None:
    assert dialect.rate_limit_headers(Allowance()) == {}
    tokens_only = dialect.rate_limit_headers(Allowance(tokens=Remaining(10, 0, 1)))
    assert tokens_only["x-ratelimit-remaining-tokens"] == "0"
    assert tokens_only["x-ratelimit-reset-tokens"] == "1s"
    assert not any("requests" in name for name in tokens_only)


def test_anthropic_adds_its_own_names_with_an_rfc3339_reset() -> None:
    before = time.time()
    headers = ANTHROPIC.rate_limit_headers(BOTH)
    after = time.time()
    own = {k: v for k, v in headers.items() if k.startswith("anthropic-ratelimit-")}
    assert {k: v for k, v in headers.items() if k not in own} == OPENAI_HEADERS
    assert set(own) == {
        f"anthropic-ratelimit-{metric}-{field}"
        for metric in ("requests", "tokens")
        for field in ("limit", "remaining", "reset")
    }
    assert own["anthropic-ratelimit-requests-limit"] == "100"
    assert own["anthropic-ratelimit-requests-remaining"] == "99"
    assert own["anthropic-ratelimit-tokens-limit"] == "50000"
    assert own["anthropic-ratelimit-tokens-remaining"] == "12345"
    for metric, reset_s in (("requests", 30), ("tokens", 5400)):
        reset = own[f"anthropic-ratelimit-{metric}-reset"]
        assert RFC3339_UTC.fullmatch(reset), reset
        at = datetime.fromisoformat(reset).timestamp()
        # Whole seconds, reset_s from now.
        assert math.floor(before + reset_s) <= at <= after + reset_s
