"""What a request's processing knows once its headers were read, and the checks every
kind of request shares: the caller's model allowance, the route by model, and the
headers that send it upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extproc.core.allowance import Allowance
from extproc.core.audit import Action, Decision, DecisionLog, Mode
from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.gateway import Runtime
from extproc.keys import Caller
from extproc.limits import LimitSet
from extproc.observe.hub import RequestObservation
from extproc.pipeline.facts import RequestFacts
from extproc.pipeline.replies import JSON_HEADERS, Continue, Immediate
from extproc.pipeline.upstream import headers_for, upstream_for_model
from extproc.policies.base import PolicyChain
from extproc.routing import Upstream


@dataclass(slots=True)
class RequestContext:
    runtime: Runtime
    dialect: Dialect
    method: str
    path: str  # without the query string
    caller: Caller
    chain: PolicyChain
    # Headers the API requires upstream that the client did not send.
    added_headers: dict[str, str]
    # Envoy streams response bodies through ext_proc (its protocol_config says).
    envoy_sends_body: bool
    # What Envoy's request facts filter read of the body: a request nothing else needs
    # the body of is routed from these alone.
    facts: RequestFacts | None = None
    # The names of the query's parameters (their values may be credentials: not kept).
    query_names: frozenset[str] = frozenset()
    request_id: str = ""  # Envoy's x-request-id
    upstream: Upstream | None = None
    # Where this request's decisions go, and who hears of its progress (None when
    # nothing observes requests).
    decisions: DecisionLog = field(default_factory=DecisionLog)
    observation: RequestObservation | None = None
    # The caller's limits when it has any and this process enforces them.
    limits: LimitSet | None = None
    # What the caller has left after this request was admitted (for response headers).
    allowance: Allowance | None = None
    # The admitted request whose response the caller is charged for; None: not counted.
    metered: ApiRequest | None = None

    @property
    def label(self) -> str:
        """`METHOD path`, for logs."""
        return f"{self.method} {self.path}"

    def api_request(self, model: str, stream: bool, body: dict[str, Any]) -> ApiRequest:
        """The parsed request the policies see, logging into this request's decisions."""
        if self.observation is not None and model:
            self.observation.parsed(model, stream)
        return ApiRequest(
            self.dialect,
            self.path,
            model,
            stream,
            body,
            decisions=self.decisions,
            caller=self.caller.name,
            request_id=self.request_id,
        )

    @property
    def needs_body(self) -> bool:
        """Whether anything reads the request body: a request policy, the caller's
        limits (counted from it), the response's handling (its engine and the stream
        checks read the request), or the gateway itself when Envoy's facts are missing
        or unusable."""
        return (
            self.facts is None
            or self.chain.reads_requests
            or self.chain.reads_responses
            or self.envoy_sends_body
            or self.limits is not None
        )

    def refuse(self, status: int, message: str, param: str | None = None) -> Immediate:
        """An error answer in the request's API format."""
        return Immediate(status, self.dialect.error_body(status, message, param))

    async def admit(self, request: ApiRequest) -> Immediate | None:
        """The caller's limits on this request: None when it may go on (it is then
        counted, and its response metered), else the in-format 429 (or 503 when the
        counters are unreachable and the fail mode says closed)."""
        limiter, limits = self.runtime.limiter, self.limits
        if limiter is None or limits is None:
            return None
        admission = await limiter.admit(self.caller.name, limits, request.model)
        metrics = self.runtime.observer.metrics if self.runtime.observer is not None else None
        if admission.store_failed and metrics is not None:
            metrics.limit_store_failed("open" if admission.allowed else "closed")
        if admission.allowed:
            self.metered, self.allowance = request, admission.allowance
            return None
        exceeded = admission.exceeded or "store_unavailable"
        self.decisions.add(
            Decision(
                policy="limits",
                policy_type="limits",
                action=Action.RATE_LIMITED,
                mode=Mode.ENFORCE,
                target={"status": admission.status, "limit": exceeded},
                message=admission.message,
            )
        )
        if metrics is not None:
            metrics.rate_limited(self.caller.name, exceeded)
        headers = {**JSON_HEADERS, "retry-after": str(admission.retry_after_s)}
        if admission.allowance is not None:
            headers.update(self.dialect.rate_limit_headers(admission.allowance))
        body = self.dialect.error_body(admission.status, admission.message)
        return Immediate(admission.status, body, headers)

    def refuse_model(self, model: str) -> Immediate | None:
        """A 403 when the caller's key may not use `model`."""
        if not self.caller.allows(model):
            return self.refuse(403, f"this key may not use model {model[:200]!r}", "model")
        return None

    def upstream_for(self, model: str) -> Upstream | Immediate:
        """The upstream serving `model`, or a 400 saying why there is none."""
        found = upstream_for_model(self.runtime.gateway.router, model, self.dialect)
        return self.refuse(400, found, "model") if isinstance(found, str) else found

    def ask_for_usage(self, request: ApiRequest, upstream: Upstream) -> None:
        """A metered stream that reports usage only when asked, to a provider that takes
        the question: ask (the client gets the stream as if it had not)."""
        asks = self.metered is request and upstream.stream_usage
        if asks and self.dialect.ask_for_usage(request.body):
            request.usage_added = request.body_changed = True

    def route(self, upstream: Upstream) -> Continue:
        """Send the request to `upstream`: Envoy re-picks the route from our header."""
        chosen = headers_for(upstream, self.caller, self.dialect, self.added_headers)
        self.upstream = chosen.upstream
        if self.observation is not None:
            self.observation.routed(chosen.upstream.name)
        return Continue(chosen.set_headers, chosen.remove_headers, clear_route_cache=True)
