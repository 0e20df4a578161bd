"""What a caller has left of its limits after a request was admitted: what the gateway
tells the client in rate-limit response headers (each API names them its own way)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Remaining:
    """One metric's tightest window: its limit, what is left, seconds until it resets."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class Allowance:
    requests: Remaining | None = None
    tokens: Remaining | None = None


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in x-ratelimit-reset-*: `1s`, `6m0s`, `2h0m0s`."""
    # Rounded up (float noise aside): a reset is never earlier than said.
    millis = max(math.ceil(seconds * 1000 - 1e-6), 0)
    if millis < 1000:
        return f"{millis}ms"
    whole = max(math.ceil(seconds - 0.001), 1)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
