"""What `Gateway.load` checks of the limits before anything serves (`_check_limits`):
prices that price something routed, chains that exist, counters every worker shares,
callers' dollar budgets that can be counted; and what limits turn on (every response
metered, so read by ext_proc)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from extproc.config import Settings
from extproc.gateway import Gateway, GatewayError
from extproc.keys import digest

PRICE = "input: 3, output: 15"


def files(
    tmp_path: Path, policy: str, callers: list[str] | None = None, **settings: object
) -> Settings:
    """Settings naming a policy file with this text and, with `callers`, a keys file
    whose entries are these YAML flow mappings (their keys filled in)."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    keys = None
    if callers is not None:
        keys_path = tmp_path / "keys.yaml"
        keys_path.write_text(
            "callers:\n"
            + "".join(
                f"  - {{key_sha256: '{digest(f'sk-{i}').hex()}', {entry}}}\n"
                for i, entry in enumerate(callers)
            )
        )
        keys = str(keys_path)
    return Settings.model_validate({"policy_config": str(path), "keys_file": keys, **settings})


def refused(settings: Settings) -> str:
    with pytest.raises(GatewayError) as caught:
        Gateway.load(settings, env={})
    return str(caught.value)


def test_a_price_that_matches_nothing_routed_is_named(tmp_path: Path) -> None:
    policy = (
        "limits:\n"
        "  default: {usd: {per_day: 10}}\n"
        "  prices:\n"
        f"    - {{model: 'claude-sonnet-*', {PRICE}}}\n"
        f"    - {{model: 'gtp-4o*', {PRICE}}}\n"
    )
    settings = files(tmp_path, policy)
    assert refused(settings) == (
        f"{settings.policy_config}: limits.prices: 'gtp-4o*' matches no model the routing "
        "table knows"
    )


def test_prices_match_routes_both_ways_and_named_models(tmp_path: Path) -> None:
    policy = (
        "providers: {local: {api: openai, base_url: 'http://vllm:8000/v1'}}\n"
        "routes:\n"
        "  - {models: ['claude-*'], provider: anthropic}\n"
        "  - {models: ['llama-3.1-8b'], provider: local}\n"
        "limits:\n"
        "  default: {usd: {per_day: 10}}\n"
        "  prices:\n"
        f"    - {{model: 'claude-sonnet-4-*', {PRICE}}}\n"  # inside a route's pattern
        f"    - {{model: '*', {PRICE}}}\n"  # a pattern covering a route's
        f"    - {{model: 'llama-3.1-*', {PRICE}}}\n"  # a named model
    )
    gateway = Gateway.load(files(tmp_path, policy), env={})
    assert len(gateway.limits.prices) == 3


def test_limits_for_a_chain_that_does_not_exist(tmp_path: Path) -> None:
    policy = (
        "chains: {strict: [{type: noop}]}\n"
        "limits:\n"
        "  chains:\n"
        "    strcit: {requests: {per_minute: 5}}\n"
        "    default: {requests: {per_minute: 50}}\n"  # the top-level chain's name works
    )
    settings = files(tmp_path, policy)
    assert refused(settings) == (
        f"{settings.policy_config}: limits.chains: no chain named 'strcit' "
        "(chains: default, strict)"
    )


def test_limits_with_several_workers_need_redis(tmp_path: Path) -> None:
    policy = "limits: {default: {requests: {per_minute: 5}}}\n"
    settings = files(tmp_path, policy, extproc_workers=3)
    assert refused(settings) == (
        f"{settings.policy_config}: limits with EXTPROC_WORKERS=3 need RATE_LIMIT_REDIS_URL: "
        "each worker would count on its own"
    )
    shared = files(
        tmp_path,
        policy,
        extproc_workers=3,
        rate_limit_redis_url=SecretStr("redis://127.0.0.1:6379/0"),
    )
    assert Gateway.load(shared, env={}).limits_active
    # One worker counts alone; several without limits count nothing.
    assert Gateway.load(files(tmp_path, policy), env={}).limits_active
    assert not Gateway.load(files(tmp_path, "", extproc_workers=3), env={}).limits_active


def test_several_workers_need_redis_for_a_callers_own_limits_too(tmp_path: Path) -> None:
    settings = files(
        tmp_path,
        "",
        ["name: bot, limits: {requests: {per_day: 100}}"],
        extproc_workers=2,
    )
    assert "limits with EXTPROC_WORKERS=2 need RATE_LIMIT_REDIS_URL" in refused(settings)


def test_a_callers_own_usd_budget_needs_prices(tmp_path: Path) -> None:
    settings = files(tmp_path, "", ["name: bot, limits: {usd: {per_month: 20}}"])
    assert refused(settings) == (
        f"{settings.keys_file}: caller 'bot': usd budgets need prices (limits.prices)"
    )
    priced = files(
        tmp_path,
        f"limits: {{prices: [{{model: 'claude-*', {PRICE}}}]}}\n",
        ["name: bot, limits: {usd: {per_month: 20}}"],
    )
    assert Gateway.load(priced, env={}).limits_active


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    policy = (
        "limits:\n"
        "  default: {usd: {per_day: 1}}\n"
        f"  prices: [{{model: 'nothing-*', {PRICE}}}]\n"
        "  chains: {ghost: {requests: {per_minute: 1}}}\n"
    )
    settings = files(tmp_path, policy, extproc_workers=2)
    lines = refused(settings).splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == [
        "limits.prices",
        "limits.chains",
        "limits with EXTPROC_WORKERS=2 need RATE_LIMIT_REDIS_URL",
    ]


def test_only_a_caller_with_limits_makes_limits_active(tmp_path: Path) -> None:
    settings = files(
        tmp_path,
        "policies: [{type: noop}]\n",
        ["name: bot, limits: {tokens: {per_day: 1000}}", "name: free"],
    )
    gateway = Gateway.load(settings, env={})
    assert not gateway.limits.active  # the policy file limits nobody
    assert gateway.limits_active
    # A noop chain reads no response, but every response is metered now.
    assert gateway.reads_responses
    bot, free = gateway.keys.callers
    assert gateway.limits_for(bot).active and not gateway.limits_for(free).active


def test_an_empty_limit_set_activates_nothing(tmp_path: Path) -> None:
    settings = files(tmp_path, "policies: [{type: noop}]\n", ["name: bot, limits: {}"])
    gateway = Gateway.load(settings, env={})
    assert not gateway.limits_active and not gateway.reads_responses


def test_policy_file_limits_make_a_noop_gateway_read_responses(tmp_path: Path) -> None:
    settings = files(tmp_path, "limits: {default: {tokens: {per_day: 1000}}}\n")
    gateway = Gateway.load(settings, env={})
    assert gateway.runtime().chains.default.names == ["noop"]
    assert gateway.limits_active and gateway.reads_responses
    # Without limits, the same gateway leaves responses to Envoy.
    assert not Gateway.load(files(tmp_path, ""), env={}).reads_responses
