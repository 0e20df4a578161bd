"""Decisions on per-caller limits: admit a request or refuse it (429 over a limit, 503
when the counter store is down and the fail mode says closed), charge what a response
used, and report a caller's usage.

Requests are counted when admitted; tokens and dollars when the provider reports them,
so a budget is checked against what earlier requests used: the request that crosses a
budget still completes, and the next one is refused.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from extproc.contract import RETRY_SOON_S
from extproc.core.allowance import Allowance, Remaining
from extproc.core.throttle import Throttle
from extproc.core.usage import Usage
from extproc.limits.config import LimitsConfig, LimitSet
from extproc.limits.counters import Check, Counters, CounterStoreError, Metric
from extproc.limits.windows import WINDOWS, Window, iso_utc

log = logging.getLogger("extproc.limits")

Kind = Literal["requests", "tokens", "usd"]
# One warning line per this many seconds while the store is down, not one per request.
WARN_EVERY_S = 60.0
# Models warned about for having no price: bounded, as model names come from clients.
_MAX_UNPRICED_WARNED = 100


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    status: int = 200
    message: str = ""
    retry_after_s: int = 0
    allowance: Allowance | None = None
    store_failed: bool = False
    # The window that refused the request, as "tokens.per_day".
    exceeded: str | None = None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One metric in one window of a caller's usage; usd in dollars."""

    metric: Kind
    window: Window
    used: int | float
    limit: int | float
    remaining: int | float
    resets_at: str

    @property
    def name(self) -> str:
        return f"{self.metric}.{self.window.value}"


@dataclass(frozen=True, slots=True)
class _Rule:
    """One configured window of one metric, in the store's units."""

    kind: Kind
    metric: Metric
    window: Window
    limit: int | float
    store_limit: int

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.window.value}"


def _rules(limits: LimitSet) -> list[_Rule]:
    rules = [_Rule("requests", "requests", w, n, n) for w, n in limits.request_windows()]
    rules += [_Rule("tokens", "tokens", w, n, n) for w, n in limits.token_windows()]
    rules += [_Rule("usd", "usd_micros", w, d, round(d * 1e6)) for w, d in limits.usd_windows()]
    return rules


def _seconds_until(moment: float, now: float) -> int:
    return max(1, math.ceil(moment - now))


def _refusal(caller: str, rule: _Rule) -> str:
    plural = "" if rule.limit == 1 else "s"
    if rule.kind == "requests":
        what, amount = "request rate limit", f"{rule.limit:,} request{plural}"
    elif rule.kind == "tokens":
        what, amount = "token budget", f"{rule.limit:,} token{plural}"
    else:
        what, amount = "USD budget", f"${rule.limit:,.2f}"
    return f"caller {caller!r} is over its {what} for the {rule.window.noun} ({amount})"


def _tightest(
    rules: Sequence[_Rule], values: Sequence[int], kind: Kind, spent: int, now: float
) -> tuple[int, int, int] | None:
    """(limit, remaining, reset_s) of the `kind` window with the least left; on a tie, the
    one that resets last, as it binds longer. `spent` is what this request adds."""
    found = [
        (
            r.store_limit,
            max(0, r.store_limit - v - spent),
            _seconds_until(r.window.resets_at(now), now),
        )
        for r, v in zip(rules, values, strict=True)
        if r.kind == kind
    ]
    return min(found, key=lambda f: (f[1], -f[2])) if found else None


def _allowance(
    rules: Sequence[_Rule], values: Sequence[int], admitted: bool, now: float
) -> Allowance:
    requests = _tightest(rules, values, "requests", 1 if admitted else 0, now)
    tokens = _tightest(rules, values, "tokens", 0, now)
    return Allowance(
        Remaining(*requests) if requests else None, Remaining(*tokens) if tokens else None
    )


class Limiter:
    def __init__(
        self,
        config: LimitsConfig,
        counters: Counters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.counters = counters
        self._clock = clock
        self.store_failures = 0
        self._warn_throttle = Throttle(WARN_EVERY_S)
        self._unpriced_warned: set[str] = set()

    async def admit(self, caller: str, limits: LimitSet, model: str) -> Admission:
        """Whether `caller` may send a request now (to `model`); counts it if so.

        USD budgets are checked whatever the model: a caller over its dollars is over
        them, even for a model without a price."""
        if not limits.active:
            return Admission(allowed=True)
        now = self._clock()
        rules = _rules(limits)
        checks = [Check(r.metric, r.window, r.store_limit) for r in rules]
        try:
            values = await self.counters.admit(caller, checks, now)
        except CounterStoreError as exc:
            return self._store_failed(limits, exc)
        over = [r for r, v in zip(rules, values, strict=True) if v >= r.store_limit]
        allowance = _allowance(rules, values, not over, now)
        if not over:
            return Admission(allowed=True, allowance=allowance)
        # The refusal lasts until every exhausted window has reset: name the last of them.
        rule = max(over, key=lambda r: r.window.resets_at(now))
        resets_at = rule.window.resets_at(now)
        return Admission(
            allowed=False,
            status=429,
            message=f"{_refusal(caller, rule)}; it resets at {iso_utc(resets_at)}",
            retry_after_s=_seconds_until(resets_at, now),
            allowance=allowance,
            exceeded=rule.name,
        )

    def _store_failed(self, limits: LimitSet, exc: CounterStoreError) -> Admission:
        self._count_failure(exc)
        fail = self.config.fail_mode
        closed = (fail.requests == "closed" and bool(limits.request_windows())) or (
            fail.budgets == "closed" and limits.has_budgets
        )
        if not closed:
            return Admission(allowed=True, store_failed=True)
        return Admission(
            allowed=False,
            status=503,
            message="the gateway cannot check rate limits and budgets right now; retry shortly",
            retry_after_s=RETRY_SOON_S,
            store_failed=True,
        )

    def _count_failure(self, exc: CounterStoreError) -> None:
        self.store_failures += 1
        if self._warn_throttle.ready():
            fail = self.config.fail_mode
            log.warning(
                "limits: counter store failed (%s); requests fail %s, budgets fail %s; "
                "%d failures so far",
                exc,
                fail.requests,
                fail.budgets,
                self.store_failures,
            )

    async def charge(self, caller: str, limits: LimitSet, model: str, usage: Usage) -> None:
        """Add a response's tokens and cost to the caller's budgets. Never raises: a
        store failure is counted and logged, and the tokens go uncounted."""
        amounts: dict[Metric, int] = {}
        windows: set[Window] = set()
        if token_windows := limits.token_windows():
            # Cache reads are left out, as providers' own token rate limits leave them out:
            # a long cached prompt re-read every turn would otherwise eat a budget in a few
            # cheap requests. Cache writes are new input and count.
            amounts["tokens"] = (
                (usage.uncached_input_tokens or 0)
                + (usage.output_tokens or 0)
                + (usage.cache_write_tokens or 0)
            )
            windows.update(w for w, _ in token_windows)
        if usd_windows := limits.usd_windows():
            price = self.config.price_for(model)
            if price is not None:
                amounts["usd_micros"] = price.cost_micros(usage)
                windows.update(w for w, _ in usd_windows)
            else:
                self._warn_unpriced(model)
        if not any(amounts.values()):
            return
        try:
            await self.counters.charge(
                caller, amounts, [w for w in WINDOWS if w in windows], self._clock()
            )
        except CounterStoreError as exc:
            self._count_failure(exc)

    def _warn_unpriced(self, model: str) -> None:
        if model in self._unpriced_warned or len(self._unpriced_warned) >= _MAX_UNPRICED_WARNED:
            return
        self._unpriced_warned.add(model)
        log.warning("limits: no price matches model %r: its requests count in no USD budget", model)

    async def report(self, caller: str, limits: LimitSet) -> list[UsageLine]:
        """The caller's usage in each configured window. Raises CounterStoreError."""
        now = self._clock()
        rules = _rules(limits)
        values = await self.counters.read(caller, [(r.metric, r.window) for r in rules], now)
        lines = []
        for rule in rules:
            used: int | float = values[(rule.metric, rule.window)]
            if rule.kind == "usd":
                used = used / 1e6
            lines.append(
                UsageLine(
                    metric=rule.kind,
                    window=rule.window,
                    used=used,
                    limit=rule.limit,
                    remaining=max(0, round(rule.limit - used, 6)),
                    resets_at=iso_utc(rule.window.resets_at(now)),
                )
            )
        return lines

    async def aclose(self) -> None:
        await self.counters.aclose()
