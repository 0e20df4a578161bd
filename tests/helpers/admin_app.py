"""For tests of the admin app itself (not through a stack): realistic audit records
(a judged Bash block, an email redaction with before/after examples, a request
summary), an async wait with a deadline, and a reader of server-sent events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientPayloadError, ClientResponse

from extproc.observe.records import DecisionRecord, RequestRecord

ADMIN_KEY = "test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render_metrics() -> tuple[bytes, str]:
    return b"# HELP gateway_up Up.\n# TYPE gateway_up gauge\ngateway_up 1.0\n", METRICS_TYPE


def decision(
    request_id: str = "req-1",
    *,
    time_s: float | None = None,
    caller: str | None = "alice",
    api: str = "anthropic.messages",
    model: str | None = "claude-sonnet-4-6",
    provider: str | None = "anthropic",
    policy: str = "bash-guard",
    policy_type: str = "tool_call_judge",
    action: str = "block_tool_call",
    mode: str = "enforce",
    target: dict[str, Any] | None = None,
    message: str | None = "Bash call blocked",
    probability: float | None = 0.93,
    explanation: str | None = "Deletes the home directory.",
    judge_ms: float | None = 412.0,
) -> DecisionRecord:
    """A judged block of a Bash tool call, unless told otherwise."""
    return DecisionRecord(
        time=time.time() if time_s is None else time_s,
        request_id=request_id,
        caller=caller,
        api=api,
        model=model,
        provider=provider,
        policy=policy,
        policy_type=policy_type,
        action=action,
        mode=mode,
        target=(
            {"tool": "Bash", "arguments": {"command": "rm -rf ~"}} if target is None else target
        ),
        message=message,
        probability=probability,
        explanation=explanation,
        judge_ms=judge_ms,
    )


def redaction(
    request_id: str = "req-2", *, mode: str = "enforce", time_s: float | None = None, **kw: Any
) -> DecisionRecord:
    """A PII redaction of three emails in a response, with before/after examples."""
    target = {
        "kind": "email",
        "count": 3,
        "where": "response",
        "examples": [
            {"before": "mail bob@example.com today", "after": "mail [EMAIL] today"},
            {"before": "cc: eve@example.org", "after": "cc: [EMAIL]"},
        ],
    }
    return decision(
        request_id,
        time_s=time_s,
        policy=kw.pop("policy", "pii"),
        policy_type="pii_redaction",
        action="redact",
        mode=mode,
        target=target,
        message=None,
        probability=None,
        explanation=None,
        judge_ms=None,
        **kw,
    )


def request_summary(
    request_id: str = "req-1",
    *,
    time_s: float | None = None,
    caller: str | None = "alice",
    status: int = 200,
    outcome: str = "ok",
    policies_acted: tuple[str, ...] = ("bash-guard",),
    **kw: Any,
) -> RequestRecord:
    fields: dict[str, Any] = {
        "api": "anthropic.messages",
        "model": "claude-sonnet-4-6",
        "provider": "anthropic",
        "method": "POST",
        "path": "/v1/messages",
        "stream": True,
        "input_tokens": 1200,
        "output_tokens": 342,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "ttfb_ms": 231.5,
        "duration_ms": 1840.0,
        "events": 57,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        **kw,
    }
    return RequestRecord(
        time=time.time() if time_s is None else time_s,
        request_id=request_id,
        caller=caller,
        status=status,
        outcome=outcome,
        policies_acted=policies_acted,
        **fields,
    )


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 10.0
) -> None:
    """Poll a condition (plain or awaitable) until it holds; fail with `what` after
    `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class SseFrame:
    fields: dict[str, list[str]] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def id(self) -> str | None:
        return self.fields.get("id", [None])[-1]

    @property
    def event(self) -> str | None:
        return self.fields.get("event", [None])[-1]

    @property
    def data(self) -> str:
        return "\n".join(self.fields.get("data", []))


class SseReader:
    """Frames of a text/event-stream response, one at a time, with a deadline each."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def frame(self, within: float = 10.0) -> SseFrame:
        raw = await asyncio.wait_for(self.response.content.readuntil(b"\n\n"), within)
        if not raw.endswith(b"\n\n"):
            raise EOFError("the stream ended")
        out = SseFrame()
        for line in raw.decode().strip("\n").split("\n"):
            if line.startswith(":"):
                out.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            out.fields.setdefault(name, []).append(value.removeprefix(" "))
        return out

    async def event(self, within: float = 10.0) -> SseFrame:
        """The next frame that carries an event (comments and `retry:` skipped)."""
        deadline = time.monotonic() + within
        while True:
            frame = await self.frame(max(0.01, deadline - time.monotonic()))
            if "data" in frame.fields:
                return frame

    async def ended(self, within: float = 10.0) -> bool:
        """True once the server closed the stream (frames before the end are skipped)."""
        deadline = time.monotonic() + within
        while True:
            try:
                await self.frame(max(0.01, deadline - time.monotonic()))
            except (EOFError, ConnectionError, ClientPayloadError):
                return True
            except TimeoutError:
                return False
