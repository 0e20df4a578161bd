"""Asking a person about a tool call: the `approval:` block of `tool_approval` (and of
`tool_call_judge` with `on_uncertain: ask`), and how a policy turns the desk's answer
into its decision.

What the person sees is redacted here, off the event loop (secrets and personal data
out of the arguments and the model's text), before it reaches the store, the web view
or a webhook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.approvals.desk import DESK, ApprovalDesk, ApprovalUnavailable
from extproc.approvals.model import PendingApproval, Status
from extproc.core import audit
from extproc.core.decisions import Allow, BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span
from extproc.policies.matching import check_format
from extproc.policies.redacting import redact_text

log = logging.getLogger("extproc.policies")

DEFAULT_DENY_MESSAGE = "Tool call '{tool}' was denied by {approver}{reason}."
DEFAULT_TIMEOUT_MESSAGE = (
    "Tool call '{tool}' was blocked: nobody approved it within {timeout_s:g} seconds."
)
UNAVAILABLE_MESSAGE = (
    "Tool call '{tool}' was blocked: it needs a person's approval, and none can be asked right now."
)
# A stream waiting for a person is kept alive by pings; a JSON answer is not, so the
# wait stays under the provider routes' default idle timeout (600 s).
MAX_TIMEOUT_S = 540.0
MAX_ARGUMENT_CHARS = 8_000
ARGUMENT_HEAD_CHARS = 5_000
ARGUMENT_TAIL_CHARS = 3_000
MAX_WHY_CHARS = 1_000
MAX_PRECEDING_CHARS = 2_000


class ApprovalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=300.0, ge=1, le=MAX_TIMEOUT_S)
    on_timeout: Literal["deny", "allow"] = "deny"
    # POSTed each pending call (and its end), for a Slack or PagerDuty bot that answers
    # on the admin API.
    webhook_url: str | None = None
    # Fields: tool, approver, reason (", <reason>" or empty), arguments.
    deny_message: str = DEFAULT_DENY_MESSAGE
    # Fields: tool, timeout_s, arguments.
    timeout_message: str = DEFAULT_TIMEOUT_MESSAGE

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        # Never echoed: a webhook URL often carries its token.
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("deny_message")
    @classmethod
    def _check_deny(cls, value: str) -> str:
        return check_format(value, "deny_message", tool="t", approver="a", reason="", arguments="")

    @field_validator("timeout_message")
    @classmethod
    def _check_timeout(cls, value: str) -> str:
        return check_format(value, "timeout_message", tool="t", timeout_s=1.0, arguments="")


class TextWitness:
    """A TextRewriter that changes nothing and remembers the last characters of one text
    of the response: what the model wrote before its tool call, for the approver."""

    holdback = 0

    def __init__(self) -> None:
        self.pieces: deque[str] = deque()
        self.size = 0

    def spans(self, text: str, start: int) -> Iterable[Span]:
        piece = text[start:]
        if piece:
            self.pieces.append(piece)
            self.size += len(piece)
            while self.size - len(self.pieces[0]) > MAX_PRECEDING_CHARS:
                self.size -= len(self.pieces.popleft())
        return ()

    def text(self) -> str:
        return "".join(self.pieces)


def witness(request: ApiRequest, key: str) -> TextWitness:
    """A new witness for one text of `request`'s response, kept in its scratch space."""
    found = TextWitness()
    request.state.setdefault(key, []).append(found)
    return found


def witnessed(request: ApiRequest, key: str) -> str:
    """What the witnesses of `request` saw, the last MAX_PRECEDING_CHARS of it."""
    texts = [w.text() for w in request.state.get(key, ())]
    return "\n\n".join(t for t in texts if t)[-MAX_PRECEDING_CHARS:]


def _head_and_tail(text: str) -> str:
    """Arguments as the approver sees them, redacted: whole when short, else their
    beginning and their end, so padding cannot push what matters out of sight."""
    if len(text) <= MAX_ARGUMENT_CHARS:
        return redact_text(text)
    head, tail = text[:ARGUMENT_HEAD_CHARS], text[-ARGUMENT_TAIL_CHARS:]
    hidden = len(text) - len(head) - len(tail)
    return redact_text(head) + f"\n…[{hidden} characters not shown]…\n" + redact_text(tail)


def _arguments(call: ToolCall) -> str:
    return call.raw_arguments or json.dumps(call.arguments, ensure_ascii=False)


async def ask_person(
    config: ApprovalConfig,
    policy: str,
    call: ToolCall,
    request: ApiRequest,
    why: str,
    preceding_text: str = "",
    desk: ApprovalDesk = DESK,
    judge: audit.JudgeVerdict | None = None,
) -> BlockToolCall | Allow:
    """Hold `call` until a person answers (or the time runs out) and decide by that."""
    arguments, preceding, why = await asyncio.to_thread(
        lambda: (
            _head_and_tail(_arguments(call)),
            redact_text(preceding_text, MAX_PRECEDING_CHARS),
            # A judge's explanation often quotes the arguments.
            redact_text(why, MAX_WHY_CHARS),
        )
    )
    pending = PendingApproval(
        id=secrets.token_urlsafe(12),
        holder=desk.holder,
        caller=request.caller,
        api=request.api,
        model=request.model,
        request_id=request.request_id,
        policy=policy,
        tool=call.name,
        arguments=arguments,
        preceding_text=preceding,
        why=why,
        timeout_s=config.timeout_s,
    )
    try:
        answer = await desk.ask(pending, config.webhook_url)
    except ApprovalUnavailable as exc:
        log.error("%s: tool=%r cannot be asked about: %s", policy, call.name, exc)
        failed = audit.Evidence(judge=judge, failed=True)
        return BlockToolCall(UNAVAILABLE_MESSAGE.format(tool=call.name), failed)
    log.info(
        "%s: tool=%r approval=%s by=%s after_s=%.1f",
        policy, call.name, answer.status.value, answer.by, answer.seconds,
    )  # fmt: skip
    verdict = audit.ApprovalVerdict(answer.status.value, answer.by, answer.reason, answer.seconds)
    evidence = audit.Evidence(judge=judge, approval=verdict)
    if answer.status is Status.APPROVED:
        return Allow(evidence)
    if answer.status is Status.DENIED:
        reason = f", {answer.reason}" if answer.reason else ""
        message = config.deny_message.format(
            tool=call.name, approver=answer.by or "a person", reason=reason,
            arguments=_arguments(call),
        )  # fmt: skip
        return BlockToolCall(message, evidence)
    # Timed out (a cancelled ask never returns: its request is gone).
    if config.on_timeout == "allow":
        return Allow(evidence)
    message = config.timeout_message.format(
        tool=call.name, timeout_s=config.timeout_s, arguments=_arguments(call)
    )
    return BlockToolCall(message, evidence)
