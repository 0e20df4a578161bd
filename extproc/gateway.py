"""The one place a gateway's configuration is built: settings, policy file, callers and
their keys, the routing table, and whether responses pass through ext_proc.

`Gateway.load(settings)` reads and checks every file once; `serve`, `run`,
`render-envoy` and the benchmarks all take the object it returns. The policies
themselves are instantiated only by the process that runs them
(`Gateway.build_chains()`), since a policy may hold live clients and read secrets.
A `Gateway` is immutable: hot reload builds a new one and swaps it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from extproc.config import Settings
from extproc.keys import Caller, KeyRegistry, KeysError
from extproc.limits import Counters, Limiter, LimitsConfig, LimitSet
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

# What a held request needs beyond the approval's own timeout before its route's idle
# timeout may close it (writing the answer, the webhook, the release).
IDLE_MARGIN_S = 30.0


class GatewayError(ValueError):
    """The configuration is unusable; the message names the file, entry and field."""


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    keys: KeyRegistry
    router: Router
    policy_file: PolicyFile = field(default_factory=default_config)
    validate_streams: bool = False
    # limits_for's answers, by caller name (a Gateway never changes: neither do they).
    _merged_limits: dict[str, LimitSet] = field(default_factory=dict, compare=False, repr=False)

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
        _check_limits(settings, policy_file, keys, router)
        _check_waits(settings, policy_file, router)
        return cls(
            settings=settings,
            keys=keys,
            router=router,
            policy_file=policy_file,
            validate_streams=settings.validate_streams or policy_file.validate_streams,
        )

    @property
    def limits(self) -> LimitsConfig:
        return self.policy_file.limits

    @property
    def limits_active(self) -> bool:
        """Whether any caller has a limit: then every response is metered."""
        return _limits_active(self.policy_file, self.keys)

    def limits_for(self, caller: Caller) -> LimitSet:
        """The caller's limits, the three layers merged once per caller: every request
        asks, and merging builds validated models."""
        merged = self._merged_limits.get(caller.name)
        if merged is None:
            merged = self._merged_limits[caller.name] = self.limits.for_caller(
                caller.chain, caller.limits
            )
        return merged

    @property
    def reads_responses(self) -> bool:
        """Whether Envoy must stream responses through ext_proc: a policy looks at them,
        streams are validated, callers' tokens are counted against limits, or
        RESPONSE_PROCESSING=always (README, "Response processing"). The one definition
        every part asks."""
        return (
            self.settings.response_processing == "always"
            or self.validate_streams
            or self.limits_active
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

    async def check_policies(self) -> None:
        """Build the policies and close them again: what a reload is checked with
        before anyone is told to reload (a judge whose key variable is unset fails
        here, not in each worker). Raises GatewayError."""
        await self.build_chains().aclose()

    def checked(self) -> Gateway:
        """This configuration once its policies built (outside any event loop)."""
        asyncio.run(self.check_policies())
        return self

    def runtime(
        self, observer: Observer | None = None, counters: Counters | None = None
    ) -> Runtime:
        """This configuration with its policies instantiated: what a process serves.
        `counters`: where this process counts callers' use of their limits (they
        outlive a reload); None: limits are not enforced (tests of other parts)."""
        limiter = None
        if counters is not None and self.limits_active:
            limiter = Limiter(self.limits, counters)
        return Runtime(self, self.build_chains(), observer, limiter)


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
    # Enforces callers' limits; None when no caller has one.
    limiter: Limiter | None = None

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    async def aclose(self) -> None:
        """Release what the policies hold (judge clients): once no request uses them."""
        await self.chains.aclose()


def _limits_active(policy_file: PolicyFile, keys: KeyRegistry) -> bool:
    limits = policy_file.limits
    return limits.active or any(
        c.limits is not None and limits.for_caller(c.chain, c.limits).active for c in keys.callers
    )


def _check_waits(settings: Settings, policy_file: PolicyFile, router: Router) -> None:
    """A policy that holds tool calls for people needs the store their approvals live
    in, and every route must stay open that long: a held stream shows life only through
    keepalives, a held JSON answer not at all."""
    # A chain's gates decide one after another: their waits add up.
    chains = [policy_file.policies, *policy_file.chains.values()]
    wait = max(sum(e.waits_for_people_s() for e in chain) for chain in chains)
    if not wait:
        return
    where = settings.policy_config or "the policy file"
    problems = []
    if not settings.audit_enabled:
        problems.append(
            f"{where}: a policy asks people to approve tool calls, which needs "
            "AUDIT_ENABLED (pending approvals live in the audit store)"
        )
    for upstream in router.upstreams.values():
        idle = upstream.idle_timeout_s
        if idle <= wait + IDLE_MARGIN_S or idle <= 2 * settings.keepalive_interval_s:
            problems.append(
                f"{where}: provider {upstream.name!r} closes a silent request after "
                f"idle_timeout_s={idle:g}, but a tool call may wait {wait:g}s for a person "
                f"(and streams get a keepalive every {settings.keepalive_interval_s:g}s): "
                f"raise idle_timeout_s above {wait + IDLE_MARGIN_S:g}"
            )
    if problems:
        raise GatewayError("\n".join(problems))


def _check_limits(
    settings: Settings, policy_file: PolicyFile, keys: KeyRegistry, router: Router
) -> None:
    """What the limits say must be possible: prices that price something routed, chains
    that exist, counters every worker shares."""
    limits = policy_file.limits
    where = settings.policy_config or "the policy file"
    problems = [
        f"{where}: {p}" for p in limits.check_prices(router.named_models(), router.patterns)
    ]
    problems += [
        f"{where}: limits.chains: no chain named {name!r} (chains: "
        f"{', '.join(sorted({DEFAULT_CHAIN, *policy_file.chains}))})"
        for name in limits.chains
        if name != DEFAULT_CHAIN and name not in policy_file.chains
    ]
    for caller in keys.callers:
        if caller.limits is not None:
            problems += [
                f"{settings.keys_file}: {p}"
                for p in limits.check_caller(caller.name, caller.limits)
            ]
    if (
        _limits_active(policy_file, keys)
        and settings.extproc_workers > 1
        and settings.rate_limit_redis_url is None
    ):
        problems.append(
            f"{where}: limits with EXTPROC_WORKERS={settings.extproc_workers} need "
            "RATE_LIMIT_REDIS_URL: each worker would count on its own"
        )
    if problems:
        raise GatewayError("\n".join(problems))
