"""Which upstream a request goes to, and the headers that send it there: the routing
header Envoy matches, the provider key in place of the gateway key, `anthropic-version`.

Free of gRPC and Envoy types; the pipeline turns the results into its replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extproc.apis.kind import ApiKind
from extproc.keys import GATEWAY_KEY_HEADER, KEY_HEADERS, Caller
from extproc.routing import Router, Upstream

# Envoy routes on this header (see envoy/envoy.yaml.tmpl); the gateway always sets it
# itself, so a client cannot pick a cluster by sending it.
UPSTREAM_HEADER = "x-gateway-upstream"
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(slots=True)
class UpstreamHeaders:
    upstream: Upstream
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)


def key_headers(caller: Caller | None, set_headers: dict[str, str]) -> list[str]:
    """Headers carrying the gateway key, to remove before the request goes upstream;
    never one `set_headers` sets (the provider's key) and, for a passthrough caller,
    never the client's own provider credential."""
    if caller is not None and caller.passthrough:
        return [GATEWAY_KEY_HEADER]
    return [h for h in (*KEY_HEADERS, GATEWAY_KEY_HEADER) if h not in set_headers]


def headers_for(
    upstream: Upstream, caller: Caller | None, native: bool, sent_version: bool
) -> UpstreamHeaders:
    """Send the request to `upstream`, with its key in place of the gateway key.
    `native`: Anthropic's own API (`x-api-key`), else an OpenAI-style endpoint (Bearer)."""
    caller_brings_key = caller is not None and caller.passthrough
    if caller_brings_key:
        # A real credential goes to the real API, also where the gateway itself has no
        # key for the provider and would use the mock.
        upstream = upstream.real()
    out = UpstreamHeaders(upstream, {UPSTREAM_HEADER: upstream.cluster})
    if upstream.api_key is not None and not caller_brings_key:
        key = upstream.api_key.get_secret_value()
        if native:
            out.set_headers["x-api-key"] = key
        else:
            out.set_headers["authorization"] = f"Bearer {key}"
    if native and not sent_version:
        out.set_headers["anthropic-version"] = ANTHROPIC_VERSION
    out.remove_headers = key_headers(caller, out.set_headers)
    return out


def upstream_for_model(router: Router, model: str, api: ApiKind) -> Upstream | str:
    """The upstream serving `model` to a client of `api`, or why there is none (a 400)."""
    upstream = router.for_model(model)
    if upstream is None:
        return (
            f"model {model[:200]!r} is not served by this gateway: no route matches it "
            f"(routed models: {', '.join(router.patterns) or 'none'})"
        )
    if api is ApiKind.ANTHROPIC and upstream.api is not ApiKind.ANTHROPIC:
        return (
            f"model {model[:200]!r} is served by provider {upstream.name!r}, which speaks the "
            "OpenAI API: call /v1/chat/completions for it"
        )
    return upstream


def upstream_for_models_path(router: Router, api: ApiKind, path: str) -> Upstream:
    """`/v1/models` and `/v1/models/{id}`: one model's details come from the provider
    serving it (when it speaks the client's API), the list from the API's default."""
    model_id = path.removeprefix("/v1/models/") if path.startswith("/v1/models/") else ""
    routed = router.for_model(model_id) if model_id else None
    if routed is not None and routed.api is api:
        return routed
    return router.default_for(api)
