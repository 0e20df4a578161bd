"""The seam every policy plugs into (extproc/policies/base.py): Policy, PolicyChain,
Chains."""

from __future__ import annotations

import logging
from typing import Any, Literal

import pytest

from extproc.core.decisions import BlockResponse, BlockToolCall, Deny, ToolCall, ToolDecision
from extproc.core.request import ApiRequest
from extproc.core.rewriting import RewriteStep, Span, TextRewriter
from extproc.policies.base import DEFAULT_CHAIN, Chains, Policy, PolicyChain, PolicyConfig
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.engine import BlockBash, Redact

REQUEST = api_request(anthropic_body())


class GreetConfig(PolicyConfig):
    type: Literal["greet"] = "greet"
    greeting: str = "hello"


class Greet(Policy[GreetConfig]):
    type = "greet"


class LoudGreet(Greet):
    """A subclass of a typed policy keeps its config model."""

    def greeting(self) -> str:
        return self.config.greeting.upper()


class Recorder(Policy[PolicyConfig]):
    """Records every hook it sees; denies or blocks when told to."""

    rewrites_text = True
    reads_requests = True
    gates_tool_calls = True
    observes_events = True

    def __init__(
        self, log: list[str], label: str, deny: bool = False, block: ToolDecision = None
    ) -> None:
        super().__init__(PolicyConfig(type="recorder", name=label))
        self.log, self.deny, self.block = log, deny, block

    async def on_request(self, request: ApiRequest) -> Deny | None:
        self.log.append(f"{self.name}.on_request")
        return Deny(403, self.name) if self.deny else None

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        return Redact() if self.name == "with_rewriter" else None

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolDecision:
        self.log.append(f"{self.name}.on_tool_call")
        return self.block

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        self.log.append(f"{self.name}.observe:{event_type}")


# -- Policy ------------------------------------------------------------------------------


def test_the_type_argument_is_the_config_model() -> None:
    assert Greet.Config is GreetConfig and LoudGreet.Config is GreetConfig
    default = Greet()
    assert isinstance(default.config, GreetConfig) and default.config.greeting == "hello"
    assert default.name == "greet"
    named = Greet(GreetConfig(name="hi-there", greeting="hey"))
    assert named.config.greeting == "hey" and named.name == "hi-there"
    assert LoudGreet().config == GreetConfig() and LoudGreet().greeting() == "HELLO"
    assert Policy.Config is PolicyConfig and Policy().name == "policy"


def test_a_policy_cannot_redefine_mode() -> None:
    class ModeConfig(PolicyConfig):
        type: Literal["moded"] = "moded"
        mode: Literal["clamp", "reject"] = "clamp"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="must not redefine `mode`"):

        class Moded(Policy[ModeConfig]):
            type = "moded"

    shadowed = Greet(GreetConfig(mode="shadow"))
    assert shadowed.mode.value == "shadow" and Greet().mode.value == "enforce"


def test_configs_refuse_unknown_fields_and_are_frozen() -> None:
    with pytest.raises(ValueError, match="greting"):
        GreetConfig.model_validate({"type": "greet", "greting": "typo"})
    config = GreetConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.greeting = "changed"  # type: ignore[misc]


async def test_the_base_hooks_do_nothing() -> None:
    policy = Greet()
    call = ToolCall("c", "bash", {}, "", 0)
    assert await policy.on_request(REQUEST) is None and not REQUEST.body_changed
    assert policy.rewriter(REQUEST) is None
    assert await policy.on_tool_call(call, REQUEST) is None
    policy.observe("ping", {}, REQUEST)
    await policy.aclose()
    assert not Greet.reads_responses()


def test_reads_responses_is_any_response_hook() -> None:
    assert Redact.reads_responses() and BlockBash.reads_responses()

    class Watcher(Policy[PolicyConfig]):
        observes_events = True

    assert Watcher.reads_responses()


# -- PolicyChain -------------------------------------------------------------------------


def test_chain_knows_which_work_its_policies_asked_for() -> None:
    empty = PolicyChain([])
    assert not (empty.rewrites_text or empty.gates_tool_calls or empty.observes_events)
    assert not empty.reads_responses and empty.names == []
    chain = PolicyChain([Greet(), Redact(), BlockBash()])
    assert (chain.rewrites_text, chain.gates_tool_calls, chain.observes_events) == (
        True,
        True,
        False,
    )
    assert chain.reads_responses and chain.names == ["greet", "policy", "policy"]
    assert len(chain.rewriters) == 1 and len(chain.gates) == 1 and chain.observers == ()
    assert not PolicyChain([Greet()]).reads_responses


def test_text_rewriters_in_chain_order_without_none() -> None:
    log: list[str] = []
    first = Redact()
    chain = PolicyChain([first, Recorder(log, "no_rewriter"), Recorder(log, "with_rewriter")])
    rewriters = chain.text_rewriters(REQUEST)
    assert len(rewriters) == 2 and rewriters[0] is first
    second = rewriters[1]
    assert not isinstance(second, RewriteStep)  # nothing records or shadows here
    assert list(second.spans("AKIAABCDEFGHIJKLMNOP", 0)) == [Span(0, 20, "[REDACTED]")]


async def test_on_request_stops_at_the_first_deny() -> None:
    log: list[str] = []
    chain = PolicyChain([Recorder(log, "a"), Recorder(log, "b", deny=True), Recorder(log, "c")])
    assert await chain.on_request(REQUEST) == Deny(403, "b")
    assert log == ["a.on_request", "b.on_request"]
    assert await PolicyChain([Greet()]).on_request(REQUEST) is None


async def test_decide_tool_call_first_blocker_decides() -> None:
    log: list[str] = []
    call = ToolCall("c", "bash", {}, "", 0)
    chain = PolicyChain(
        [
            Greet(),  # gates nothing: never asked
            Recorder(log, "a"),
            Recorder(log, "b", block=BlockResponse("stop")),
            Recorder(log, "c", block=BlockToolCall("never")),
        ]
    )
    assert await chain.decide_tool_call(call, REQUEST) == BlockResponse("stop")
    assert log == ["a.on_tool_call", "b.on_tool_call"]
    assert await PolicyChain([Recorder([], "x")]).decide_tool_call(call, REQUEST) is None


def test_observe_reaches_only_observers() -> None:
    log: list[str] = []
    chain = PolicyChain([Redact(), Recorder(log, "a"), Recorder(log, "b")])
    chain.observe("message_stop", {}, REQUEST)
    assert log == ["a.observe:message_stop", "b.observe:message_stop"]


# -- Chains ------------------------------------------------------------------------------


def test_chains_are_a_mapping_with_a_default() -> None:
    default, strict = PolicyChain([Greet()]), PolicyChain([BlockBash()])
    chains = Chains(default, {"strict": strict})
    assert DEFAULT_CHAIN == "default"
    assert chains.default is default and chains["default"] is default
    assert chains["strict"] is strict and chains.get("nope") is None
    assert list(chains) == ["default", "strict"] and len(chains) == 2
    only = Chains.of(Redact(), BlockBash())
    assert list(only) == ["default"] and len(only.default.policies) == 2
    with pytest.raises(KeyError):
        chains["nope"]


def test_policies_lists_each_policy_once() -> None:
    shared, own = Redact(), BlockBash()
    chains = Chains(PolicyChain([shared]), {"a": PolicyChain([shared, own]), "b": PolicyChain([])})
    assert chains.policies() == [shared, own]


async def test_aclose_goes_on_past_a_policy_that_fails(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []

    class Closes(Policy[PolicyConfig]):
        async def aclose(self) -> None:
            closed.append(self.name)

    class FailsToClose(Policy[PolicyConfig]):
        async def aclose(self) -> None:
            raise RuntimeError("cannot close")

    first = Closes(PolicyConfig(type="x", name="first"))
    broken = FailsToClose(PolicyConfig(type="x", name="broken"))
    last = Closes(PolicyConfig(type="x", name="last"))
    chains = Chains(PolicyChain([first, broken]), {"other": PolicyChain([last, first])})
    with caplog.at_level(logging.ERROR, "extproc.policies"):
        await chains.aclose()
    assert closed == ["first", "last"]
    assert "policy broken failed to close" in caplog.text
