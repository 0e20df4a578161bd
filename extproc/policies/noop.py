"""The policy that does nothing: the gateway's baseline behaviour."""

from __future__ import annotations

from typing import Literal

from extproc.policies.base import Policy, PolicyConfig


class NoOpConfig(PolicyConfig):
    type: Literal["noop"] = "noop"


class NoOpPolicy(Policy[NoOpConfig]):
    type = "noop"
