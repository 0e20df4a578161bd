"""One Envoy route and one cluster per provider: address, TLS, timeouts, retries."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from extproc.config import Settings
from extproc.envoy_config import render
from extproc.envoy_config.providers import cluster, is_ip, route, seconds
from tests.helpers.pipeline import gateway_with, router_from


def rendered(text: str, settings: Settings | None = None) -> dict[str, Any]:
    r = router_from(text, settings)
    doc: dict[str, Any] = yaml.safe_load(render(gateway_with(r, settings)))
    return doc


def routes_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes: list[dict[str, Any]] = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    return routes


@pytest.mark.parametrize(
    ("value", "text"),
    [(10, "10s"), (2.5, "2.5s"), (0.25, "0.25s"), (0.01, "0.01s"), (600.0, "600s"), (1e-5, "0s")],
)
def test_seconds_are_fixed_point(value: float, text: str) -> None:
    assert seconds(value) == text


def test_is_ip() -> None:
    assert is_ip("10.0.0.1") and is_ip("::1")
    assert not is_ip("api.openai.com") and not is_ip("999.1.1.1")


def test_each_provider_is_a_cluster_with_its_timeouts() -> None:
    r = router_from(
        "providers:\n"
        "  local: {api: openai, base_url: 'https://llm.internal.example/openai/v1',\n"
        "          connect_timeout_s: 2.5, idle_timeout_s: 120}\n"
        "routes: [{models: ['*'], provider: local}]"
    )
    doc = yaml.safe_load(render(gateway_with(r, Settings(ca_bundle="/ca.pem"))))
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    # No keys: the two built-in providers share the mock's cluster.
    name = r.upstreams["local"].cluster
    assert set(clusters) == {"extproc", "mock", name}
    local = clusters[name]
    assert local["connect_timeout"] == "2.5s"
    assert local["type"] == "LOGICAL_DNS"
    tls = local["transport_socket"]["typed_config"]
    assert tls["sni"] == "llm.internal.example"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {"filename": "/ca.pem"}
    (route_,) = [x for x in routes_of(doc) if x.get("route", {}).get("cluster") == name]
    assert route_["route"]["idle_timeout"] == "120s"
    assert route_["route"]["timeout"] == "0s"
    assert route_["route"]["prefix_rewrite"] == "/openai/"
    assert route_["match"]["headers"][0]["string_match"] == {"exact": name}


def test_https_provider_by_address_checks_an_ip_san() -> None:
    r = router_from("providers: {gpu: {api: openai, base_url: 'https://10.1.2.3:8443/v1'}}")
    doc = yaml.safe_load(render(gateway_with(r, Settings(ca_bundle="/ca.pem"))))
    (found,) = [c for c in doc["static_resources"]["clusters"] if c["name"].startswith("gpu-")]
    tls = found["transport_socket"]["typed_config"]
    assert "sni" not in tls
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.1.2.3"}}]
    assert found["type"] == "STATIC"
    address = found["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"socket_address": {"address": "10.1.2.3", "port_value": 8443}}


def test_https_provider_by_name_checks_a_dns_san_and_sends_sni() -> None:
    up = router_from("providers: {x: {api: openai, base_url: 'https://llm.example'}}").upstreams[
        "x"
    ]
    out = cluster(up, "/etc/ca.pem")
    tls = out["transport_socket"]["typed_config"]
    assert tls["sni"] == "llm.example"
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "DNS", "matcher": {"exact": "llm.example"}}]
    endpoint = out["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "llm.example", "port_value": 443}


def test_plain_http_has_no_tls() -> None:
    up = router_from("providers: {x: {api: openai, base_url: 'http://vllm:8000/v1'}}").upstreams[
        "x"
    ]
    out = cluster(up, "/ca.pem")
    assert "transport_socket" not in out
    assert out["name"] == up.cluster and out["load_assignment"]["cluster_name"] == up.cluster
    assert out["dns_lookup_family"] == "V4_PREFERRED"


def test_route_matches_the_routing_header_and_drops_internal_headers() -> None:
    up = router_from("providers: {x: {api: openai, base_url: 'http://h:1/v1'}}").upstreams["x"]
    out = route(up)
    assert out["match"] == {
        "prefix": "/",
        "headers": [{"name": "x-gateway-upstream", "string_match": {"exact": up.cluster}}],
    }
    assert out["request_headers_to_remove"] == ["accept-encoding", "x-gateway-upstream"]
    assert out["route"]["auto_host_rewrite"] is True
    assert "prefix_rewrite" not in out["route"]  # a bare /v1 is no prefix


def test_only_failures_before_the_request_are_retried() -> None:
    r = router_from(
        "providers:\n"
        "  a: {api: openai, base_url: 'http://h1', connect_retries: 3}\n"
        "  b: {api: openai, base_url: 'http://h2', connect_retries: 0}\n"
    )
    doc = yaml.safe_load(render(gateway_with(r)))
    routes = {x["route"]["cluster"]: x["route"] for x in routes_of(doc) if "route" in x}
    policy = routes[r.upstreams["a"].cluster]["retry_policy"]
    assert policy == {
        "retry_on": "connect-failure,refused-stream,reset-before-request",
        "num_retries": 3,
    }
    assert "retry_policy" not in routes[r.upstreams["b"].cluster]
    assert routes["mock"]["retry_policy"]["num_retries"] == 2  # the default


def test_durations_are_fixed_point() -> None:
    doc = rendered("providers: {x: {api: openai, base_url: 'http://h', connect_timeout_s: 0.25}}")
    (found,) = [c for c in doc["static_resources"]["clusters"] if c["name"].startswith("x-")]
    assert found["connect_timeout"] == "0.25s"
