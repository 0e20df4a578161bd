"""The policy that does nothing: the gateway's baseline behaviour."""

from __future__ import annotations

from extproc.policies.base import Policy


class NoOpPolicy(Policy):
    name = "noop"
    passthrough = True
