"""A gateway runtime for unit tests, without files: settings, chains and keys given
directly, the router built from the settings (the mock for both providers)."""

from __future__ import annotations

from pydantic import SecretStr

from extproc.config import Settings
from extproc.gateway import Gateway, Runtime
from extproc.keys import KeyRegistry
from extproc.pipeline import RequestPipeline
from extproc.policies.base import Chains, Policy, PolicyChain
from extproc.policies.noop import NoOpPolicy
from extproc.routing import Router

KEY = "sk-test-gateway-key"


def make_runtime(
    chains: Chains | PolicyChain | None = None,
    settings: Settings | None = None,
    keys: KeyRegistry | None = None,
    router: Router | None = None,
    validate_streams: bool = False,
    **overrides: object,
) -> Runtime:
    """A runtime: `chains` (a single chain is the default one), `settings` (default: the
    key KEY, `overrides` applied), keys from the settings, router from the settings."""
    if settings is None:
        settings = Settings.model_validate({"gateway_keys": (SecretStr(KEY),), **overrides})
    if chains is None:
        chains = Chains(PolicyChain([NoOpPolicy()]))
    elif isinstance(chains, PolicyChain):
        chains = Chains(chains)
    gateway = Gateway(
        settings=settings,
        keys=keys or KeyRegistry.build(settings.env_keys, settings.keys_file),
        router=router or Router.build(settings, env={}),
        validate_streams=validate_streams,
    )
    return Runtime(gateway, chains)


def chain_of(*policies: Policy) -> PolicyChain:  # type: ignore[type-arg]
    return PolicyChain(policies)


def make_pipeline(
    chains: Chains | PolicyChain | None = None, envoy_sends_body: bool = True, **kw: object
) -> RequestPipeline:
    return RequestPipeline(make_runtime(chains, **kw), envoy_sends_body)  # type: ignore[arg-type]
