"""Each policy outcome as a decision, and shadow mode (extproc/policies/recording.py)."""

from __future__ import annotations

import asyncio
import copy
from typing import Literal

import pytest

from extproc.core.audit import Action, Decision, DecisionLog, Evidence, JudgeVerdict, Mode
from extproc.core.decisions import Allow, BlockResponse, BlockToolCall, Deny, ToolCall, ToolDecision
from extproc.core.request import ApiRequest
from extproc.engine.text import TextPipeline
from extproc.policies import recording
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.pii_redaction import PiiRedactionConfig, PiiRedactionPolicy
from extproc.policies.request_guard import RequestGuardConfig, RequestGuardPolicy
from tests.helpers.dialects import anthropic_body, api_request

Modes = Literal["enforce", "shadow"]
CALL = ToolCall("toolu_1", "Bash", {"command": "rm -rf /"}, '{"command": "rm -rf /"}', 0)
VERDICT = JudgeVerdict(0.97, "deletes everything", started=1.0, seconds=0.25)


class Gate(Policy[PolicyConfig]):
    """Returns a fixed decision about every tool call, or raises."""

    type = "gate"
    gates_tool_calls = True

    def __init__(self, decision: ToolDecision | Exception, mode: Modes = "enforce") -> None:
        super().__init__(PolicyConfig(type="gate", name="gate", mode=mode))
        self.decision = decision

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolDecision:
        if isinstance(self.decision, Exception):
            raise self.decision
        return self.decision


class Refuse(Policy[PolicyConfig]):
    reads_requests = True

    async def on_request(self, request: ApiRequest) -> Deny | None:
        return Deny(403, "no", Evidence(failed=self.config.name == "failing"))


async def shadows_done() -> None:
    """Shadow request checks run beside the request: wait until they have ended."""
    await asyncio.gather(*recording._SHADOWING)


def recorded(body: dict[str, object] | None = None) -> tuple[ApiRequest, list[Decision]]:
    """A request whose decisions land in a list."""
    seen: list[Decision] = []
    request = api_request(body or anthropic_body())
    request.decisions = DecisionLog(seen.append)
    return request, seen


@pytest.mark.parametrize(
    ("decision", "action", "applied"),
    [
        (None, Action.ALLOW, None),
        (Allow(Evidence(judge=VERDICT)), Action.ALLOW, None),
        (BlockToolCall("blocked", Evidence(judge=VERDICT)), Action.BLOCK_TOOL_CALL, "blocked"),
        (BlockResponse("stop"), Action.BLOCK_RESPONSE, "stop"),
        (
            BlockToolCall("judge down", Evidence(failed=True)),
            Action.ERROR_FAIL_CLOSED,
            "judge down",
        ),
        (Allow(Evidence(failed=True)), Action.ERROR_FAIL_OPEN, None),
    ],
)
@pytest.mark.parametrize("mode", ["enforce", "shadow"])
async def test_every_tool_call_outcome_is_a_decision(
    decision: ToolDecision, action: Action, applied: str | None, mode: Modes
) -> None:
    request, seen = recorded()
    chain = PolicyChain([Gate(decision, mode)])
    if mode == "shadow":
        # Never asked to decide: shown the call beside the traffic.
        assert not chain.gates_tool_calls and chain.watches_tool_calls
        await chain.watch_tool_call(CALL, request)
        outcome = None
    else:
        outcome = await chain.decide_tool_call(CALL, request)
    # Shadow mode records the same decision and applies none.
    if applied is None or mode == "shadow":
        assert outcome is None
    else:
        assert outcome is not None and outcome.message == applied
    [made] = seen
    assert (made.policy, made.policy_type, made.action, made.mode) == (
        "gate",
        "gate",
        action,
        Mode(mode),
    )
    assert made.target == {"tool": "Bash", "id": "toolu_1", "arguments": CALL.arguments}
    evidence = getattr(decision, "evidence", None)
    assert made.judge is (evidence.judge if evidence else None)
    # Only an applied change counts as acting: not a pass, a failure let through, a shadow.
    changed = mode == "enforce" and action not in (Action.ALLOW, Action.ERROR_FAIL_OPEN)
    assert request.decisions.acted == (["gate"] if changed else [])


async def test_a_failing_gate_is_recorded_and_fails_closed_unless_shadowed() -> None:
    request, seen = recorded()
    with pytest.raises(RuntimeError):
        await PolicyChain([Gate(RuntimeError("boom"))]).decide_tool_call(CALL, request)
    assert seen[-1].action is Action.ERROR_FAIL_CLOSED
    assert seen[-1].message == "the policy failed (RuntimeError)"
    # A failing shadow policy changes nothing: the traffic was never waiting for it.
    await PolicyChain([Gate(RuntimeError("boom"), "shadow")]).watch_tool_call(CALL, request)
    assert seen[-1].action is Action.ERROR_FAIL_OPEN and seen[-1].mode is Mode.SHADOW


class Slow(Gate):
    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolDecision:
        await asyncio.sleep(10)
        return None


async def test_a_slow_shadow_policy_is_cut_off_and_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recording, "SHADOW_TIMEOUT_S", 0.05)
    request, seen = recorded()
    await PolicyChain([Slow(None, "shadow")]).watch_tool_call(CALL, request)
    [made] = seen
    assert made.action is Action.ERROR_FAIL_OPEN and "did not decide within 0.05s" in (
        made.message or ""
    )


async def test_shadow_gates_watch_and_enforcing_gates_decide() -> None:
    request, seen = recorded()
    chain = PolicyChain([Gate(BlockToolCall("a"), "shadow"), Gate(BlockToolCall("b"))])
    assert [p.name for p in chain.gates] == ["gate"] and len(chain.watchers) == 1
    outcome = await chain.decide_tool_call(CALL, request)
    assert isinstance(outcome, BlockToolCall) and outcome.message == "b"
    await chain.watch_tool_call(CALL, request)
    assert [(d.mode, d.action) for d in seen] == [
        (Mode.ENFORCE, Action.BLOCK_TOOL_CALL),
        (Mode.SHADOW, Action.BLOCK_TOOL_CALL),
    ]


@pytest.mark.parametrize("mode", ["enforce", "shadow"])
async def test_a_rejected_request(mode: Modes) -> None:
    request, seen = recorded()
    policy = Refuse(PolicyConfig(type="refuse", mode=mode))
    verdict = await PolicyChain([policy]).on_request(request)
    assert (verdict is None) == (mode == "shadow")
    await shadows_done()
    [made] = seen
    assert made.action is Action.REJECT_REQUEST and made.message == "no"
    assert made.target == {"where": "request", "status": 403}
    failing = Refuse(PolicyConfig(type="refuse", name="failing"))
    await PolicyChain([failing]).on_request(request)
    assert seen[-1].action is Action.ERROR_FAIL_CLOSED


async def test_request_guard_rejection_is_recorded() -> None:
    request, seen = recorded({**anthropic_body(), "max_tokens": 100_000})
    guard = RequestGuardPolicy(RequestGuardConfig(max_tokens=10, max_tokens_mode="reject"))
    assert await PolicyChain([guard]).on_request(request) is not None
    assert [d.action for d in seen] == [Action.REJECT_REQUEST]


def _with_secrets() -> dict[str, object]:
    body = copy.deepcopy(anthropic_body())
    body["messages"] = [{"role": "user", "content": "mail bob@example.com or al@example.org"}]
    return body


@pytest.mark.parametrize("mode", ["enforce", "shadow"])
async def test_request_redaction_counts_matches_and_shadow_leaves_the_body(mode: Modes) -> None:
    original = _with_secrets()
    request, seen = recorded(copy.deepcopy(original))
    policy = PiiRedactionPolicy(PiiRedactionConfig(mode=mode))
    assert await PolicyChain([policy]).on_request(request) is None
    await shadows_done()
    [made] = seen
    assert made.action is Action.REDACT and made.mode is Mode(mode)
    assert made.target == {"kind": "email", "count": 2, "where": "request"}
    if mode == "shadow":
        assert request.body == original and not request.body_changed
    else:
        assert "bob@example.com" not in str(request.body) and request.body_changed


async def test_request_redaction_keeps_originals_only_when_asked() -> None:
    request, seen = recorded(_with_secrets())
    request.decisions.keep_originals = True
    await PolicyChain([PiiRedactionPolicy()]).on_request(request)
    assert seen[0].target["examples"] == [
        {"before": "bob@example.com", "after": "[REDACTED:email]"},
        {"before": "al@example.org", "after": "[REDACTED:email]"},
    ]


@pytest.mark.parametrize("mode", ["enforce", "shadow"])
def test_response_rewrites_are_counted_per_kind_and_logged_at_the_end(mode: Modes) -> None:
    request, seen = recorded()
    chain = PolicyChain([PiiRedactionPolicy(PiiRedactionConfig(mode=mode))])
    text = "write to bob@example.com, call +44 20 7946 0958, or al@example.org"
    out = TextPipeline(chain.text_rewriters(request)).rewrite_all(text)
    # A shadow rewrite sends the text exactly as it came.
    assert (out == text) == (mode == "shadow")
    assert seen == []  # counted, not yet logged
    request.decisions.flush()
    counts = {d.target["kind"]: d.target["count"] for d in seen}
    assert counts == {"email": 2, "phone": 1}
    assert {(d.action, d.mode, d.target["where"]) for d in seen} == {
        (Action.REDACT, Mode(mode), "response")
    }
    assert "examples" not in seen[0].target


def test_without_a_sink_or_shadow_the_rewriters_are_the_policies_own() -> None:
    request = api_request(anthropic_body())
    policy = PiiRedactionPolicy()
    [rewriter] = PolicyChain([policy]).text_rewriters(request)
    assert rewriter is policy.rewriter(request)
