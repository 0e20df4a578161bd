"""One Envoy route and one cluster per provider the router resolved."""

from __future__ import annotations

import ipaddress
from typing import Any

from extproc.contract import HEADERS_NOT_FORWARDED, RETRY_ON, UPSTREAM_HEADER
from extproc.routing import Upstream


def seconds(value: float) -> str:
    """A protobuf Duration: fixed-point, never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def route(upstream: Upstream) -> dict[str, Any]:
    """Requests ext_proc sent to this provider's cluster (by the routing header)."""
    action: dict[str, Any] = {
        "cluster": upstream.cluster,
        # Streams last as long as the model writes: no route timeout, only an idle one.
        "timeout": "0s",
        "idle_timeout": seconds(upstream.idle_timeout_s),
        "auto_host_rewrite": True,
    }
    if upstream.path_prefix:
        action["prefix_rewrite"] = upstream.path_prefix + "/"
    if upstream.connect_retries:
        # Bodies are buffered for ext_proc anyway, so Envoy can resend them.
        action["retry_policy"] = {"retry_on": RETRY_ON, "num_retries": upstream.connect_retries}
    return {
        "match": {
            "prefix": "/",
            "headers": [{"name": UPSTREAM_HEADER, "string_match": {"exact": upstream.cluster}}],
        },
        "route": action,
        "request_headers_to_remove": list(HEADERS_NOT_FORWARDED),
    }


def _tls(upstream: Upstream, ca_bundle: str) -> dict[str, Any]:
    by_ip = is_ip(upstream.host)
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "validation_context": {
                "trusted_ca": {"filename": ca_bundle},
                # A certificate for an address lists it as an IP SAN.
                "match_typed_subject_alt_names": [
                    {
                        "san_type": "IP_ADDRESS" if by_ip else "DNS",
                        "matcher": {"exact": upstream.host},
                    }
                ],
            }
        },
    }
    if not by_ip:
        context["sni"] = upstream.host  # SNI carries names only
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def cluster(upstream: Upstream, ca_bundle: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": upstream.cluster,
        "type": "STATIC" if is_ip(upstream.host) else "LOGICAL_DNS",
        "connect_timeout": seconds(upstream.connect_timeout_s),
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": upstream.cluster,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": upstream.host,
                                        "port_value": upstream.port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if upstream.scheme == "https":
        out["transport_socket"] = _tls(upstream, ca_bundle)
    return out
