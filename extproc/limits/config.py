"""What the limits file says: per-caller rate limits, token and USD budgets, the price
table USD budgets are counted with, and what to do when the shared counter store is
unreachable.

A caller's limits are built in three layers, each window by window: the default, then
its chain's set, then its own entry's (`LimitsConfig.for_caller`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from extproc.core.usage import Usage
from extproc.limits.windows import WINDOWS, Window

N = TypeVar("N", int, float)

WINDOW_NAMES = tuple(w.value for w in WINDOWS)
METRIC_NAMES = ("requests", "tokens", "usd")


def _unknown_keys(data: Any, allowed: tuple[str, ...], what: str) -> Any:
    """Reject keys outside `allowed` with a message that lists the allowed ones: the
    generic "extra inputs are not permitted" leaves the user guessing."""
    if isinstance(data, dict):
        for key in data:
            if key not in allowed:
                raise ValueError(f"unknown {what} {key!r}: {what}s are {', '.join(allowed)}")
    return data


class Windowed(BaseModel, Generic[N]):
    """One metric's limit per window; an unset window does not limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_minute: N | None = None
    per_day: N | None = None
    per_month: N | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_windows(cls, data: Any) -> Any:
        data = _unknown_keys(data, WINDOW_NAMES, "window")
        if isinstance(data, dict):
            for key, value in data.items():
                # YAML's `yes` would otherwise count as 1.
                if isinstance(value, bool):
                    raise ValueError(f"{key} must be a number, not {str(value).lower()}")
        return data

    @field_validator("per_minute", "per_day", "per_month")
    @classmethod
    def _not_negative(cls, value: N | None, info: ValidationInfo) -> N | None:
        if value is not None and (value < 0 or not math.isfinite(value)):
            raise ValueError(f"{info.field_name} must be a number >= 0, not {value}")
        return value

    def limit(self, window: Window) -> N | None:
        if window is Window.MINUTE:
            return self.per_minute
        return self.per_day if window is Window.DAY else self.per_month

    def windows(self) -> list[tuple[Window, N]]:
        """The windows set, shortest first, with their limits."""
        return [(w, v) for w in WINDOWS if (v := self.limit(w)) is not None]

    def over(self, base: Windowed[N] | None) -> Windowed[N]:
        """These windows where set, `base`'s elsewhere."""
        if base is None:
            return self
        merged = {w.value: _first(self.limit(w), base.limit(w)) for w in WINDOWS}
        return type(self)(**merged)


def _first(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _over(mine: Windowed[N] | None, base: Windowed[N] | None) -> Windowed[N] | None:
    return base if mine is None else mine.over(base)


class LimitSet(BaseModel):
    """The limits of one caller, chain or the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: Windowed[int] | None = None
    tokens: Windowed[int] | None = None
    usd: Windowed[float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_metrics(cls, data: Any) -> Any:
        return _unknown_keys(data, METRIC_NAMES, "limit")

    def over(self, base: LimitSet) -> LimitSet:
        """This set laid over `base`: every window set here wins, window by window."""
        return LimitSet(
            requests=_over(self.requests, base.requests),
            tokens=_over(self.tokens, base.tokens),
            usd=_over(self.usd, base.usd),
        )

    def request_windows(self) -> list[tuple[Window, int]]:
        return self.requests.windows() if self.requests else []

    def token_windows(self) -> list[tuple[Window, int]]:
        return self.tokens.windows() if self.tokens else []

    def usd_windows(self) -> list[tuple[Window, float]]:
        return self.usd.windows() if self.usd else []

    @property
    def has_budgets(self) -> bool:
        """Whether a token or USD window is set (what `fail_mode.budgets` is about)."""
        return bool(self.token_windows() or self.usd_windows())

    @property
    def active(self) -> bool:
        return bool(self.request_windows()) or self.has_budgets


class Price(BaseModel):
    """USD per million tokens for the models matching `model` (a case-sensitive glob)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)
    cache_read: float = Field(ge=0, allow_inf_nan=False)
    cache_write: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _cache_defaults_to_input(cls, data: Any) -> Any:
        # A provider that does not price cache tokens apart bills them as input. A bad
        # input price is not copied (the 0 never outlives the failed validation), so it
        # is reported once, as `input`.
        if isinstance(data, dict):
            fallback = data.get("input") if _price_like(data.get("input")) else 0
            data = {"cache_read": fallback, "cache_write": fallback, **data}
        return data

    def matches(self, model: str) -> bool:
        return fnmatchcase(model, self.model)

    def cost_micros(self, usage: Usage) -> int:
        """What `usage` costs in millionths of a dollar, rounded up."""
        # USD per million tokens times tokens is micro-dollars. Rounding to 6 places first
        # keeps float noise (1000 * 0.3 = 300.00000000000006) from adding a micro.
        total = (
            (usage.uncached_input_tokens or 0) * self.input
            + (usage.output_tokens or 0) * self.output
            + (usage.cache_read_tokens or 0) * self.cache_read
            + (usage.cache_write_tokens or 0) * self.cache_write
        )
        return math.ceil(round(total, 6))


def _price_like(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


class FailMode(BaseModel):
    """When the shared counter store is unreachable: `open` lets requests through
    uncounted, `closed` refuses them (503). `budgets` covers token and USD windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: Literal["open", "closed"] = "open"
    budgets: Literal["open", "closed"] = "closed"


class LimitsConfig(BaseModel):
    """The policy file's `limits:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: LimitSet = LimitSet()
    chains: dict[str, LimitSet] = Field(default_factory=dict)
    prices: tuple[Price, ...] = ()
    fail_mode: FailMode = FailMode()

    @model_validator(mode="after")
    def _usd_needs_prices(self) -> LimitsConfig:
        sets = [("default", self.default)] + [(f"chains.{n}", s) for n, s in self.chains.items()]
        for where, limits in sets:
            if limits.usd_windows() and not self.prices:
                raise ValueError(f"{where}: usd budgets need prices (limits.prices)")
        return self

    @property
    def active(self) -> bool:
        """Whether the default or a chain could limit anyone (callers' own sets aside)."""
        return self.default.active or any(s.active for s in self.chains.values())

    def for_caller(self, chain: str, own: LimitSet | None) -> LimitSet:
        """The default, overridden by the chain's set, overridden by the caller's own."""
        limits = self.default
        if chain in self.chains:
            limits = self.chains[chain].over(limits)
        return own.over(limits) if own is not None else limits

    def check_caller(self, name: str, own: LimitSet) -> list[str]:
        """Problems with a caller's own limit set, which is read from the keys file."""
        if own.usd_windows() and not self.prices:
            return [f"caller {name!r}: usd budgets need prices (limits.prices)"]
        return []

    def price_for(self, model: str) -> Price | None:
        """The first price whose glob matches `model`."""
        return next((p for p in self.prices if p.matches(model)), None)

    def check_prices(self, known_models: Iterable[str], route_patterns: Iterable[str]) -> list[str]:
        """Problems for price patterns that match nothing the routing table could send:
        most likely a typo, leaving those models' requests uncounted in USD budgets."""
        models = list(known_models)
        routes = list(route_patterns)
        problems = []
        for price in self.prices:
            glob = price.model
            if any(fnmatchcase(m, glob) for m in models):
                continue
            # Both ways round: "claude-*" prices a route "claude-sonnet-*", and a route
            # "gpt-*" carries the price pattern "gpt-4o".
            if any(fnmatchcase(r, glob) or fnmatchcase(glob, r) for r in routes):
                continue
            problems.append(f"limits.prices: {glob!r} matches no model the routing table knows")
        return problems
