"""tool_call_judge: an LLM judge reviews every tool call the model wants to make.

The judge rates the probability that executing the call is harmful; at or above
`threshold` the call is blocked and the client sees `block_message` in its place. With
`on_uncertain: ask`, a probability from `uncertain_from` up to the threshold is a
person's to decide (`approval:`, as for `tool_approval`). When the
judge cannot answer (timeout, HTTP error, no verdict), `on_judge_error` decides; so it
does, at once and without calling the judge, while the endpoint's circuit breaker is open.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from extproc.core import audit
from extproc.core.decisions import Allow, BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import TextRewriter
from extproc.policies.asking import ApprovalConfig, ask_person, witness, witnessed
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import check_format
from extproc.policies.tool_call_judge.breaker import (
    BREAKERS,
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpen,
    Endpoint,
)
from extproc.policies.tool_call_judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeContext,
    JudgeError,
    JudgeVerdict,
    context_from_request,
)

log = logging.getLogger(__name__)

DEFAULT_BLOCK_MESSAGE = (
    "Tool call '{tool}' was blocked by the gateway (risk {probability:.2f}): {explanation}"
)
SHADOW_ASK_MESSAGE = "Tool call '{tool}' would have waited for a person's approval."
DEFAULT_ERROR_BLOCK_MESSAGE = (
    "Tool call '{tool}' was blocked: the safety judge could not review it ({reason})."
)


class ToolCallJudgeConfig(PolicyConfig):
    type: Literal["tool_call_judge"] = "tool_call_judge"
    threshold: float = Field(default=0.6, ge=0, le=1)
    judge: JudgeConfig
    on_judge_error: Literal["block", "allow"] = "block"
    breaker: BreakerConfig = BreakerConfig()
    system_prompt_chars: int = Field(default=500, ge=0)
    include_last_user_message: bool = True
    # Fields: tool, probability, explanation, arguments.
    block_message: str = DEFAULT_BLOCK_MESSAGE
    # Fields: tool, reason, arguments.
    error_block_message: str = DEFAULT_ERROR_BLOCK_MESSAGE
    # A probability from uncertain_from up to the threshold is uncertain: allowed, or
    # asked about (a person decides, as configured in `approval`).
    on_uncertain: Literal["allow", "ask"] = "allow"
    uncertain_from: float | None = Field(default=None, ge=0, le=1)
    approval: ApprovalConfig = ApprovalConfig()

    def waits_for_people_s(self) -> float:
        asks = self.on_uncertain == "ask" and self.mode == "enforce"
        # The judge's verdict comes first, then the person's answer.
        return self.judge.timeout_s + self.approval.timeout_s if asks else 0.0

    @model_validator(mode="after")
    def _check_uncertain(self) -> ToolCallJudgeConfig:
        if self.on_uncertain == "ask" and (
            self.uncertain_from is None or self.uncertain_from >= self.threshold
        ):
            raise ValueError("on_uncertain: ask needs uncertain_from below threshold")
        return self

    @field_validator("block_message")
    @classmethod
    def _check_block_message(cls, value: str) -> str:
        return check_format(
            value, "block_message", tool="t", probability=0.5, explanation="e", arguments="{}"
        )

    @field_validator("error_block_message")
    @classmethod
    def _check_error_block_message(cls, value: str) -> str:
        return check_format(value, "error_block_message", tool="t", reason="r", arguments="{}")


def _arguments(call: ToolCall) -> str:
    return call.raw_arguments or json.dumps(call.arguments, ensure_ascii=False)


class ToolCallJudgePolicy(Policy[ToolCallJudgeConfig]):
    type = "tool_call_judge"
    gates_tool_calls = True

    def __init__(
        self, config: ToolCallJudgeConfig, breakers: BreakerRegistry = BREAKERS
    ) -> None:  # the judge has no default
        super().__init__(config)
        self.judge = JudgeClient(config.judge)
        endpoint = Endpoint(config.judge.base_url, config.judge.model)
        self.breaker: CircuitBreaker | None = breakers.breaker(endpoint, config.breaker)
        # Asking a person: the model's text before the call is shown with it.
        self.rewrites_text = config.on_uncertain == "ask"
        self._text_key = f"tool_call_judge:{self.name}"

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return witness(request, self._text_key) if self.rewrites_text else None

    def _context(self, request: ApiRequest) -> JudgeContext:
        context = context_from_request(request, self.config.system_prompt_chars)
        if not self.config.include_last_user_message:
            context = JudgeContext(system_prompt=context.system_prompt)
        return context

    async def _verdict(self, call: ToolCall, request: ApiRequest) -> JudgeVerdict:
        context = self._context(request)
        if self.breaker is None:
            return await self.judge.verdict(call, context)
        senseless: JudgeError | None = None
        with self.breaker.call():  # raises CircuitOpen: the judge is not called
            try:
                return await self.judge.verdict(call, context)
            except JudgeError as exc:
                if exc.outage:
                    raise  # the endpoint failed: the breaker counts it
                senseless = exc  # the endpoint answered: not the breaker's business
        raise senseless

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall | Allow:
        wall, started = time.time(), time.perf_counter()
        try:
            verdict = await self._verdict(call, request)
        except (JudgeError, CircuitOpen) as exc:
            seconds = time.perf_counter() - started
            decision = "block" if self.config.on_judge_error == "block" else "allow"
            log.info(
                "%s: tool=%r judge_error=%r decision=%s latency_ms=%.0f",
                self.name, call.name, exc.reason, decision, seconds * 1000,
            )  # fmt: skip
            failed = audit.Evidence(
                judge=audit.JudgeVerdict(None, "", wall, seconds, exc.reason), failed=True
            )
            if decision == "allow":
                return Allow(failed)
            message = self.config.error_block_message.format(
                tool=call.name, reason=exc.reason, arguments=_arguments(call)
            )
            return BlockToolCall(message, failed)
        seconds = time.perf_counter() - started
        blocked = verdict.probability >= self.config.threshold
        log.info(
            "%s: tool=%r probability=%.2f decision=%s latency_ms=%.0f",
            self.name, call.name, verdict.probability, "block" if blocked else "allow",
            seconds * 1000,
        )  # fmt: skip
        evidence = audit.Evidence(
            judge=audit.JudgeVerdict(verdict.probability, verdict.explanation, wall, seconds)
        )
        if not blocked:
            if self._uncertain(verdict.probability):
                if self.mode is audit.Mode.SHADOW:
                    # Nobody is asked for a shadow policy: the record says it would be.
                    return BlockToolCall(SHADOW_ASK_MESSAGE.format(tool=call.name), evidence)
                why = (
                    f"the judge was unsure (risk {verdict.probability:.2f}): "
                    f"{verdict.explanation or 'no explanation given'}"
                )
                return await ask_person(
                    self.config.approval,
                    self.name,
                    call,
                    request,
                    why,
                    witnessed(request, self._text_key),
                    judge=evidence.judge,
                )
            return Allow(evidence)
        message = self.config.block_message.format(
            tool=call.name,
            probability=verdict.probability,
            explanation=verdict.explanation or "no explanation given",
            arguments=_arguments(call),
        )
        return BlockToolCall(message, evidence)

    def _uncertain(self, probability: float) -> bool:
        low = self.config.uncertain_from
        return self.config.on_uncertain == "ask" and low is not None and probability >= low

    async def aclose(self) -> None:
        await self.judge.aclose()
