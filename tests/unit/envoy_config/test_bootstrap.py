"""The Envoy bootstrap as data: listener, ext_proc filter, routes and clusters, all from
the gateway's settings, router and the Envoy contract."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from extproc.config import Settings
from extproc.contract import (
    EXTPROC_FILTER,
    FACTS_MAX_BODY_BYTES,
    FACTS_NAMESPACE,
    HEALTH_PATH,
    MAX_CONCURRENT_STREAMS,
    MODEL_FACT,
    NO_CLUSTER_MESSAGE,
    REQUEST_SLACK_BYTES,
    STREAM_FACT,
    UNREADABLE_FACT,
    decimal_at_most,
)
from extproc.envoy_config import bootstrap, local_replies, render
from extproc.routing import Router
from tests.helpers.pipeline import gateway_with, router_from


def hcm_of(doc: dict[str, Any]) -> dict[str, Any]:
    listener = doc["static_resources"]["listeners"][0]
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def cluster_names(doc: dict[str, Any]) -> set[str]:
    return {c["name"] for c in doc["static_resources"]["clusters"]}


def test_listener_admin_and_limits() -> None:
    settings = Settings(host="0.0.0.0", gateway_port=8123, admin_port=9911, max_request_bytes=1000)
    doc = bootstrap(gateway_with(settings=settings), True, False)
    # The admin interface can reconfigure Envoy: loopback whatever the listener.
    assert doc["admin"] == {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9911}}
    }
    (listener,) = doc["static_resources"]["listeners"]
    assert listener["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 8123}}
    assert listener["per_connection_buffer_limit_bytes"] == 1000 + REQUEST_SLACK_BYTES
    hcm = hcm_of(doc)
    assert hcm["request_timeout"] == "0s" and hcm["stream_idle_timeout"] == "600s"
    assert hcm["preserve_external_request_id"] is True
    assert hcm["local_reply_config"] == {"mappers": local_replies.mappers(1000)}


@pytest.mark.parametrize(("host", "kind"), [("127.0.0.1", "STATIC"), ("extproc", "STRICT_DNS")])
def test_extproc_cluster_one_endpoint_per_worker(host: str, kind: str) -> None:
    settings = Settings(extproc_host=host, extproc_port=6000, extproc_workers=3)
    doc = bootstrap(gateway_with(settings=settings), True, False)
    (extproc,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "extproc"]
    assert extproc["type"] == kind
    endpoints = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": host, "port_value": port} for port in (6000, 6001, 6002)
    ]
    options = extproc["typed_extension_protocol_options"]
    http2 = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    h2 = http2["explicit_http_config"]["http2_protocol_options"]
    assert h2["max_concurrent_streams"] == MAX_CONCURRENT_STREAMS


def test_extproc_cluster_over_unix_sockets() -> None:
    settings = Settings(extproc_port=6000, extproc_workers=2, extproc_uds_dir="/run/gw")
    doc = bootstrap(gateway_with(settings=settings), True, False)
    (extproc,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "extproc"]
    assert extproc["type"] == "STATIC"
    endpoints = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"] for e in endpoints] == [
        {"pipe": {"path": "/run/gw/extproc-6000.sock"}},
        {"pipe": {"path": "/run/gw/extproc-6001.sock"}},
    ]
    assert settings.extproc_address(6001) == "unix:/run/gw/extproc-6001.sock"
    assert Settings(extproc_listen="0.0.0.0").extproc_address(50051) == "0.0.0.0:50051"


@pytest.mark.parametrize("response_body", [True, False])
def test_ext_proc_filter(response_body: bool) -> None:
    doc = bootstrap(gateway_with(settings=Settings(policy_timeout_s=2.7)), response_body, False)
    health, *facts, ext_proc, router = hcm_of(doc)["http_filters"]
    # The request facts filter only where ext_proc may go without the body.
    assert len(facts) == (0 if response_body else 1)
    # /healthz is answered before ext_proc (no key, no policy), 503 once draining.
    assert health["name"] == "envoy.filters.http.health_check"
    assert health["typed_config"]["pass_through_mode"] is False
    assert ext_proc["name"] == EXTPROC_FILTER and router["name"] == "envoy.filters.http.router"
    config = ext_proc["typed_config"]
    assert config["failure_mode_allow"] is False
    assert config["mutation_rules"] == {"allow_envoy": True}
    assert config["message_timeout"] == "2s"
    assert config["grpc_service"] == {"envoy_grpc": {"cluster_name": "extproc"}}
    mode = config["processing_mode"]
    assert (mode["request_header_mode"], mode["request_body_mode"]) == ("SEND", "BUFFERED")
    assert mode["request_trailer_mode"] == "SKIP"
    sent = {
        "response_header_mode": "SEND",
        "response_body_mode": "FULL_DUPLEX_STREAMED",
        "response_trailer_mode": "SEND",
    }
    skipped = {
        "response_header_mode": "SKIP",
        "response_body_mode": "NONE",
        "response_trailer_mode": "SKIP",
    }
    assert {k: mode[k] for k in sent} == (sent if response_body else skipped)
    if response_body:
        # Envoy ignores mode overrides when responses stream: none are allowed.
        assert "allow_mode_override" not in config and "metadata_options" not in config
    else:
        # The one override ext_proc sends (keep the body) is the config's own mode
        # without the request body, and the facts reach ext_proc with the headers.
        assert config["allow_mode_override"] is True
        assert config["allowed_override_modes"] == [{**mode, "request_body_mode": "NONE"}]
        forwarded = config["metadata_options"]["forwarding_namespaces"]["untyped"]
        assert forwarded == [FACTS_NAMESPACE]


def test_request_facts_filter_reads_model_and_stream_of_small_bodies() -> None:
    doc = bootstrap(gateway_with(), False, False)
    _, facts, _, _ = hcm_of(doc)["http_filters"]
    wrapper = facts["typed_config"]
    inner = wrapper["extension_config"]["typed_config"]
    rules = inner["request_rules"]["rules"]
    assert [r["selectors"] for r in rules] == [[{"key": MODEL_FACT}], [{"key": STREAM_FACT}]]
    assert {r["on_present"]["metadata_namespace"] for r in rules} == {FACTS_NAMESPACE}
    assert rules[0]["on_error"] == {
        "metadata_namespace": FACTS_NAMESPACE,
        "key": UNREADABLE_FACT,
        "value": True,
    }
    # Skipped unless content-length says the body is small: big bodies cost Envoy's
    # parser more than the gRPC message saved, chunked ones have no length.
    (matcher,) = wrapper["xds_matcher"]["matcher_list"]["matchers"]
    small = matcher["predicate"]["not_matcher"]["single_predicate"]
    assert small["input"]["typed_config"]["header_name"] == "content-length"
    assert small["value_match"]["safe_regex"]["regex"] == decimal_at_most(FACTS_MAX_BODY_BYTES)
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")


@pytest.mark.parametrize("limit", [0, 9, 10, 99, 101, 20_000, 65_536])
def test_decimal_at_most_matches_exactly_the_numbers_up_to_the_limit(limit: int) -> None:
    regex = re.compile(decimal_at_most(limit))
    for n in range(0, 2 * limit + 25):
        assert bool(regex.match(str(n))) == (n <= limit), n
    for text in ("", "-1", "01", "1.0", " 1", "1e3", str(limit) + "0"):
        assert regex.match(text) is None, text


def test_routes_health_then_providers_then_the_catch_all() -> None:
    r = router_from("providers: {x: {api: openai, base_url: 'http://h:1'}}")
    doc = bootstrap(gateway_with(r), True, False)
    routes = hcm_of(doc)["route_config"]["virtual_hosts"][0]["routes"]
    health, *providers, unrouted = routes
    assert health["match"] == {"path": HEALTH_PATH}
    assert health["direct_response"]["status"] == 200
    assert health["typed_per_filter_config"][EXTPROC_FILTER]["disabled"] is True
    assert [p["route"]["cluster"] for p in providers] == [u.cluster for u in r.clusters()]
    assert unrouted == {
        "match": {"prefix": "/"},
        "direct_response": {"status": 502, "body": {"inline_string": NO_CLUSTER_MESSAGE}},
    }


def test_clusters_are_extproc_and_the_routers() -> None:
    r = router_from("providers: {x: {api: openai, base_url: 'http://h:1'}}")
    for any_keys in (False, True):
        doc = bootstrap(gateway_with(r), True, any_keys)
        assert cluster_names(doc) == {"extproc", *(u.cluster for u in r.clusters(any_keys))}


def test_config_for_any_keys_does_not_depend_on_the_keys() -> None:
    """render-envoy's output (compose, Kubernetes) holds the real APIs and the mock, so
    adding or removing a provider key never needs a new Envoy config."""
    bare = Settings(ca_bundle="/ca.pem")
    keyed = Settings(
        anthropic_api_key=SecretStr("sk-a"), openai_api_key=SecretStr("sk-o"), ca_bundle="/ca.pem"
    )
    rendered = [render(gateway_with(settings=s), any_keys=True) for s in (bare, keyed)]
    assert rendered[0] == rendered[1]
    assert "sk-a" not in rendered[1] and "sk-o" not in rendered[1]
    doc = yaml.safe_load(rendered[0])
    assert cluster_names(doc) == {"extproc", "anthropic", "openai", "mock"}
    # A URL override is not key-dependent: no mock variant for it, and its cluster is
    # named after the URL.
    override = Settings(upstream_openai_url="http://10.0.0.7:8080")
    r = Router.build(override, env={})
    doc = yaml.safe_load(render(gateway_with(r, override), any_keys=True))
    assert cluster_names(doc) == {"extproc", "anthropic", r.upstreams["openai"].cluster, "mock"}
    only_urls = Settings(
        upstream_openai_url="http://10.0.0.7:8080", upstream_anthropic_url="http://10.0.0.8"
    )
    r = Router.build(only_urls, env={})
    doc = yaml.safe_load(render(gateway_with(r, only_urls), any_keys=True))
    assert cluster_names(doc) == {
        "extproc",
        r.upstreams["anthropic"].cluster,
        r.upstreams["openai"].cluster,
    }


def test_circuit_breakers_sit_above_the_gateways_own_bound() -> None:
    """Envoy's default (1,024 requests per cluster) would refuse silently below the
    workers' bound, which answers in format: every cluster gets twice that bound."""
    settings = Settings(extproc_workers=3, extproc_max_streams=700)
    doc = bootstrap(gateway_with(settings=settings), True, False)
    clusters = doc["static_resources"]["clusters"]
    assert len(clusters) >= 2  # ext_proc and at least one provider
    for cluster in clusters:
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert threshold["max_requests"] == threshold["max_pending_requests"] == 4200
        assert threshold["max_connections"] == 4200
