"""Which upstream a request goes to, and the headers that send it there: the routing
header Envoy matches, the provider key in place of the gateway key, and the headers
the request's API requires (its dialect says which)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from extproc.contract import UPSTREAM_HEADER
from extproc.dialects.base import Dialect
from extproc.keys import GATEWAY_KEY_HEADER, KEY_HEADERS, Caller
from extproc.routing import Router, Upstream


@dataclass(slots=True)
class UpstreamHeaders:
    upstream: Upstream
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)


def key_headers(caller: Caller | None, set_headers: Mapping[str, str]) -> list[str]:
    """Headers carrying the gateway key, to remove before the request goes upstream;
    never one `set_headers` sets (the provider's key) and, for a caller that brings its
    own provider key, never that credential."""
    if caller is not None and caller.brings_own_key:
        return [GATEWAY_KEY_HEADER]
    return [h for h in (*KEY_HEADERS, GATEWAY_KEY_HEADER) if h not in set_headers]


def headers_for(
    upstream: Upstream, caller: Caller | None, dialect: Dialect, added: Mapping[str, str]
) -> UpstreamHeaders:
    """Send the request to `upstream` with its key, as `dialect`'s requests carry one,
    in place of the gateway key; `added` are the headers the API requires that the
    client did not send."""
    own_key = caller is not None and caller.brings_own_key
    if own_key:
        # A real credential goes to the real API, also where the gateway itself has no
        # key for the provider and would use the mock.
        upstream = upstream.real()
    out = UpstreamHeaders(upstream, {UPSTREAM_HEADER: upstream.cluster})
    if upstream.api_key is not None and not own_key:
        out.set_headers.update(dialect.credential_headers(upstream.api_key.get_secret_value()))
    out.set_headers.update(added)
    out.remove_headers = key_headers(caller, out.set_headers)
    return out


def upstream_for_model(router: Router, model: str, dialect: Dialect) -> Upstream | str:
    """The upstream serving `model` to a client of `dialect`, or why there is none (a
    400)."""
    upstream = router.for_model(model)
    if upstream is None:
        return (
            f"model {model[:200]!r} is not served by this gateway: no route matches it "
            f"(routed models: {', '.join(router.patterns) or 'none'})"
        )
    wrong = dialect.wrong_provider(model, upstream.name, upstream.api)
    return upstream if wrong is None else wrong


def upstream_for_listing(router: Router, dialect: Dialect, model_id: str) -> Upstream:
    """A path that names at most a model (the model list, one model's details): that
    model's provider when it speaks the client's API, else the API's default one."""
    routed = router.for_model(model_id) if model_id else None
    if routed is not None and routed.api is dialect.provider_api:
        return routed
    return router.default_for(dialect.provider_api)
