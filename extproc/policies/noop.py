"""The policy that does nothing: the gateway's baseline behaviour."""

from __future__ import annotations

import builtins
from typing import ClassVar, Literal

from extproc.policies.base import Policy, PolicyConfig


class NoOpConfig(PolicyConfig):
    type: Literal["noop"] = "noop"


class NoOpPolicy(Policy):
    type = "noop"
    Config: ClassVar[builtins.type[PolicyConfig]] = NoOpConfig
