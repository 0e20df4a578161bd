"""The one place a gateway's configuration is built: settings, policy file, callers and
their keys, the routing table, and whether responses pass through ext_proc.

`Gateway.load(settings)` reads and checks every file once; `serve`, `run`,
`render-envoy` and the benchmarks all take the object it returns. The policies
themselves are instantiated only by the process that runs them
(`Gateway.build_chains()`), since a policy may hold live clients and read secrets.
A `Gateway` is immutable: hot reload builds a new one and swaps it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from extproc.config import Settings
from extproc.keys import KeyRegistry, KeysError
from extproc.observe.hub import Observer
from extproc.policies.base import DEFAULT_CHAIN, Chains
from extproc.policy_config import (
    ConfigError,
    PolicyFile,
    build_chains,
    default_config,
    load_config,
    reads_responses,
)
from extproc.routing import Router


class GatewayError(ValueError):
    """The configuration is unusable; the message names the file, entry and field."""


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    keys: KeyRegistry
    router: Router
    policy_file: PolicyFile = field(default_factory=default_config)
    validate_streams: bool = False

    @classmethod
    def load(cls, settings: Settings, env: Mapping[str, str] | None = None) -> Gateway:
        """Everything the settings name, checked. `env` expands `${VAR}` in the policy
        file and holds the keys providers name by `key_env`: by default this process's
        environment with the settings on top (what an ext_proc child is started with)."""
        env = {**os.environ, **settings.to_env()} if env is None else env
        try:
            policy_file = (
                load_config(settings.policy_config, env=env)
                if settings.policy_config
                else default_config()
            )
            keys = KeyRegistry.build(settings.env_keys, settings.keys_file)
        except (ConfigError, KeysError) as exc:
            raise GatewayError(str(exc)) from None
        missing = sorted(keys.chains() - {DEFAULT_CHAIN, *policy_file.chains})
        if missing:
            raise GatewayError(
                f"{settings.keys_file}: callers use policy chains that "
                f"{settings.policy_config or 'the (absent) policy file'} does not define: "
                + ", ".join(missing)
            )
        try:
            router = Router.build(settings, policy_file.providers, policy_file.routes, env=env)
        except ValueError as exc:
            raise GatewayError(f"{settings.policy_config}: {exc}") from None
        return cls(
            settings=settings,
            keys=keys,
            router=router,
            policy_file=policy_file,
            validate_streams=settings.validate_streams or policy_file.validate_streams,
        )

    @property
    def reads_responses(self) -> bool:
        """Whether Envoy must stream responses through ext_proc: a policy looks at them,
        streams are validated, or RESPONSE_PROCESSING=always (README, "Response
        processing"). The one definition every part asks."""
        return (
            self.settings.response_processing == "always"
            or self.validate_streams
            or reads_responses(self.policy_file)
        )

    @property
    def brings_own_key_callers(self) -> bool:
        """Callers with their own provider credentials reach the real API of a provider
        the gateway has no key for, so its cluster must exist besides the mock's."""
        return any(c.brings_own_key for c in self.keys.callers)

    def build_chains(self) -> Chains:
        """The policy chains, instantiated (in the process that runs them)."""
        try:
            return build_chains(self.policy_file)
        except (ConfigError, ValueError) as exc:
            raise GatewayError(f"{self.settings.policy_config}: {exc}") from None

    def runtime(self, observer: Observer | None = None) -> Runtime:
        """This configuration with its policies instantiated: what a process serves."""
        return Runtime(self, self.build_chains(), observer)


@dataclass(frozen=True)
class Runtime:
    """The configuration one process serves requests with. A request keeps the Runtime
    it started with until it ends, so swapping in a new one never changes an open
    stream's policies."""

    gateway: Gateway
    chains: Chains
    # Where decisions and request summaries go; None: nowhere (unit tests, benchmarks
    # of the bare pipeline). It outlives a Runtime: a reload hands it to the next one.
    observer: Observer | None = None

    @property
    def settings(self) -> Settings:
        return self.gateway.settings
