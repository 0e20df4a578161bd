"""The limits section as users write it: parsing, the messages for mistakes, how a
caller's limits are layered, and the price table."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from extproc.core.usage import Usage
from extproc.limits.config import LimitsConfig, LimitSet, Price, Windowed
from extproc.limits.windows import Window

EXAMPLE = """
default:
  requests: {per_minute: 60}
  tokens: {per_minute: 100000, per_day: 2000000, per_month: 40000000}
  usd: {per_day: 20, per_month: 300}
chains:
  strict: {tokens: {per_day: 500000}}
prices:
  - {model: "claude-sonnet-*", input: 3, output: 15, cache_read: 0.3, cache_write: 3.75}
  - {model: "gpt-4o*", input: 2.5, output: 10}
fail_mode: {requests: open, budgets: closed}
"""


def parse(text: str) -> LimitsConfig:
    return LimitsConfig.model_validate(yaml.safe_load(text))


def error(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(text)
    return str(caught.value)


def test_the_documented_example_parses() -> None:
    config = parse(EXAMPLE)
    assert config.active
    assert config.default.requests == Windowed[int](per_minute=60)
    assert config.default.usd is not None and config.default.usd.per_month == 300.0
    assert config.fail_mode.requests == "open" and config.fail_mode.budgets == "closed"


def test_an_empty_section_limits_nothing() -> None:
    config = parse("{}")
    assert not config.active
    assert not config.for_caller("default", None).active
    assert config.fail_mode.requests == "open" and config.fail_mode.budgets == "closed"


@pytest.mark.parametrize("window", ["per_week", "per_hour"])
def test_an_unknown_window_names_the_allowed_ones(window: str) -> None:
    message = error(f"default: {{tokens: {{{window}: 5}}}}")
    assert f"unknown window '{window}': windows are per_minute, per_day, per_month" in message
    assert "default.tokens" in message


def test_an_unknown_metric_names_the_allowed_ones() -> None:
    message = error("chains: {strict: {tokenz: {per_day: 5}}}")
    assert "unknown limit 'tokenz': limits are requests, tokens, usd" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("default: {tokens: {per_day: -1}}", "per_day"),
        ("default: {requests: {per_minute: -5}}", "per_minute"),
        (
            "{default: {usd: {per_month: -0.5}}, prices: [{model: m, input: 1, output: 1}]}",
            "per_month",
        ),
    ],
)
def test_negative_limits_are_refused_naming_the_field(text: str, field: str) -> None:
    assert f"{field} must be a number >= 0" in error(text)


def test_a_yes_is_not_a_number() -> None:
    assert "per_day must be a number, not true" in error("default: {tokens: {per_day: yes}}")


def test_fractional_tokens_are_refused() -> None:
    assert "default.tokens.per_day" in error("default: {tokens: {per_day: 2.5}}")


def test_usd_budgets_need_prices() -> None:
    assert "usd budgets need prices" in error("default: {usd: {per_day: 5}}")
    assert "chains.team: usd budgets need prices" in error("chains: {team: {usd: {per_day: 5}}}")
    config = parse("{}")
    own = LimitSet.model_validate({"usd": {"per_day": 1}})
    assert config.check_caller("ci-bot", own) == [
        "caller 'ci-bot': usd budgets need prices (limits.prices)"
    ]
    assert parse(EXAMPLE).check_caller("ci-bot", own) == []


def test_layers_apply_window_by_window_default_then_chain_then_own() -> None:
    config = parse(EXAMPLE)
    own = LimitSet.model_validate({"tokens": {"per_minute": 10}, "requests": {"per_day": 7}})
    limits = config.for_caller("strict", own)
    assert limits.tokens == Windowed[int](per_minute=10, per_day=500_000, per_month=40_000_000)
    assert limits.requests == Windowed[int](per_minute=60, per_day=7)
    assert limits.usd == config.default.usd
    # An unknown chain and no own set: the default as it is.
    assert config.for_caller("other", None) == config.default


def test_a_zero_limit_is_a_limit() -> None:
    limits = LimitSet.model_validate({"requests": {"per_minute": 0}})
    assert limits.active and limits.request_windows() == [(Window.MINUTE, 0)]
    # A zero in a later layer wins over the base's window, as any set value does.
    base = LimitSet.model_validate({"requests": {"per_minute": 50}})
    assert limits.over(base).request_windows() == [(Window.MINUTE, 0)]


def test_cache_prices_default_to_input() -> None:
    price = Price.model_validate({"model": "gpt-4o*", "input": 2.5, "output": 10})
    assert (price.cache_read, price.cache_write) == (2.5, 2.5)
    with pytest.raises(ValidationError) as caught:
        Price.model_validate({"model": "m", "input": -1, "output": 1})
    message = str(caught.value)
    assert "1 validation error" in message and "input" in message


def test_the_first_matching_price_wins_case_sensitively() -> None:
    config = parse(
        "{prices: [{model: 'claude-sonnet-4*', input: 1, output: 2},"
        " {model: 'claude-*', input: 5, output: 6}]}"
    )
    first = config.price_for("claude-sonnet-4-5")
    assert first is not None and first.input == 1
    second = config.price_for("claude-opus-4")
    assert second is not None and second.input == 5
    assert config.price_for("Claude-opus-4") is None


def test_costs_are_micro_dollars_rounded_up() -> None:
    price = parse(EXAMPLE).prices[0]
    usage = Usage(
        input_tokens=1000, output_tokens=100, cache_read_tokens=1000, cache_write_tokens=10
    )
    # 1000*3 + 100*15 + 1000*0.3 + 10*3.75 micro-dollars; 0.3 is no exact float.
    assert price.cost_micros(usage) == 3000 + 1500 + 300 + 38
    assert price.cost_micros(Usage()) == 0


def test_prices_that_match_nothing_routed_are_reported() -> None:
    config = parse(
        "{prices: [{model: 'claude-sonnet-*', input: 1, output: 1},"
        " {model: 'gpt-4o', input: 1, output: 1},"
        " {model: 'claude-*', input: 1, output: 1},"
        " {model: 'mistral-*', input: 1, output: 1},"
        " {model: 'gtp-4o*', input: 1, output: 1}]}"
    )
    problems = config.check_prices(["claude-sonnet-4-5"], ["gpt-*", "claude-opus-*"])
    assert problems == [
        "limits.prices: 'mistral-*' matches no model the routing table knows",
        "limits.prices: 'gtp-4o*' matches no model the routing table knows",
    ]


def test_an_unknown_fail_mode_is_refused() -> None:
    assert "fail_mode.budgets" in error("fail_mode: {budgets: maybe}")


def test_openai_cached_tokens_are_priced_once() -> None:
    """OpenAI's prompt_tokens include the cached ones: 10,000 prompt tokens of which
    9,000 cached cost 1,000 at the input price and 9,000 at the cache-read price."""
    price = Price(model="gpt-4o*", input=2.5, output=10, cache_read=1.25)
    openai = Usage(
        input_tokens=10_000, output_tokens=0, cache_read_tokens=9_000, input_includes_cache=True
    )
    assert price.cost_micros(openai) == 2_500 + 11_250
    anthropic = Usage(input_tokens=1_000, output_tokens=0, cache_read_tokens=9_000)
    assert price.cost_micros(anthropic) == price.cost_micros(openai)
