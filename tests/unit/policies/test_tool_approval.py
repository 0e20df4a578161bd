"""tool_approval (extproc/policies/tool_approval.py), the asking it shares with the judge
(extproc/policies/asking.py), and tool_call_judge's `on_uncertain: ask`: which calls are
held, what the person sees (redacted), and how their answer becomes the decision."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import ValidationError

from extproc.approvals.desk import DESK, ApprovalDesk
from extproc.approvals.model import Answer, PendingApproval, Status
from extproc.core import audit
from extproc.core.decisions import Allow, BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.registry import OPENAI_CHAT
from extproc.mock_llm import MockConfig, create_app
from extproc.observe.store.sqlite import SqliteStore
from extproc.policies.asking import (
    MAX_PRECEDING_CHARS,
    UNAVAILABLE_MESSAGE,
    ApprovalConfig,
    TextWitness,
    ask_person,
    witness,
    witnessed,
)
from extproc.policies.base import HOLD_SLACK_S, PolicyChain
from extproc.policies.noop import NoOpPolicy
from extproc.policies.tool_approval import (
    SHADOW_MESSAGE,
    ApprovalRule,
    ToolApprovalConfig,
    ToolApprovalPolicy,
)
from extproc.policies.tool_call_judge import ToolCallJudgeConfig, ToolCallJudgePolicy
from extproc.policies.tool_call_judge.breaker import BreakerRegistry
from extproc.policies.tool_call_judge.client import JudgeConfig
from extproc.policy_config import ConfigError, load_config
from tests.helpers.admin_app import eventually
from tests.helpers.judge import JUDGE_MODEL, bash, judged_request

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "bob.smith@example.com"


def call(name: str, raw: str = "", index: int = 0) -> ToolCall:
    arguments = json.loads(raw) if raw else {}
    return ToolCall(f"call_{index}", name, arguments, raw, index)


def request(caller: str | None = "alice", model: str = "gpt-4o") -> ApiRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "deploy it"}]}
    return ApiRequest(
        OPENAI_CHAT, OPENAI_CHAT.path, model, True, body, caller=caller, request_id="req-7"
    )


def policy(*rules: dict[str, Any], mode: str = "enforce", **approval: Any) -> ToolApprovalPolicy:
    fields: dict[str, Any] = {"type": "tool_approval", "mode": mode, "approval": approval}
    if rules:
        fields["rules"] = list(rules)
    return ToolApprovalPolicy(ToolApprovalConfig.model_validate(fields))


# -- a real desk over a real store, and a person answering ------------------------------


@pytest.fixture
def desk(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> ApprovalDesk:
    """The process's desk (the one policies ask), on this test's store until it ends."""
    for name in ("_store", "admin_url", "holder"):
        monkeypatch.setattr(DESK, name, getattr(DESK, name))
    DESK.attach(store, "http://127.0.0.1:1")
    return DESK


def rows(store: SqliteStore) -> list[dict[str, Any]]:
    """Every approval row, pending or not."""
    with sqlite3.connect(store.path) as raw:
        ids = [i for (i,) in raw.execute("SELECT id FROM approvals ORDER BY created_at")]
    return [r for r in (store.approval(i) for i in ids) if r is not None]


async def person(
    store: SqliteStore,
    desk: ApprovalDesk,
    status: Status,
    by: str = "alice",
    reason: str | None = None,
) -> dict[str, Any]:
    """Answer the one call waiting, as the admin API does; the row as it was asked."""
    await eventually(lambda: bool(store.pending_approvals(time.time())), "a call waiting")
    [row] = store.pending_approvals(time.time())
    answered = store.answer_approval(row["id"], status, by, reason, time.time())
    assert answered is not None and answered["status"] == status
    desk.poke()
    return row


class Answering(ApprovalDesk):
    """A desk that answers every call at once, and keeps what it was asked."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[tuple[PendingApproval, str | None]] = []

    async def ask(self, pending: PendingApproval, webhook_url: str | None = None) -> Answer:
        self.asked.append((pending, webhook_url))
        return self.answer


# -- which calls are held ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "held", "passed"),
    [
        ({"tools": ["deploy_*", "bash"]}, ["deploy_prod", "bash"], ["Bash", "read_file"]),
        ({"tools": ["*"]}, ["anything", "bash"], []),
        ({}, ["anything"], []),
    ],
)
async def test_tool_globs(rule: dict[str, Any], held: list[str], passed: list[str]) -> None:
    shadow = policy(rule, mode="shadow")
    for name in held:
        assert isinstance(await shadow.on_tool_call(call(name), request()), BlockToolCall), name
    for name in passed:
        assert await shadow.on_tool_call(call(name), request()) == Allow(), name


async def test_an_arguments_regex_is_searched_in_the_raw_arguments() -> None:
    shadow = policy(
        {"tools": ["bash"], "arguments": r"\brm\s+-rf\b|\"force\":\s*true"}, mode="shadow"
    )
    for raw in ('{"command": "rm -rf /tmp/x"}', '{"command": "push", "force":  true}'):
        assert isinstance(await shadow.on_tool_call(call("bash", raw), request()), BlockToolCall)
    for raw in ('{"command": "ls -la"}', '{"force": false}', ""):
        assert await shadow.on_tool_call(call("bash", raw), request()) == Allow(), raw
    # The tool must match too.
    assert await shadow.on_tool_call(call("sh", '{"c": "rm -rf /"}'), request()) == Allow()


async def test_callers_and_models_narrow_a_rule() -> None:
    shadow = policy({"callers": ["ci-*"], "models": ["gpt-4*"]}, mode="shadow")

    async def held(caller: str | None, model: str) -> bool:
        verdict = await shadow.on_tool_call(call("bash"), request(caller, model))
        return isinstance(verdict, BlockToolCall)

    assert await held("ci-bot", "gpt-4o")
    assert not await held("alice", "gpt-4o")
    assert not await held(None, "gpt-4o")  # no caller: only a `*` glob matches
    assert not await held("ci-bot", "o3-mini")
    anyone = policy({"callers": ["*"]}, mode="shadow")
    assert isinstance(await anyone.on_tool_call(call("x"), request(None)), BlockToolCall)


async def test_the_first_matching_rule_is_the_why(desk: ApprovalDesk, store: SqliteStore) -> None:
    gate = policy(
        {"tools": ["read_*"], "callers": ["nobody"]},
        {"tools": ["deploy_*"], "arguments": "prod", "models": ["gpt-*"]},
        {"tools": ["*"]},
    )
    first_row, verdict = await asyncio.gather(
        person(store, desk, Status.APPROVED),
        gate.on_tool_call(call("deploy_app", '{"env": "prod"}'), request()),
    )
    assert isinstance(verdict, Allow)
    assert first_row["why"] == "rule: tools deploy_*; arguments match /prod/; models gpt-*"
    other_row, _ = await asyncio.gather(
        person(store, desk, Status.APPROVED),
        gate.on_tool_call(call("read_file"), request()),
    )
    assert other_row["why"] == "rule: tools *"
    assert ApprovalRule(callers=["a"]).describe() == "rule: tools *; callers a"


async def test_a_call_no_rule_matches_is_allowed_without_asking(
    desk: ApprovalDesk, store: SqliteStore
) -> None:
    gate = policy({"tools": ["deploy_*"]})
    assert await gate.on_tool_call(call("read_file", '{"path": "a"}'), request()) == Allow()
    assert rows(store) == [] and desk.waiting == 0


async def test_shadow_mode_asks_nobody(desk: ApprovalDesk, store: SqliteStore) -> None:
    shadow = policy({"tools": ["bash"]}, mode="shadow")
    verdict = await shadow.on_tool_call(call("bash", '{"command": "ls"}'), request())
    assert verdict == BlockToolCall(SHADOW_MESSAGE.format(tool="bash"))
    assert verdict.message == "Tool call 'bash' would have waited for a person's approval."
    assert rows(store) == []
    assert not shadow.config.waits_for_people_s() and policy().config.waits_for_people_s() == 300
    # A shadow gate is no gate: the chain only shows it calls.
    assert PolicyChain([shadow]).gates == ()


# -- what the person sees --------------------------------------------------------------


def test_a_witness_keeps_the_last_characters() -> None:
    seen = TextWitness()
    assert seen.holdback == 0
    text = "".join(f"<{i:04d}>" for i in range(1000))  # 6000 characters
    start = 0
    for end in range(0, len(text) + 1, 37):
        assert list(seen.spans(text[:end], start)) == []  # it never changes the text
        start = end
    seen.spans(text, start)
    kept = seen.text()
    assert text.endswith(kept) and len(kept) >= MAX_PRECEDING_CHARS
    assert len(kept) < MAX_PRECEDING_CHARS + 37
    one = TextWitness()
    one.spans("x" * 5000, 0)
    assert one.text() == "x" * 5000  # a single piece is kept whole, cut when read


def test_witnessed_joins_a_requests_texts_and_keeps_the_end() -> None:
    req = request()
    assert witnessed(req, "k") == ""
    first, empty, second = witness(req, "k"), witness(req, "k"), witness(req, "k")
    first.spans("Let me check.", 0)
    second.spans("Now deploying.", 0)
    assert empty.text() == ""
    assert witnessed(req, "k") == "Let me check.\n\nNow deploying."
    assert witnessed(req, "other") == ""
    long = witness(req, "k")
    long.spans("y" * 3000 + "END", 0)
    got = witnessed(req, "k")
    assert len(got) == MAX_PRECEDING_CHARS and got.endswith("yEND")


async def test_secrets_and_emails_are_redacted_before_anyone_sees_them(
    desk: ApprovalDesk, store: SqliteStore
) -> None:
    gate = policy()
    req = request()
    text = gate.rewriter(req)
    assert isinstance(text, TextWitness)
    text.spans(f"I'll send the report to {EMAIL} now.", 0)
    raw = json.dumps({"to": EMAIL, "aws_access_key_id": AWS_KEY, "body": "hello"})
    asked, verdict = await asyncio.gather(
        person(store, desk, Status.APPROVED), gate.on_tool_call(call("send_mail", raw), req)
    )
    assert isinstance(verdict, Allow)
    stored = store.approval(asked["id"])
    assert stored is not None
    for field in ("arguments", "preceding_text"):
        assert AWS_KEY not in stored[field] and EMAIL not in stored[field], field
    assert json.loads(stored["arguments"]) == {
        "to": "[REDACTED:email]",
        "aws_access_key_id": "[REDACTED:secret]",
        "body": "hello",
    }
    assert stored["preceding_text"] == "I'll send the report to [REDACTED:email] now."
    assert (stored["tool"], stored["caller"], stored["model"]) == ("send_mail", "alice", "gpt-4o")
    assert (stored["api"], stored["request_id"], stored["policy"]) == (
        OPENAI_CHAT.name,
        "req-7",
        "tool_approval",
    )
    assert stored["holder"] == desk.holder


async def test_long_arguments_show_their_beginning_and_their_end() -> None:
    answering = Answering(Answer(Status.APPROVED, "alice"))
    # Padding must not push the part that matters out of the approver's sight.
    raw = json.dumps({"data": "z" * 20_000, "then": "rm -rf / --no-preserve-root"})
    await ask_person(ApprovalConfig(), "p", call("upload", raw), request(), "why", desk=answering)
    [(asked, _)] = answering.asked
    assert len(asked.arguments) < 8_100
    assert asked.arguments.startswith('{"data": "zzz')
    assert "characters not shown]" in asked.arguments
    assert asked.arguments.endswith('"then": "rm -rf / --no-preserve-root"}')


# -- how an answer becomes the decision --------------------------------------------------


async def test_an_approval_allows_the_call(desk: ApprovalDesk, store: SqliteStore) -> None:
    gate = policy(timeout_s=60)
    _, verdict = await asyncio.gather(
        person(store, desk, Status.APPROVED, "alice", "ticket 42"),
        gate.on_tool_call(call("bash", '{"command": "make deploy"}'), request()),
    )
    assert isinstance(verdict, Allow) and verdict.evidence is not None
    approval = verdict.evidence.approval
    assert approval is not None
    assert (approval.status, approval.by, approval.reason) == ("approved", "alice", "ticket 42")
    assert 0 < approval.seconds < 60 and not verdict.evidence.failed


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("not on a Friday", "Tool call 'bash' was denied by bob, not on a Friday."),
        (None, "Tool call 'bash' was denied by bob."),
    ],
)
async def test_a_denial_blocks_with_the_deny_message(
    desk: ApprovalDesk, store: SqliteStore, reason: str | None, message: str
) -> None:
    _, verdict = await asyncio.gather(
        person(store, desk, Status.DENIED, "bob", reason),
        policy().on_tool_call(call("bash", '{"command": "make deploy"}'), request()),
    )
    assert isinstance(verdict, BlockToolCall) and verdict.message == message
    assert verdict.evidence is not None and verdict.evidence.approval is not None
    assert verdict.evidence.approval.status == "denied" and verdict.evidence.approval.by == "bob"


async def test_a_custom_deny_message_has_every_field() -> None:
    config = ApprovalConfig(deny_message="{approver} said no to {tool}({arguments}){reason}")
    answering = Answering(Answer(Status.DENIED, None, "risky"))
    verdict = await ask_person(
        config, "p", call("bash", '{"c": 1}'), request(), "why", desk=answering
    )
    assert verdict == BlockToolCall('a person said no to bash({"c": 1}), risky', verdict.evidence)


@pytest.mark.parametrize("on_timeout", ["deny", "allow"])
async def test_a_timeout_does_what_on_timeout_says(on_timeout: str) -> None:
    config = ApprovalConfig(timeout_s=90, on_timeout=on_timeout)  # type: ignore[arg-type]
    answering = Answering(Answer(Status.TIMED_OUT, seconds=90.0))
    verdict = await ask_person(config, "p", call("bash"), request(), "why", desk=answering)
    assert verdict.evidence is not None and verdict.evidence.approval is not None
    assert verdict.evidence.approval == audit.ApprovalVerdict("timed_out", None, None, 90.0)
    if on_timeout == "allow":
        assert isinstance(verdict, Allow)
    else:
        assert isinstance(verdict, BlockToolCall)
        assert (
            verdict.message == "Tool call 'bash' was blocked: nobody approved it within 90 seconds."
        )


async def test_a_real_timeout(desk: ApprovalDesk, store: SqliteStore) -> None:
    gate = policy(timeout_s=1, timeout_message="{tool} waited {timeout_s}s for {arguments}")
    verdict = await asyncio.wait_for(gate.on_tool_call(call("bash", "{}"), request()), 10)
    assert verdict == BlockToolCall("bash waited 1.0s for {}", verdict.evidence)
    [row] = rows(store)
    assert row["status"] == "timed_out"


async def test_no_desk_blocks_as_unavailable() -> None:
    alone = ApprovalDesk()  # no store attached
    verdict = await ask_person(ApprovalConfig(), "p", call("bash"), request(), "why", desk=alone)
    assert verdict == BlockToolCall(UNAVAILABLE_MESSAGE.format(tool="bash"), verdict.evidence)
    assert verdict.evidence is not None and verdict.evidence.failed
    assert verdict.evidence.approval is None


async def test_the_webhook_url_goes_to_the_desk() -> None:
    answering = Answering(Answer(Status.APPROVED, "alice"))
    config = ApprovalConfig(webhook_url="https://hooks.example.com/T0/B0/secret")
    await ask_person(config, "p", call("bash"), request(), "why", desk=answering)
    assert answering.asked[0][1] == "https://hooks.example.com/T0/B0/secret"


# -- how long a chain may hold a chunk ---------------------------------------------------


async def test_holds_for_and_the_chains_time_limit() -> None:
    gate = policy(timeout_s=120)
    assert gate.holds_for() == 120 + HOLD_SLACK_S
    assert policy().holds_for() == 300 + HOLD_SLACK_S
    judge = {"base_url": "http://127.0.0.1:1/v1", "model": "j", "timeout_s": 5}
    asking = ToolCallJudgePolicy(
        ToolCallJudgeConfig.model_validate(
            {
                "type": "tool_call_judge",
                "judge": judge,
                "threshold": 0.8,
                "on_uncertain": "ask",
                "uncertain_from": 0.4,
                "approval": {"timeout_s": 30},
            }
        ),
        BreakerRegistry(),
    )
    plain = ToolCallJudgePolicy(
        ToolCallJudgeConfig.model_validate({"type": "tool_call_judge", "judge": judge}),
        BreakerRegistry(),
    )
    try:
        assert asking.holds_for() == 5 + 30 + HOLD_SLACK_S
        assert plain.holds_for() == 0.0
        assert asking.config.waits_for_people_s() > 0 and not plain.config.waits_for_people_s()
        shadow = policy(mode="shadow")
        chain = PolicyChain([NoOpPolicy(), gate, shadow, asking, plain])
        # Gates decide one after another: their holds add up; a shadow gate holds nothing.
        assert chain.time_limit(60) == 60 + 130 + 45
        assert PolicyChain([NoOpPolicy(), shadow]).time_limit(60) == 60
    finally:
        await asking.aclose()
        await plain.aclose()


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"rules": [{"arguments": "(unclosed"}]},
        {"rules": [{"tools": []}]},
        {"rules": [{"tool": ["bash"]}]},
        {"approval": {"timeout_s": 0.5}},
        {"approval": {"timeout_s": 541}},
        {"approval": {"on_timeout": "maybe"}},
        {"approval": {"webhook_url": "ftp://hooks.example.com/x"}},
        {"approval": {"webhook_url": "hooks.example.com/x"}},
        {"approval": {"deny_message": "{nope}"}},
        {"approval": {"deny_message": "{timeout_s}"}},
        {"approval": {"timeout_message": "{approver}"}},
        {"approval": {"timeout_message": "{"}},
        {"approval": {"surprise": 1}},
    ],
)
def test_bad_config_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ToolApprovalConfig.model_validate({"type": "tool_approval", **bad})


def test_good_config_and_its_bounds() -> None:
    config = ToolApprovalConfig.model_validate(
        {
            "type": "tool_approval",
            "rules": [{"tools": ["bash"], "arguments": "rm", "callers": ["a"], "models": ["m"]}],
            "approval": {
                "timeout_s": 540,
                "on_timeout": "allow",
                "webhook_url": "http://bot.internal/hook",
                "deny_message": "{tool} {approver}{reason} {arguments}",
                "timeout_message": "{tool} {timeout_s} {arguments}",
            },
        }
    )
    assert config.approval.timeout_s == 540 and config.approval.on_timeout == "allow"
    assert ApprovalConfig(timeout_s=1).timeout_s == 1
    default = ToolApprovalConfig()
    assert default.rules == [ApprovalRule()] and default.rules[0].tools == ["*"]
    assert default.approval.timeout_s == 300 and default.approval.on_timeout == "deny"


def test_a_bad_webhook_url_is_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n"
        "  - type: tool_approval\n"
        "    approval:\n"
        "      webhook_url: hooks.example.com/services/T0/B0/tok-SECRET-123\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "webhook_url" in str(caught.value) and "http(s) URL" in str(caught.value)
    assert "tok-SECRET-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"on_uncertain": "ask", "uncertain_from": 0.3}, True),
        ({"on_uncertain": "ask", "uncertain_from": 0.6}, False),  # not below the threshold
        ({"on_uncertain": "ask", "uncertain_from": 0.9}, False),
        ({"on_uncertain": "ask"}, False),
        ({"on_uncertain": "allow", "uncertain_from": 0.9}, True),
        ({"on_uncertain": "maybe", "uncertain_from": 0.3}, False),
        ({"on_uncertain": "ask", "uncertain_from": 0.3, "approval": {"timeout_s": 0}}, False),
    ],
)
def test_judge_on_uncertain_config(fields: dict[str, Any], ok: bool) -> None:
    entry = {
        "type": "tool_call_judge",
        "judge": {"base_url": "http://127.0.0.1:1/v1", "model": "j"},
        "threshold": 0.6,
        **fields,
    }
    if ok:
        ToolCallJudgeConfig.model_validate(entry)
    else:
        with pytest.raises(ValidationError):
            ToolCallJudgeConfig.model_validate(entry)


# -- the judge asks a person when it is unsure ---------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def judge_url() -> AsyncIterator[str]:
    """The mock judge (as in tests/unit/policies/tool_call_judge/conftest.py): rm -rf
    0.97, dd 0.95, chmod 777 / 0.9, anything benign at most 0.10."""
    app = create_app(MockConfig(max_recorded=100))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def unsure_judge(judge_url: str) -> AsyncIterator[ToolCallJudgePolicy]:
    """Blocks from 0.96, asks a person from 0.5."""
    config = ToolCallJudgeConfig(
        type="tool_call_judge",
        judge=JudgeConfig(base_url=judge_url, model=JUDGE_MODEL, timeout_s=5),
        threshold=0.96,
        on_uncertain="ask",
        uncertain_from=0.5,
        approval=ApprovalConfig(timeout_s=30),
    )
    judge = ToolCallJudgePolicy(config, BreakerRegistry())
    yield judge
    await judge.aclose()


@pytest.mark.parametrize(("status", "allowed"), [(Status.APPROVED, True), (Status.DENIED, False)])
async def test_the_judge_asks_a_person_in_the_band(
    unsure_judge: ToolCallJudgePolicy,
    desk: ApprovalDesk,
    store: SqliteStore,
    status: Status,
    allowed: bool,
) -> None:
    asked, verdict = await asyncio.gather(
        person(store, desk, status, "carol", "checked"),
        unsure_judge.on_tool_call(
            bash("dd if=/dev/zero of=/tmp/img bs=1M count=1"), judged_request()
        ),
    )
    assert asked["policy"] == "tool_call_judge" and asked["tool"] == "bash"
    assert asked["why"].startswith("the judge was unsure (risk 0.95): Matches rule 'dd if='")
    assert isinstance(verdict, Allow if allowed else BlockToolCall)
    evidence = verdict.evidence
    assert evidence is not None and evidence.judge is not None and evidence.approval is not None
    assert evidence.judge.probability == 0.95
    assert evidence.approval.status == status.value and evidence.approval.by == "carol"
    if not allowed:
        assert isinstance(verdict, BlockToolCall)
        assert verdict.message == "Tool call 'bash' was denied by carol, checked."


async def test_the_judge_asks_nobody_outside_the_band(
    unsure_judge: ToolCallJudgePolicy, desk: ApprovalDesk, store: SqliteStore
) -> None:
    benign = await unsure_judge.on_tool_call(bash("ls -la"), judged_request())
    assert isinstance(benign, Allow) and benign.evidence is not None
    assert benign.evidence.approval is None
    blocked = await unsure_judge.on_tool_call(bash("rm -rf /"), judged_request())
    assert isinstance(blocked, BlockToolCall) and "0.97" in blocked.message
    assert blocked.evidence is not None and blocked.evidence.approval is None
    assert rows(store) == [] and desk.waiting == 0


async def test_a_judge_that_allows_the_unsure_asks_nobody(
    judge_url: str, desk: ApprovalDesk, store: SqliteStore
) -> None:
    config = ToolCallJudgeConfig(
        type="tool_call_judge",
        judge=JudgeConfig(base_url=judge_url, model=JUDGE_MODEL, timeout_s=5),
        threshold=0.96,
        uncertain_from=0.5,
    )
    judge = ToolCallJudgePolicy(config, BreakerRegistry())
    try:
        verdict = await judge.on_tool_call(bash("dd if=/dev/zero of=/tmp/x"), judged_request())
        assert isinstance(verdict, Allow) and rows(store) == []
    finally:
        await judge.aclose()


async def test_a_shadow_judge_asks_nobody_and_records_that_it_would_have(
    judge_url: str, desk: ApprovalDesk, store: SqliteStore
) -> None:
    config = ToolCallJudgeConfig(
        type="tool_call_judge",
        mode="shadow",
        judge=JudgeConfig(base_url=judge_url, model=JUDGE_MODEL, timeout_s=5),
        threshold=0.96,
        on_uncertain="ask",
        uncertain_from=0.5,
    )
    judge = ToolCallJudgePolicy(config, BreakerRegistry())
    try:
        verdict = await judge.on_tool_call(bash("dd if=/dev/zero of=/tmp/x"), judged_request())
        assert isinstance(verdict, BlockToolCall)
        assert verdict.message == "Tool call 'bash' would have waited for a person's approval."
        assert verdict.evidence is not None and verdict.evidence.judge is not None
        assert rows(store) == [] and desk.waiting == 0
        assert not config.waits_for_people_s()
    finally:
        await judge.aclose()
