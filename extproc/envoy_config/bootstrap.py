"""The Envoy bootstrap, as data: listener, ext_proc filter, routes and clusters.

Every fact the ext_proc server shares with Envoy (header names, limits, timeouts, error
formats) comes from `extproc.contract` and the dialects, never from a copy here.
"""

from __future__ import annotations

from typing import Any

from extproc.config import Settings
from extproc.contract import (
    CONNECTION_IDLE_TIMEOUT_S,
    EXTPROC_CLUSTER,
    EXTPROC_CONNECT_TIMEOUT_S,
    EXTPROC_FILTER,
    EXTPROC_HEALTH_INTERVAL_S,
    FACTS_FILTER,
    FACTS_MAX_BODY_BYTES,
    FACTS_NAMESPACE,
    HEALTH_PATH,
    JSON_CONTENT_TYPE,
    MAX_CONCURRENT_STREAMS,
    MODEL_FACT,
    NO_CLUSTER_MESSAGE,
    REQUEST_ONLY_MODE,
    REQUEST_SLACK_BYTES,
    SKIP_BODY_MODE,
    STREAM_FACT,
    STREAM_IDLE_TIMEOUT_S,
    UNREADABLE_FACT,
    decimal_at_most,
    message_timeout_s,
)
from extproc.envoy_config import local_replies, providers
from extproc.gateway import Gateway
from extproc.routing import Upstream

_GOOGLE_TYPES = "type.googleapis.com"
_TYPES = f"{_GOOGLE_TYPES}/envoy.extensions"
LISTENER = "gateway"
# Envoy's statistics of the listener's requests are named http.<this>.*.
STAT_PREFIX = "gateway"
ROUTE_CONFIG = "gateway"
# The files of a dynamic configuration, in its directory.
LDS_FILE = "lds.yaml"
CDS_FILE = "cds.yaml"
RDS_FILE = "rds.yaml"
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms "
    "%UPSTREAM_CLUSTER%\n"
)


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _extproc_endpoint(settings: Settings, port: int) -> dict[str, Any]:
    path = settings.extproc_socket(port)
    if path is not None:
        return {"pipe": {"path": path}}
    return _socket(settings.extproc_host, port)


_RESPONSE_MODE = {
    **REQUEST_ONLY_MODE,
    "response_header_mode": "SEND",
    "response_body_mode": "FULL_DUPLEX_STREAMED",
    # FULL_DUPLEX_STREAMED requires trailers to be sent.
    "response_trailer_mode": "SEND",
}


def _ext_proc_filter(gateway: Gateway, response_body: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": f"{_TYPES}.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}},
        # Fail closed: a request the policies cannot see does not go through.
        "failure_mode_allow": False,
        # The server removes x-envoy-* headers a client sent (Envoy refuses ext_proc
        # changes to them otherwise).
        "mutation_rules": {"allow_envoy": True},
        # Applies to headers and the buffered request body (not to
        # FULL_DUPLEX_STREAMED chunks, which the server guards itself).
        "message_timeout": f"{message_timeout_s(gateway.settings.policy_timeout_s)}s",
        # Without a policy that looks at responses, ext_proc sees none of them: one
        # round trip less per request, and bodies stream straight through Envoy. The
        # server checks which mode it gets.
        "processing_mode": _RESPONSE_MODE if response_body else REQUEST_ONLY_MODE,
    }
    if not response_body:
        # ext_proc skips the body of a request it could route from the request facts
        # filter's metadata (mode_override). Envoy ignores overrides when responses
        # stream to ext_proc.
        config["allow_mode_override"] = True
        config["allowed_override_modes"] = [SKIP_BODY_MODE]
        config["metadata_options"] = {"forwarding_namespaces": {"untyped": [FACTS_NAMESPACE]}}
    return {"name": EXTPROC_FILTER, "typed_config": config}


def _fact(key: str) -> dict[str, str]:
    return {"metadata_namespace": FACTS_NAMESPACE, "key": key}


def _request_facts_filter() -> dict[str, Any]:
    """json_to_metadata, reading `model` and `stream` of JSON bodies up to
    FACTS_MAX_BODY_BYTES (by content-length) into the metadata ext_proc gets with the
    headers; skipped for larger or chunked bodies, which ext_proc then reads itself."""
    unreadable = {**_fact(UNREADABLE_FACT), "value": True}
    rules = {
        # JSON however the client spells its type (the filter's default is the exact
        # `application/json`); other types reach ext_proc with their body, as before.
        "allow_content_types_regex": {"regex": JSON_CONTENT_TYPE},
        "rules": [
            {
                "selectors": [{"key": MODEL_FACT}],
                "on_present": _fact(MODEL_FACT),
                "on_error": unreadable,
            },
            {"selectors": [{"key": STREAM_FACT}], "on_present": _fact(STREAM_FACT)},
        ],
    }
    small_body = {
        "single_predicate": {
            "input": {
                "name": "content-length",
                "typed_config": {
                    "@type": f"{_GOOGLE_TYPES}/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                    "header_name": "content-length",
                },
            },
            "value_match": {
                "safe_regex": {
                    "google_re2": {},
                    "regex": decimal_at_most(FACTS_MAX_BODY_BYTES),
                }
            },
        }
    }
    skip = {
        "name": "skip",
        "typed_config": {"@type": f"{_TYPES}.filters.common.matcher.action.v3.SkipFilter"},
    }
    return {
        "name": FACTS_FILTER,
        "typed_config": {
            "@type": f"{_TYPES}.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {
                "name": FACTS_FILTER,
                "typed_config": {
                    "@type": f"{_TYPES}.filters.http.json_to_metadata.v3.JsonToMetadata",
                    "request_rules": rules,
                },
            },
            "xds_matcher": {
                "matcher_list": {
                    "matchers": [
                        {"predicate": {"not_matcher": small_body}, "on_match": {"action": skip}}
                    ]
                }
            },
        },
    }


def _health_check_filter() -> dict[str, Any]:
    """/healthz answered by Envoy itself: 200, or 503 once a drain started (the admin
    interface's /healthcheck/fail), so load balancers and readiness probes move away."""
    return {
        "name": "envoy.filters.http.health_check",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.health_check.v3.HealthCheck",
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": HEALTH_PATH}}],
        },
    }


def _routes(upstreams: list[Upstream]) -> list[dict[str, Any]]:
    health = {
        "match": {"path": HEALTH_PATH},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        "typed_per_filter_config": {
            EXTPROC_FILTER: {
                "@type": f"{_TYPES}.filters.http.ext_proc.v3.ExtProcPerRoute",
                "disabled": True,
            }
        },
    }
    # ext_proc answers unknown paths itself and names a cluster for every other request:
    # reaching this route means it named one this config lacks (a config rendered for
    # other provider URLs). Fail closed, and say so (in format: `local_replies.py`).
    unrouted = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 502, "body": {"inline_string": NO_CLUSTER_MESSAGE}},
    }
    return [health, *(providers.route(u) for u in upstreams), unrouted]


def route_config(upstreams: list[Upstream]) -> dict[str, Any]:
    """The gateway's routes: one per provider cluster, named so RDS can carry them."""
    return {
        "name": ROUTE_CONFIG,
        "virtual_hosts": [{"name": "gateway", "domains": ["*"], "routes": _routes(upstreams)}],
    }


def _http_connection_manager(
    gateway: Gateway, routes: dict[str, Any], response_body: bool
) -> dict[str, Any]:
    """`routes`: the route_config inline, or an `rds` block naming where it comes from."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": STAT_PREFIX,
            "codec_type": "AUTO",
            # Keep a caller's x-request-id so one id follows a request through every log.
            "preserve_external_request_id": True,
            # Long generations: no overall request timeout, only an idle one.
            "request_timeout": "0s",
            "stream_idle_timeout": providers.seconds(STREAM_IDLE_TIMEOUT_S),
            "common_http_protocol_options": {
                "idle_timeout": providers.seconds(CONNECTION_IDLE_TIMEOUT_S)
            },
            "access_log": [
                {
                    "name": "envoy.access_loggers.stdout",
                    "typed_config": {
                        "@type": f"{_TYPES}.access_loggers.stream.v3.StdoutAccessLog",
                        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
                    },
                }
            ],
            "local_reply_config": {
                "mappers": local_replies.mappers(gateway.settings.max_request_bytes)
            },
            **routes,
            "http_filters": [
                _health_check_filter(),
                # Only where ext_proc may go without the body (no response processing).
                *([] if response_body else [_request_facts_filter()]),
                _ext_proc_filter(gateway, response_body),
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
                },
            ],
        },
    }


def circuit_breakers(gateway: Gateway) -> dict[str, Any]:
    """Envoy's per-cluster bounds, set on purpose: its defaults (1,024 requests) would
    refuse requests silently below the gateway's own bound (EXTPROC_MAX_STREAMS per
    worker, answered in each API's format). Twice that bound, so ours acts first."""
    s = gateway.settings
    bound = 2 * s.extproc_workers * s.extproc_max_streams
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": bound,
                "max_pending_requests": bound,
                "max_requests": bound,
                "max_retries": max(3, bound // 10),
            }
        ]
    }


def _extproc_cluster(gateway: Gateway) -> dict[str, Any]:
    s = gateway.settings
    return {
        "name": EXTPROC_CLUSTER,
        "circuit_breakers": circuit_breakers(gateway),
        # Each worker answers grpc.health.v1: a dead one (or one draining at shutdown)
        # gets no new request within a second; a restarted one is back after one check.
        "health_checks": [
            {
                # A GC pause or a large body is no death: two missed answers of a
                # second each are (a dead worker is ejected at once anyway, below).
                "timeout": "1s",
                "interval": providers.seconds(EXTPROC_HEALTH_INTERVAL_S),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "no_traffic_interval": providers.seconds(EXTPROC_HEALTH_INTERVAL_S),
                "grpc_health_check": {},
            }
        ],
        # Requests that fail to reach a worker eject it at once, before the next check.
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "interval": providers.seconds(EXTPROC_HEALTH_INTERVAL_S),
            "base_ejection_time": "2s",
            "max_ejection_percent": 100,
        },
        # A service name under compose, an address or Unix sockets on one host or in a pod.
        "type": (
            "STATIC"
            if s.extproc_uds_dir is not None or providers.is_ip(s.extproc_host)
            else "STRICT_DNS"
        ),
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": providers.seconds(EXTPROC_CONNECT_TIMEOUT_S),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # Many concurrent requests share one connection to ext_proc.
                        "max_concurrent_streams": MAX_CONCURRENT_STREAMS,
                        "initial_stream_window_size": 16 * 1024 * 1024,
                        "initial_connection_window_size": 32 * 1024 * 1024,
                    }
                },
            }
        },
        "load_assignment": {
            "cluster_name": EXTPROC_CLUSTER,
            "endpoints": [
                {
                    # One ext_proc process per port (EXTPROC_WORKERS): Envoy balances.
                    "lb_endpoints": [
                        {"endpoint": {"address": _extproc_endpoint(s, s.extproc_port + i)}}
                        for i in range(s.extproc_workers)
                    ]
                }
            ],
        },
    }


def listener(gateway: Gateway, routes: dict[str, Any], response_body: bool) -> dict[str, Any]:
    s = gateway.settings
    return {
        "name": LISTENER,
        "address": _socket(s.host, s.gateway_port),
        # Request bodies are buffered for ext_proc: above the gateway's own limit, so
        # ext_proc answers 413 in format when the client sent content-length; this is
        # the backstop for chunked bodies.
        "per_connection_buffer_limit_bytes": s.max_request_bytes + REQUEST_SLACK_BYTES,
        "filter_chains": [{"filters": [_http_connection_manager(gateway, routes, response_body)]}],
    }


def provider_clusters(gateway: Gateway, upstreams: list[Upstream]) -> list[dict[str, Any]]:
    breakers = circuit_breakers(gateway)
    return [
        {**providers.cluster(u, gateway.settings.ca_bundle), "circuit_breakers": breakers}
        for u in upstreams
    ]


def bootstrap(gateway: Gateway, response_body: bool, any_keys: bool) -> dict[str, Any]:
    """The whole bootstrap, every resource static. `response_body=False` keeps
    responses away from ext_proc; `any_keys` renders providers without a URL both as
    the real API and the mock, so the file holds whichever keys ext_proc has (see
    `Router.clusters`)."""
    s = gateway.settings
    upstreams = gateway.router.clusters(any_keys)
    routes = {"route_config": route_config(upstreams)}
    return {
        # The admin interface can reconfigure Envoy: never beyond loopback.
        "admin": {"address": _socket("127.0.0.1", s.admin_port)},
        "static_resources": {
            "listeners": [listener(gateway, routes, response_body)],
            "clusters": [_extproc_cluster(gateway), *provider_clusters(gateway, upstreams)],
        },
    }


def dynamic_bootstrap(gateway: Gateway, directory: str) -> dict[str, Any]:
    """A bootstrap whose listener, routes and provider clusters come from files in
    `directory` (`dynamic.py` writes them): rewriting those files reconfigures the
    running Envoy in place. Only the admin interface and the ext_proc cluster are fixed."""
    s = gateway.settings
    return {
        "node": {"id": "llm-gateway", "cluster": "llm-gateway"},
        "admin": {"address": _socket("127.0.0.1", s.admin_port)},
        "dynamic_resources": {
            "lds_config": file_source(directory, LDS_FILE),
            "cds_config": file_source(directory, CDS_FILE),
        },
        "static_resources": {"clusters": [_extproc_cluster(gateway)]},
    }


def file_source(directory: str, name: str) -> dict[str, Any]:
    """An xDS config source read from a file, reloaded when a file is moved into
    `directory` (how the files are replaced: a rename, atomic as Envoy requires)."""
    return {
        "resource_api_version": "V3",
        "path_config_source": {
            "path": f"{directory}/{name}",
            "watched_directory": {"path": directory},
        },
    }
