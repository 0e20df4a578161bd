"""One HTTP request's journey through the gateway, free of gRPC and Envoy types.

The server feeds the messages in the order Envoy delivers them (request headers, request
body, response headers, response body chunks, trailers) and turns each answer into an
ext_proc reply. The request's progress is one `Phase` (`lifecycle.py`); its request side
is a processor picked by the path (`processors.py`), its response body a handler picked
at the response headers (`bodies.py`, `sse_body.py`). Everything a request holds lives
on its `RequestPipeline`, so dropping the object releases it all.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from extproc.contract import ENVOY_HEADER_PREFIX, RETRY_SOON_S
from extproc.core.audit import DecisionLog
from extproc.core.usage import Usage
from extproc.dialects.registry import DEFAULT_DIALECT, dialect_for
from extproc.gateway import Runtime
from extproc.keys import Caller
from extproc.observe.hub import RequestObservation
from extproc.pipeline.bodies import (
    BodyHandler,
    ErrorRewriteBody,
    ForwardBody,
    JsonBody,
    MeteredBody,
    ResponseMode,
    error_text,
    response_mode,
)
from extproc.pipeline.context import RequestContext
from extproc.pipeline.facts import RequestFacts
from extproc.pipeline.lifecycle import Lifecycle, Phase
from extproc.pipeline.metering import BYTES_PER_TOKEN, charge_later
from extproc.pipeline.processors import ForwardedRequest, PolicyRequest, RequestProcessor
from extproc.pipeline.replies import JSON_HEADERS, BodyOut, Continue, Immediate
from extproc.pipeline.sse_body import SseBody

log = logging.getLogger("extproc.pipeline")

_FORWARD = ForwardBody()  # stateless: one serves every request


class RequestPipeline:
    def __init__(self, runtime: Runtime, envoy_sends_body: bool = True) -> None:
        self.runtime = runtime
        self.lifecycle = Lifecycle()
        self.started = time.monotonic()
        self.method = ""
        self.path = ""
        self.request_id = ""
        # Envoy says so in the stream's first message (protocol_config).
        self.envoy_sends_body = envoy_sends_body
        # Set once the request's headers were accepted.
        self.ctx: RequestContext | None = None
        self.processor: RequestProcessor | None = None
        self.caller: Caller | None = None
        self.status = 0
        self.body_handler: BodyHandler = _FORWARD
        self.bytes_out = 0
        self.request_bytes = 0
        # Told of the request's progress when the process observes requests.
        self.observation: RequestObservation | None = None
        self.decisions = DecisionLog()

    @property
    def phase(self) -> Phase:
        return self.lifecycle.phase

    @property
    def complete(self) -> bool:
        """Whether the client has had everything the gateway had to say: the last reply
        ended the response, or nothing more of it passes through ext_proc."""
        phase = self.lifecycle.phase
        return phase is Phase.DONE or (
            phase is Phase.RESPONSE_HEADERS and not self.envoy_sends_body
        )

    def _answer(self, out: Immediate) -> Immediate:
        self.status = out.status
        self.lifecycle.end()
        if self.observation is not None:
            self.observation.saw_first_byte()
        return out

    # -- request side -------------------------------------------------------------

    def refuse_overloaded(self, headers: dict[str, str], active: int) -> Immediate:
        """The process already serves its most requests: a fast "overloaded, retry" in
        the request's API format (529 for Anthropic, 503 elsewhere: the SDKs retry
        both), before any of the request's work is done."""
        self.method = headers.get(":method", "")
        self.path = headers.get(":path", "").partition("?")[0]
        self.request_id = headers.get("x-request-id", "")[:128]
        dialect = dialect_for(self.path, headers)
        status = dialect.overloaded_status
        log.warning("overloaded: %d requests in this process; refusing %s", active, self.path)
        observer = self.runtime.observer
        if observer is not None and observer.metrics is not None:
            observer.metrics.overloaded()
        message = "the gateway is overloaded; retry shortly"
        body = dialect.error_body(status, message)
        headers_out = {**JSON_HEADERS, "retry-after": str(RETRY_SOON_S)}
        return self._answer(Immediate(status, body, headers_out))

    def on_request_headers(
        self, headers: dict[str, str], end_of_stream: bool, facts: RequestFacts | None = None
    ) -> Continue | Immediate:
        """`facts`: what Envoy read of the body ahead of ext_proc, if it did."""
        self.method = headers.get(":method", "")
        # The query string is dropped here: it can carry credentials (?key=...), and
        # nothing in the gateway needs it (Envoy forwards the original path upstream).
        self.path, _, query = headers.get(":path", "").partition("?")
        self.request_id = headers.get("x-request-id", "")[:128]
        dialect = dialect_for(self.path, headers)
        observer = self.runtime.observer
        observation = None
        if observer is not None:
            observation = self.observation = observer.start(headers, self.method, self.path)
            observation.api, observation.operation = dialect.name, dialect.operation
            self.decisions = DecisionLog(observation.on_decision, observation.keep_originals)
        found = self.runtime.gateway.keys.authenticate(headers)
        if isinstance(found, str):
            return self._answer(Immediate(401, dialect.error_body(401, found)))
        self.caller = found
        if observation is not None:
            observation.caller = found.name
        chain = self.runtime.chains.get(found.chain)
        if chain is None:
            log.error("caller %s: no policy chain named %r", found.name, found.chain)
            message = "gateway misconfigured: the caller's policy chain is missing"
            return self._answer(Immediate(500, dialect.error_body(500, message)))
        limits = None
        if self.runtime.limiter is not None:
            limits = self.runtime.gateway.limits_for(found)
            limits = limits if limits.active else None
        ctx = self.ctx = RequestContext(
            runtime=self.runtime,
            dialect=dialect,
            method=self.method,
            path=self.path,
            caller=found,
            chain=chain,
            added_headers=dialect.added_headers(headers),
            envoy_sends_body=self.envoy_sends_body,
            query_names=frozenset(name for name, _ in parse_qsl(query, keep_blank_values=True)),
            decisions=self.decisions,
            observation=observation,
            limits=limits,
            request_id=self.request_id,
            facts=facts,
        )
        bare = self.path.rstrip("/")
        forwarded = dialect.forwarded_path(bare)
        if forwarded is not None:
            self.processor = ForwardedRequest(ctx, forwarded)
        elif bare == dialect.path:
            self.processor = PolicyRequest(ctx)
        else:
            return self._answer(ctx.refuse(404, f"no such endpoint: {self.method} {self.path}"))
        out = self.processor.on_headers(headers, end_of_stream)
        if isinstance(out, Immediate):
            return self._answer(out)
        # Envoy's own control headers (x-envoy-retry-on, -max-retries, timeouts,
        # x-envoy-original-path...) are not the client's to send: Envoy heeds some of
        # them for requests it deems internal, and they would reach the provider.
        out.remove_headers += [h for h in headers if h.startswith(ENVOY_HEADER_PREFIX)]
        body_comes = not end_of_stream and not out.skip_body
        self.lifecycle.move(Phase.REQUEST_BODY if body_comes else Phase.RESPONSE_HEADERS)
        return out

    async def on_request_body(self, body: bytes) -> Continue | Immediate:
        if self.processor is None or self.lifecycle.phase is not Phase.REQUEST_BODY:
            # A body the request was routed without (Envoy did not take the skip: a
            # config without allow_mode_override, or responses streaming to ext_proc)
            # goes on as it is; so does one a misbehaving Envoy sends after an answer.
            return Continue()
        self.request_bytes = len(body)
        out = await self.processor.on_body(body)
        if isinstance(out, Immediate):
            return self._answer(out)
        self.lifecycle.move(Phase.RESPONSE_HEADERS)
        return out

    # -- response side ------------------------------------------------------------

    def on_response_headers(
        self, headers: dict[str, str], end_of_stream: bool
    ) -> Continue | Immediate:
        # Envoy may answer a request itself before its body was read (a body over its
        # buffer limit, an idle upload): its reply comes here like a provider's.
        self.lifecycle.move(Phase.RESPONSE_HEADERS)
        status = headers.get(":status", "0")
        self.status = int(status) if status.isdigit() else 0
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        ctx = self.ctx
        request = self.processor.request if self.processor is not None else None
        chain_reads = ctx is not None and ctx.chain.reads_responses
        mode = response_mode(self.status, ctype, request is not None, chain_reads)
        if (
            mode is ResponseMode.FORWARD
            and ctx is not None
            and ctx.metered
            and 200 <= self.status < 300
            and ctype == "application/json"
        ):
            # No policy reads it, but the caller is charged from its usage report.
            mode = ResponseMode.METERED
        out = self._response_headers(mode, end_of_stream)
        if ctx is not None and ctx.allowance is not None and isinstance(out, Continue):
            out.set_headers.update(ctx.dialect.rate_limit_headers(ctx.allowance))
        return out

    def _response_headers(self, mode: ResponseMode, end_of_stream: bool) -> Continue | Immediate:
        ctx = self.ctx
        request = self.processor.request if self.processor is not None else None
        dialect = ctx.dialect if ctx is not None else DEFAULT_DIALECT
        settings = self.runtime.settings
        if mode is ResponseMode.ERROR_REWRITE and not end_of_stream:
            if not self.envoy_sends_body:
                # No body will come to rewrite: answer in format now.
                message = error_text(self.status, "", settings.max_request_bytes)
                return self._answer(
                    Immediate(self.status, dialect.error_body(self.status, message))
                )
            self.body_handler = ErrorRewriteBody(dialect, self.status, settings.max_request_bytes)
            self.lifecycle.move(Phase.RESPONSE_BODY)
            return Continue(set_headers=dict(JSON_HEADERS))
        if end_of_stream or not self.envoy_sends_body:
            self.lifecycle.end()  # no body will follow through ext_proc
            if self.observation is not None:
                self.observation.saw_first_byte()
            return Continue()
        assert ctx is not None
        label = ctx.label
        if mode is ResponseMode.SSE and request is not None:
            self.body_handler = SseBody(
                dialect,
                request,
                ctx.chain,
                settings.max_sse_frame_bytes,
                ctx.chain.time_limit(settings.policy_timeout_s),
                label,
                validate=self.runtime.gateway.validate_streams,
            )
            if self.observation is not None:
                self.observation.stream_opened()
        elif mode is ResponseMode.METERED:
            self.body_handler = MeteredBody(dialect, settings.max_response_bytes)
        elif mode is ResponseMode.JSON and request is not None:
            self.body_handler = JsonBody(
                dialect,
                request,
                ctx.chain,
                settings.max_response_bytes,
                ctx.chain.time_limit(settings.policy_timeout_s),
                label,
            )
        self.lifecycle.move(Phase.RESPONSE_BODY)
        return Continue()

    async def on_response_body(self, chunk: bytes, end_of_stream: bool) -> BodyOut:
        if self.lifecycle.phase is Phase.DONE:
            # We already ended the client's stream (after a failure); drop the rest.
            return BodyOut(b"", False)
        out = await self.body_handler.feed(chunk, end_of_stream)
        self.bytes_out += len(out.data)
        if out.data and self.observation is not None:
            self.observation.saw_first_byte()
        if out.end_of_stream:
            self.lifecycle.end()
        return out

    @property
    def may_hold(self) -> bool:
        """Whether a response chunk may be held for long (a tool call waits for a
        decision): the server then keeps the stream alive meanwhile (`keepalive`)."""
        handler = self.body_handler
        return isinstance(handler, SseBody) and handler.may_hold

    def keepalive(self, ping: bool) -> BodyOut:
        """While a chunk is held: what is final of it already, and with `ping` the API's
        keepalive, for a stream nothing else would show alive for minutes."""
        handler = self.body_handler
        if self.lifecycle.phase is not Phase.RESPONSE_BODY or not isinstance(handler, SseBody):
            return BodyOut(b"", False)
        out = handler.keepalive(ping)
        self.bytes_out += len(out.data)
        if out.data and self.observation is not None:
            self.observation.saw_first_byte()
        return out

    async def end_for_shutdown(self, message: str, timeout_s: float) -> BodyOut | None:
        """A stream still open when the process must stop: ended now, in format, with a
        valid terminator. None for anything else (a buffered body, a request not yet
        answered): those end as Envoy ends them."""
        handler = self.body_handler
        if self.lifecycle.phase is not Phase.RESPONSE_BODY or not isinstance(handler, SseBody):
            return None
        out = await handler.end_now(message, timeout_s)
        self.bytes_out += len(out.data)
        self.lifecycle.end()
        return out

    async def on_response_trailers(self) -> BodyOut:
        """Trailers mark the end of the body when the upstream sends them."""
        out = await self.on_response_body(b"", True)
        return BodyOut(out.data, False)

    # -- the end ------------------------------------------------------------------

    def close(self) -> None:
        """Release what the request holds: pending policy work first."""
        self.body_handler.close()

    def finish(self, outcome: str) -> None:
        """The request is over (`outcome`: ok, rejected, incomplete, cancelled, error):
        the caller is charged for what it used, its counted rewrites become decisions,
        and its summary goes to the observers (even when logging the rewrites failed:
        the summary also closes the stream's gauge and its span)."""
        try:
            self._charge()
            self.decisions.flush()
        finally:
            observation, self.observation = self.observation, None  # once
            if observation is not None:
                observation.usage = self.body_handler.usage
                handler = self.body_handler
                events = handler.events_in if isinstance(handler, SseBody) else 0
                observation.finish(self.status, outcome, events, self.decisions.acted)

    def _charge(self) -> None:
        """Count what the response used against the caller's token and USD windows."""
        ctx, limiter = self.ctx, self.runtime.limiter
        if ctx is None or ctx.metered is None or ctx.limits is None or limiter is None:
            return
        gone_early = self.status == 0 and ctx.upstream is not None
        if not (200 <= self.status < 300 or gone_early):
            return  # refused or failed upstream: providers bill no tokens for those
        # The client left before the answer's headers: the provider read the prompt.
        handler = self.body_handler
        usage = handler.usage
        if isinstance(handler, SseBody) and not handler.terminated:
            # Cut short (the client went away, the upstream died): the report so far
            # may be the opening one (Anthropic's says 1 output token), so at least one
            # token per event the stream carried, the least it made.
            usage = dataclasses.replace(
                usage, output_tokens=max(usage.output_tokens or 0, handler.events_in)
            )
        elif usage.output_tokens is None and isinstance(handler, SseBody):
            usage = dataclasses.replace(usage, output_tokens=handler.events_in)
        if usage.input_tokens is None:
            usage = dataclasses.replace(usage, input_tokens=self.request_bytes // BYTES_PER_TOKEN)
        charge_later(limiter.charge(ctx.caller.name, ctx.limits, ctx.metered.model, usage))

    def summary(self) -> dict[str, Any]:
        """One log line's worth of facts about the request; never headers or bodies."""
        request = self.processor.request if self.processor is not None else None
        # Without a parsed request (routed without its body), what Envoy read of it.
        facts = self.ctx.facts if self.ctx is not None else None
        known = request or facts
        model, streamed = (known.model, known.stream) if known else (None, None)
        upstream = self.ctx.upstream if self.ctx is not None else None
        stream = self.body_handler if isinstance(self.body_handler, SseBody) else None
        events = stream.events_in if stream is not None else 0
        violations = stream.violations if stream is not None else None
        return {
            "id": self.request_id,
            "caller": self.caller.name if self.caller else None,
            "method": self.method,
            "path": self.path,
            "model": model,
            "stream": streamed,
            "upstream": upstream.name if upstream else None,
            "status": self.status,
            "mode": self.body_handler.mode.value,
            "events": events,
            "bytes_out": self.bytes_out,
            **_tokens(self.body_handler.usage),
            "ms": round((time.monotonic() - self.started) * 1000, 1),
            **({"violations": violations} if violations is not None else {}),
        }


def _tokens(usage: Usage) -> dict[str, int]:
    counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    return {k: v for k, v in counts.items() if v is not None}
