"""The request side of the two kinds of requests the gateway serves, picked once from
the path, as Envoy AI Gateway's `processorForPath` does:

- `PolicyRequest`: the API's own endpoint (`Dialect.path`): the body is parsed, the
  request policies run, and the model picks the upstream;
- `ForwardedRequest`: token counting and model lists (`Dialect.forwarded`): the gateway
  key checked and the provider's injected, but no body policy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson

from extproc.contract import RETRY_SOON_S, UPSTREAM_HEADER
from extproc.core.request import ApiRequest
from extproc.dialects.base import ForwardedPath, RoutedBy
from extproc.pipeline.context import RequestContext
from extproc.pipeline.replies import Continue, Immediate
from extproc.pipeline.upstream import key_headers, upstream_for_listing

log = logging.getLogger("extproc.pipeline")


class RequestProcessor(Protocol):
    # The parsed request, once its body was read; None for requests without policies.
    request: ApiRequest | None

    def on_headers(self, headers: dict[str, str], end_of_stream: bool) -> Continue | Immediate: ...

    async def on_body(self, body: bytes) -> Continue | Immediate: ...


def _hide_key(ctx: RequestContext) -> Continue:
    """Headers answered, the body next: the gateway key and any routing header a client
    sent are removed now, the route comes with the body."""
    return Continue(remove_headers=[*key_headers(ctx.caller, {}), UPSTREAM_HEADER])


def _route_to_model(ctx: RequestContext, model: str, stream: bool) -> Continue | Immediate:
    """A request no policy checks, sent to the upstream serving `model` if the caller
    may use it; its body goes on as the client sent it."""
    if (refused := ctx.refuse_model(model)) is not None:
        return refused
    upstream = ctx.upstream_for(model)
    if isinstance(upstream, Immediate):
        return upstream
    if ctx.observation is not None:
        ctx.observation.parsed(model, stream)
    return ctx.route(upstream)


def _route_by_facts(ctx: RequestContext) -> Continue | Immediate:
    """A request nothing needs the body of, routed from what Envoy read of it, and
    Envoy told to keep the body (the provider says what else is wrong with it)."""
    facts = ctx.facts
    assert facts is not None
    out = _route_to_model(ctx, facts.model, facts.stream)
    if isinstance(out, Continue):
        out.skip_body = True
    return out


def _parse(ctx: RequestContext, body: bytes) -> tuple[dict[str, Any], str] | Immediate:
    """A JSON object body within the size limit and its `model`, or a 400/413 saying
    what is wrong."""
    max_bytes = ctx.runtime.settings.max_request_bytes
    if len(body) > max_bytes:
        return ctx.refuse(413, f"request body of {len(body)} bytes exceeds {max_bytes}")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return ctx.refuse(400, f"request body is not valid JSON: {exc}")
    if not isinstance(parsed, dict):
        return ctx.refuse(400, "request body must be a JSON object")
    model = parsed.get("model")
    if not isinstance(model, str) or not model:
        return ctx.refuse(400, "model: a model name is required", "model")
    return parsed, model


async def _checked_and_routed(ctx: RequestContext, request: ApiRequest) -> Continue | Immediate:
    """The request policies' verdict on `request`, then its route by the model that
    goes upstream, with the body the policies left."""
    try:
        async with asyncio.timeout(ctx.runtime.settings.policy_timeout_s):
            verdict = await ctx.chain.on_request(request)
    except TimeoutError:
        return ctx.refuse(504, "request policies did not finish in time")
    except Exception:
        # Fail closed: a request no policy could check does not go upstream.
        log.exception("%s: request policy failed", ctx.label)
        return ctx.refuse(500, "a gateway policy failed while checking the request")
    if verdict is not None:
        log.info("%s: request denied by policy (%d)", ctx.label, verdict.status)
        return ctx.refuse(verdict.status, verdict.message)
    # Routed after the policies: their verdicts (a model not allowed) come first, and
    # the model routed is the one that goes upstream.
    final = request.body.get("model")
    if final != request.model:
        if not isinstance(final, str) or not final:
            return ctx.refuse(500, "a gateway policy removed the request's model")
        if (refused := ctx.refuse_model(final)) is not None:
            return refused
    upstream = ctx.upstream_for(final)
    if isinstance(upstream, Immediate):
        return upstream
    ctx.ask_for_usage(request, upstream)
    out = ctx.route(upstream)
    if request.body_changed:
        out.body = orjson.dumps(request.body)
        out.set_headers["content-length"] = str(len(out.body))
    return out


class PolicyRequest:
    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.request: ApiRequest | None = None

    def on_headers(self, headers: dict[str, str], end_of_stream: bool) -> Continue | Immediate:
        ctx = self.ctx
        max_bytes = ctx.runtime.settings.max_request_bytes
        if not ctx.envoy_sends_body and (ctx.chain.reads_responses or ctx.limits is not None):
            # Policies (or the caller's budget) need the response, which this Envoy
            # listener does not send: a connection opened before a reload switched
            # responses on, or an Envoy config rendered for other policies. Refuse
            # rather than pass it unchecked; a retry comes on a new connection.
            log.warning("Envoy does not send this response body, but the policies need it")
            out = ctx.refuse(
                503,
                "the gateway's configuration changed under this connection (Envoy does not "
                "send this response to the policies): retry; if it persists, render the "
                "Envoy config again",
            )
            out.headers["retry-after"] = str(RETRY_SOON_S)
            return out
        if ctx.method != "POST":
            return ctx.refuse(405, f"method {ctx.method} not allowed on {ctx.path}; use POST")
        ctype = headers.get("content-type", "")
        if "json" not in ctype.split(";", 1)[0].lower():
            return ctx.refuse(
                415, f"content-type must be application/json, got {ctype or 'none'!r}"
            )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return ctx.refuse(413, f"request body of {length} bytes exceeds {max_bytes}")
        if end_of_stream:
            return ctx.refuse(400, "request body is required")
        if not ctx.needs_body:
            return _route_by_facts(ctx)
        return _hide_key(ctx)

    async def on_body(self, body: bytes) -> Continue | Immediate:
        ctx = self.ctx
        parsed = _parse(ctx, body)
        if isinstance(parsed, Immediate):
            return parsed
        doc, model = parsed
        problem = ctx.dialect.request_problem(doc)
        if problem is not None:
            return ctx.refuse(400, *problem)
        if (refused := ctx.refuse_model(model)) is not None:
            return refused
        self.request = ctx.api_request(model, doc.get("stream") is True, doc)
        if (limited := await ctx.admit(self.request)) is not None:
            return limited
        return await _checked_and_routed(ctx, self.request)


class ForwardedRequest:
    def __init__(self, ctx: RequestContext, forwarded: ForwardedPath) -> None:
        self.ctx = ctx
        self.forwarded = forwarded
        # With response policies, the answer is read like the API's own: its request
        # is known only by its path (no model, no body).
        self.request: ApiRequest | None = (
            ctx.api_request(model="", stream=False, body={})
            if forwarded.response_policies
            else None
        )

    def on_headers(self, headers: dict[str, str], end_of_stream: bool) -> Continue | Immediate:
        ctx, forwarded = self.ctx, self.forwarded
        bare = ctx.path.rstrip("/")
        if ctx.method not in forwarded.methods:
            allowed = " or ".join(forwarded.methods)
            return ctx.refuse(405, f"method {ctx.method} not allowed on {bare}; use {allowed}")
        for name in forwarded.refused_query:
            if name in ctx.query_names:
                return ctx.refuse(
                    400,
                    f"{name} is not supported through the gateway: its policies need the "
                    "whole response (ask for all of it and skip what you have seen)",
                    name,
                )
        if forwarded.routed_by is RoutedBy.BODY_MODEL:
            if end_of_stream:
                return ctx.refuse(400, "request body is required")
            checked = forwarded.request_policies or forwarded.billed
            if ctx.facts is not None and not (checked and ctx.needs_body):
                return _route_by_facts(ctx)
            return _hide_key(ctx)
        router = ctx.runtime.gateway.router
        model_id = forwarded.path_model(bare)
        out = ctx.route(upstream_for_listing(router, ctx.dialect, model_id))
        out.skip_body = True  # routed by its path: a body (a POST's) goes on as it is
        return out

    async def on_body(self, body: bytes) -> Continue | Immediate:
        ctx = self.ctx
        parsed = _parse(ctx, body)
        if isinstance(parsed, Immediate):
            return parsed
        doc, model = parsed
        if self.forwarded.request_policies:
            if (refused := ctx.refuse_model(model)) is not None:
                return refused
            # Its answer is not the API's usual one, so only the request is checked.
            request = ctx.api_request(model, stream=False, body=doc)
            if self.forwarded.billed and (limited := await ctx.admit(request)) is not None:
                return limited
            return await _checked_and_routed(ctx, request)
        return _route_to_model(ctx, model, stream=False)
