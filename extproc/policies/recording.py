"""Each policy outcome as a decision in the request's log, and shadow mode.

The chain asks one policy at a time through these functions: they call the policy's
hook, turn what it returned (or raised) into a `Decision` for `request.decisions`, and,
for a policy in shadow mode, give back what lets the traffic pass exactly as it came.
A policy only returns decisions and evidence; it never records itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from extproc.core.audit import Action, Decision, DecisionLog, Evidence, Mode
from extproc.core.decisions import (
    Allow,
    BlockResponse,
    Deny,
    ToolCall,
    ToolOutcome,
)
from extproc.core.request import ApiRequest
from extproc.core.rewriting import RewriteStep, Span, TextRewriter
from extproc.engine.tools import drain_watching

if TYPE_CHECKING:
    from extproc.policies.base import Policy

log = logging.getLogger("extproc.policies")

# How long a shadow policy may take over one request or tool call. Nothing waits for it
# (the traffic has gone on), so this only bounds how long its work lives on.
SHADOW_TIMEOUT_S = 60.0
# Shadow request checks run beside their request: held here until they end.
_SHADOWING: set[asyncio.Task[Deny | None]] = set()


def _decision(
    policy: Policy[Any],
    action: Action,
    target: Mapping[str, Any],
    message: str | None = None,
    evidence: Evidence | None = None,
) -> Decision:
    judge = evidence.judge if evidence is not None else None
    return Decision(policy.name, policy.type, action, policy.mode, target, message, judge)


def _failed(exc: BaseException) -> str:
    return f"the policy failed ({type(exc).__name__})"


async def request_outcome(policy: Policy[Any], request: ApiRequest) -> Deny | None:
    """One policy's look at the request: a Deny to apply, or None. In shadow mode
    (`shadow_request` runs it on a copy) the body it leaves is thrown away."""
    shadow = policy.mode is Mode.SHADOW
    body, changed = request.body, request.body_changed
    decisions = request.decisions
    try:
        async with asyncio.timeout(SHADOW_TIMEOUT_S if shadow else None):
            verdict = await policy.on_request(request)
    except Exception as exc:
        if shadow:
            why = _shadow_failed(exc)
            decisions.add(_decision(policy, Action.ERROR_FAIL_OPEN, {"where": "request"}, why))
            return None
        decisions.add(
            _decision(policy, Action.ERROR_FAIL_CLOSED, {"where": "request"}, _failed(exc))
        )
        raise
    evidence = verdict.evidence if verdict is not None else None
    if request.body is not body:
        _log_request_rewrite(policy, evidence, decisions)
        if shadow:
            request.body, request.body_changed = body, changed
    if isinstance(verdict, Deny):
        failed = evidence is not None and evidence.failed
        action = Action.ERROR_FAIL_CLOSED if failed else Action.REJECT_REQUEST
        target = {"where": "request", "status": verdict.status}
        decisions.add(_decision(policy, action, target, verdict.message, evidence))
        return None if shadow else verdict
    if evidence is not None and evidence.failed:
        decisions.add(
            _decision(policy, Action.ERROR_FAIL_OPEN, {"where": "request"}, None, evidence)
        )
    return None


def shadow_request(policy: Policy[Any], request: ApiRequest) -> None:
    """A shadow policy's look at the request, beside it: on a copy (the request goes on
    at once, with the body the enforcing policies leave), its decisions recorded."""
    copy = dataclasses.replace(request, state={})
    task = asyncio.create_task(request_outcome(policy, copy))
    _SHADOWING.add(task)
    task.add_done_callback(_shadow_done)


def _shadow_done(task: asyncio.Task[Deny | None]) -> None:
    _SHADOWING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a shadow request check failed", exc_info=task.exception())


async def drain_shadow_work(timeout_s: float) -> None:
    """Let shadow checks and decisions still under way finish (at shutdown, before the
    policies' clients close), for at most `timeout_s` in all."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    if _SHADOWING:
        await asyncio.wait(set(_SHADOWING), timeout=timeout_s)
    await drain_watching(max(0.0, deadline - asyncio.get_running_loop().time()))


def _shadow_failed(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"the policy did not decide within {SHADOW_TIMEOUT_S:g}s"
    log.error("a shadow policy failed", exc_info=exc)
    return _failed(exc)


def _log_request_rewrite(
    policy: Policy[Any], evidence: Evidence | None, decisions: DecisionLog
) -> None:
    matches = evidence.matches if evidence is not None and evidence.matches else {"": 1}
    examples = evidence.examples if evidence is not None else ()
    for kind, count in matches.items():
        target: dict[str, Any] = {"kind": kind or "text", "count": count, "where": "request"}
        if decisions.keep_originals and examples:
            target["examples"] = [{"before": b, "after": a} for b, a in examples]
            examples = ()  # shown once, with the first kind
        decisions.add(_decision(policy, policy.rewrite_action, target, None, evidence))


def tool_target(call: ToolCall) -> dict[str, Any]:
    return {"tool": call.name, "id": call.id, "arguments": call.arguments}


async def tool_call_outcome(
    policy: Policy[Any], call: ToolCall, request: ApiRequest
) -> ToolOutcome:
    """One gate's look at one complete tool call: a block to apply, or None (always
    None for a shadow policy, whose decision is only recorded)."""
    shadow = policy.mode is Mode.SHADOW
    decisions = request.decisions
    try:
        async with asyncio.timeout(SHADOW_TIMEOUT_S if shadow else None):
            verdict = await policy.on_tool_call(call, request)
    except Exception as exc:
        if shadow:
            why = _shadow_failed(exc)
            decisions.add(_decision(policy, Action.ERROR_FAIL_OPEN, tool_target(call), why))
            return None
        decisions.add(_decision(policy, Action.ERROR_FAIL_CLOSED, tool_target(call), _failed(exc)))
        raise
    evidence = verdict.evidence if verdict is not None else None
    failed = evidence is not None and evidence.failed
    target = tool_target(call)
    if evidence is not None and evidence.approval is not None:
        target["approval"] = evidence.approval.to_dict()
    if verdict is None or isinstance(verdict, Allow):
        action = Action.ERROR_FAIL_OPEN if failed else Action.ALLOW
        decisions.add(_decision(policy, action, target, None, evidence))
        return None
    if failed:
        action = Action.ERROR_FAIL_CLOSED
    elif isinstance(verdict, BlockResponse):
        action = Action.BLOCK_RESPONSE
    else:
        action = Action.BLOCK_TOOL_CALL
    decisions.add(_decision(policy, action, target, verdict.message, evidence))
    return None if shadow else verdict


def rewrite_step(
    policy: Policy[Any], rewriter: TextRewriter, decisions: DecisionLog
) -> RewriteStep:
    """The policy's rewriter for one response text, counting each span it applies (or,
    in shadow mode, would apply) into the request's log."""
    name, type_, action, mode = policy.name, policy.type, policy.rewrite_action, policy.mode

    def on_span(span: Span, original: str) -> None:
        decisions.count_rewrite(
            name, type_, action, mode, span.kind or "text", "response", original, span.replacement
        )

    return RewriteStep(rewriter, on_span, shadow=mode is Mode.SHADOW)
