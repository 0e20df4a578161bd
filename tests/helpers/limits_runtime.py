"""A runtime that enforces callers' limits, for the pipeline's admission and metering
tests: the policy file's `limits:` section given as data, one caller holding the test
gateway key, and a real `Limiter` over counters and a clock the test holds (as
`Gateway.runtime` builds it, minus the files)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from extproc.gateway import Runtime
from extproc.keys import Caller, KeyRegistry, digest
from extproc.limits import Counters, Limiter, LimitsConfig, LimitSet, MemoryCounters
from extproc.policies.base import Chains, PolicyChain
from extproc.policy_config import PolicyFile
from tests.helpers.runtime import KEY, make_runtime

CALLER = "ci-bot"


def limited_runtime(
    limits: Mapping[str, Any],
    clock: Callable[[], float],
    counters: Counters | None = None,
    own: Mapping[str, Any] | None = None,
    chains: Chains | PolicyChain | None = None,
    **overrides: Any,
) -> Runtime:
    """`limits`: the policy file's `limits:` section; `own`: the caller's own limit set
    (from the keys file); `counters`: where the counts go (default: a fresh in-process
    store, reachable as `runtime.limiter.counters`)."""
    caller = Caller(
        name=CALLER,
        digest=digest(KEY),
        limits=LimitSet.model_validate(own) if own is not None else None,
    )
    base = make_runtime(chains, keys=KeyRegistry([caller]), **overrides)
    gateway = dataclasses.replace(
        base.gateway, policy_file=PolicyFile(limits=LimitsConfig.model_validate(limits))
    )
    limiter = Limiter(gateway.limits, counters or MemoryCounters(), clock)
    return Runtime(gateway, base.chains, base.observer, limiter)
