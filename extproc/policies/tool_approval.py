"""tool_approval: a person approves or denies the tool calls that matter most.

Rules pick the calls: each names tool globs, and optionally a regex searched in the
arguments (their JSON as the model wrote it), caller globs and model globs; a call
matching every condition of one rule is held while a person decides in the web view, on
the admin API or through a webhook's bot (README, "Human approval"). Without rules every
call is asked about. Text the model wrote before the call has already streamed; the call
and everything after it wait for the answer. A denied or timed-out call becomes text, as
a judge's block does; an approved one is released exactly as the provider sent it.

In shadow mode nobody is asked: the record says which calls would have been.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.core.audit import Mode
from extproc.core.decisions import Allow, BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import TextRewriter
from extproc.policies.asking import (
    ApprovalConfig,
    ask_person,
    witness,
    witnessed,
)
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import compile_regex, matches_any

SHADOW_MESSAGE = "Tool call '{tool}' would have waited for a person's approval."


class ApprovalRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    arguments: str | None = None  # regex, searched in the arguments' JSON
    callers: list[str] | None = None
    models: list[str] | None = None

    @field_validator("arguments")
    @classmethod
    def _compile(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    def describe(self) -> str:
        parts = [f"tools {', '.join(self.tools)}"]
        if self.arguments is not None:
            parts.append(f"arguments match /{self.arguments}/")
        if self.callers is not None:
            parts.append(f"callers {', '.join(self.callers)}")
        if self.models is not None:
            parts.append(f"models {', '.join(self.models)}")
        return "rule: " + "; ".join(parts)


class ToolApprovalConfig(PolicyConfig):
    type: Literal["tool_approval"] = "tool_approval"
    rules: list[ApprovalRule] = Field(default_factory=lambda: [ApprovalRule()])
    approval: ApprovalConfig = ApprovalConfig()

    def waits_for_people_s(self) -> float:
        return self.approval.timeout_s if self.mode == "enforce" else 0.0


class _Rule:
    __slots__ = ("arguments", "config", "why")

    def __init__(self, config: ApprovalRule) -> None:
        self.config = config
        self.arguments = re.compile(config.arguments) if config.arguments is not None else None
        self.why = config.describe()

    def matches(self, call: ToolCall, request: ApiRequest) -> bool:
        c = self.config
        if not matches_any(call.name, c.tools):
            return False
        if c.callers is not None and not matches_any(request.caller or "", c.callers):
            return False
        if c.models is not None and not matches_any(request.model, c.models):
            return False
        return self.arguments is None or self.arguments.search(call.raw_arguments) is not None


class ToolApprovalPolicy(Policy[ToolApprovalConfig]):
    type = "tool_approval"
    gates_tool_calls = True
    # Only to see the model's text before a call (for the approver): it is never changed.
    rewrites_text = True

    def __init__(self, config: ToolApprovalConfig | None = None) -> None:
        super().__init__(config)
        self.rules = [_Rule(r) for r in self.config.rules]
        self._text_key = f"tool_approval:{self.name}"

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return witness(request, self._text_key)

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall | Allow:
        rule = next((r for r in self.rules if r.matches(call, request)), None)
        if rule is None:
            return Allow()
        if self.mode is Mode.SHADOW:
            return BlockToolCall(SHADOW_MESSAGE.format(tool=call.name))
        return await ask_person(
            self.config.approval,
            self.name,
            call,
            request,
            rule.why,
            witnessed(request, self._text_key),
        )
