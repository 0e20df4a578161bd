"""The seam every policy plugs into.

A policy never sees SSE frames, JSON events or gRPC messages. It sees a normalized view:
the parsed request (`ApiRequest`), response text as it streams (through a
`TextRewriter`), each tool call once complete with parsed arguments, and may return
decisions (`extproc/core/`). The engine turns those decisions into a valid stream or
body for the API at hand, so no policy can break a stream's invariants.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from extproc.core.audit import Action, Mode
from extproc.core.decisions import Deny, RequestDecision, ToolCall, ToolDecision, ToolOutcome
from extproc.core.request import ApiRequest
from extproc.core.rewriting import RewriteStep, TextRewriter
from extproc.policies.recording import (
    request_outcome,
    rewrite_step,
    shadow_request,
    tool_call_outcome,
)

log = logging.getLogger("extproc.policies")

# Beyond a wait for a person: writing and ending its approval, the webhook.
HOLD_SLACK_S = 10.0
# The chain a policy file's top-level `policies:` defines, and callers get by default.
DEFAULT_CHAIN = "default"


class PolicyConfig(BaseModel):
    """A policy's settings from the YAML file. Unknown fields are errors, so a typo in a
    config stops the start instead of silently doing nothing. Subclasses narrow `type`
    to a Literal of the policy's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    # Shown in logs, records and block messages; defaults to the type.
    name: str | None = None
    # shadow: decisions are computed and recorded, traffic passes exactly as it came.
    mode: Literal["enforce", "shadow"] = "enforce"

    def waits_for_people_s(self) -> float:
        """How long the policy may hold a tool call for a person's answer (0: it never
        asks one): asking needs the store pending approvals live in, and the wait must
        fit under the routes' idle timeouts."""
        return 0.0


C = TypeVar("C", bound=PolicyConfig)


class Policy(Generic[C]):
    """Base class: every hook does nothing. Override only what the policy needs.

    A policy names its config model as its type argument, `class P(Policy[PConfig])`,
    which makes `self.config` a `PConfig` and `P.Config` that model; it is built as
    `P(config)` (or `P()` with the config's defaults).

    Class attributes tell the engine which streaming behaviour to use, so work is only
    done for what some policy asked for:
    - `rewrites_text`: `rewriter()` returns a TextRewriter (hold-back window).
    - `gates_tool_calls`: tool calls are held until complete and `on_tool_call` decides.
    - `observes_events`: `observe()` sees every upstream event (debug logging).
    - `reads_requests`: `on_request()` reads the request body; a policy that overrides
      it must say so, since only then does the body reach ext_proc at all.
    """

    type: ClassVar[str] = "policy"
    Config: ClassVar[builtins.type[PolicyConfig]] = PolicyConfig
    # An instance may turn it on from its config (a gate that wants the text for a
    # person's review): `reads_responses()` already holds for a gate.
    rewrites_text: bool = False
    # An instance may turn it off from its config (a rewriter of responses only).
    reads_requests: bool = False
    gates_tool_calls: ClassVar[bool] = False
    observes_events: ClassVar[bool] = False
    # What the record calls this policy's text rewrites.
    rewrite_action: ClassVar[Action] = Action.REPLACE

    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # `Policy[PConfig]` (or a generic subclass of Policy, `Base[PConfig]`) as a
        # base: PConfig is the model the file's entries validate to.
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin, args = get_origin(base), get_args(base)
            if (
                isinstance(origin, type)
                and issubclass(origin, Policy)
                and args
                and isinstance(args[0], type)
                and issubclass(args[0], PolicyConfig)
            ):
                cls.Config = args[0]
        if cls.on_request is not Policy.on_request and not cls.reads_requests:
            # Without the flag the body would never come: on_request would silently
            # never run on the fast path.
            raise TypeError(f"{cls.__name__} overrides on_request: set reads_requests = True")
        mode = cls.Config.model_fields.get("mode")
        if mode is None or mode.annotation != PolicyConfig.model_fields["mode"].annotation:
            # Every policy's `mode` is enforce | shadow: a field of its own by that name
            # would make the chain misread it.
            raise TypeError(f"{cls.__name__}.Config must not redefine `mode` (enforce | shadow)")

    def __init__(self, config: C | None = None) -> None:
        # The default config is the policy's own model: `C` and `Config` are one class.
        self.config = config if config is not None else self.Config(type=self.type)  # type: ignore[assignment]
        self._mode = Mode(self.config.mode)

    @classmethod
    def reads_responses(cls) -> bool:
        """The one definition: a policy reads responses when it rewrites their text,
        gates their tool calls or observes their events."""
        return cls.rewrites_text or cls.gates_tool_calls or cls.observes_events

    @property
    def name(self) -> str:
        return self.config.name or self.type

    @property
    def mode(self) -> Mode:
        return self._mode

    async def on_request(self, request: ApiRequest) -> RequestDecision:
        """Inspect the request; change it with `request.replace_body`, or deny it."""
        return None

    def rewriter(self, request: ApiRequest) -> TextRewriter | None:
        """A rewriter for one text block of this request's response (fresh per block)."""
        return None

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolDecision:
        """Decide one complete tool call. None lets it through."""
        return None

    def holds_for(self) -> float:
        """How long `on_tool_call` may wait beyond the policies' usual bound
        (POLICY_TIMEOUT_S): a person's answer may take minutes."""
        wait = self.config.waits_for_people_s()
        return wait + HOLD_SLACK_S if wait else 0.0

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        """See an upstream event (type and parsed payload); must not block."""

    async def aclose(self) -> None:
        """Release what the policy holds (HTTP clients...) when the gateway stops."""


class PolicyChain:
    """An ordered list of policies; each one sees what the previous one let through.
    It is what the engines ask about a response (`core.chain.ResponsePolicies`), and
    where every policy's outcome becomes a decision in the request's log
    (`extproc/policies/recording.py`). A policy in shadow mode has its decisions
    recorded and none applied."""

    def __init__(self, policies: Iterable[Policy[Any]]) -> None:
        self.policies = tuple(policies)
        self.rewriters = tuple(p for p in self.policies if p.rewrites_text)
        # Shadow policies never hold traffic: tool calls are shown to them in the
        # background, and their request checks run beside the request.
        gating = [p for p in self.policies if p.gates_tool_calls]
        self.gates = tuple(p for p in gating if p.mode is Mode.ENFORCE)
        self.watchers = tuple(p for p in gating if p.mode is Mode.SHADOW)
        self.observers = tuple(p for p in self.policies if p.observes_events)
        self.rewrites_text = bool(self.rewriters)
        self.gates_tool_calls = bool(self.gates)
        self.watches_tool_calls = bool(self.watchers)
        self.observes_events = bool(self.observers)
        # Whether a policy checks the request body (else the gateway may route without it).
        self.reads_requests = any(p.reads_requests for p in self.policies)
        # Whether anything in the chain looks at the response; if not, the engine is
        # skipped entirely and bytes flow through untouched.
        self.reads_responses = any(p.reads_responses() for p in self.policies)
        # A gate may hold a call for minutes (a person decides): the stream is then kept
        # alive while it waits. Only then: that costs every chunk a little.
        self.holds_long = any(p.holds_for() > 0 for p in self.gates)
        self._shadows = any(p.mode is Mode.SHADOW for p in self.rewriters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.policies]

    def time_limit(self, policy_timeout_s: float) -> float:
        """The bound on the chain's work on one chunk of a response: the usual one, plus
        the longest each gate may hold a call for a person (gates decide one after
        another)."""
        return policy_timeout_s + sum(p.holds_for() for p in self.gates)

    def text_rewriters(self, request: ApiRequest) -> list[TextRewriter | RewriteStep]:
        """Fresh rewriters, in chain order, for one text of this request's response."""
        log = request.decisions
        if not log.recording and not self._shadows:
            found = (p.rewriter(request) for p in self.rewriters)
            return [r for r in found if r is not None]
        steps: list[TextRewriter | RewriteStep] = []
        for policy in self.rewriters:
            rewriter = policy.rewriter(request)
            if rewriter is not None:
                steps.append(rewrite_step(policy, rewriter, log))
        return steps

    async def on_request(self, request: ApiRequest) -> Deny | None:
        for policy in self.policies:
            if policy.mode is Mode.SHADOW:
                shadow_request(policy, request)
                continue
            verdict = await request_outcome(policy, request)
            if verdict is not None:
                return verdict
        return None

    async def decide_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolOutcome:
        """The first policy that blocks decides; later ones never see a blocked call."""
        for policy in self.gates:
            verdict = await tool_call_outcome(policy, call, request)
            if verdict is not None:
                return verdict
        return None

    async def watch_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        for policy in self.watchers:
            await tool_call_outcome(policy, call, request)

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        for policy in self.observers:
            policy.observe(event_type, payload, request)


class Chains(Mapping[str, PolicyChain]):
    """The named policy chains of a configuration; `default` always exists."""

    def __init__(self, default: PolicyChain, named: Mapping[str, PolicyChain] | None = None):
        self._chains = {DEFAULT_CHAIN: default, **(named or {})}

    @classmethod
    def of(cls, *policies: Policy[Any]) -> Chains:
        """Only a default chain of these policies."""
        return cls(PolicyChain(policies))

    @property
    def default(self) -> PolicyChain:
        return self._chains[DEFAULT_CHAIN]

    def policies(self) -> list[Policy[Any]]:
        """Every policy of every chain, once each."""
        return list({id(p): p for c in self._chains.values() for p in c.policies}.values())

    async def aclose(self) -> None:
        """Release every policy's resources; one that fails to close does not keep the
        others open."""
        for policy in self.policies():
            try:
                await policy.aclose()
            except Exception:
                log.exception("policy %s failed to close", policy.name)

    def __getitem__(self, name: str) -> PolicyChain:
        return self._chains[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._chains)

    def __len__(self) -> int:
        return len(self._chains)
