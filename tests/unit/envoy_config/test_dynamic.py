"""Envoy's listener, routes and provider clusters as xDS files a running Envoy follows:
what they hold, how they are written (atomically, versioned by content), how Envoy's
config dump tells a version is live, and the real Envoy accepting them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml

from extproc.config import Settings
from extproc.contract import EXTPROC_CLUSTER, EXTPROC_FILTER, HEALTH_PATH, UPSTREAM_HEADER
from extproc.envoy_config import dynamic, render_dynamic
from extproc.envoy_config.bootstrap import (
    CDS_FILE,
    LDS_FILE,
    LISTENER,
    RDS_FILE,
    ROUTE_CONFIG,
    dynamic_bootstrap,
)
from extproc.gateway import Gateway
from extproc.routing import Upstream
from extproc.stack import envoy_binary, free_port
from tests.helpers.pipeline import gateway_with, router_from
from tests.helpers.wait import wait_for
from tests.unit.envoy_config.test_render import envoy_validates

FILES = (CDS_FILE, RDS_FILE, LDS_FILE)
PROVIDERS = (
    "providers:\n"
    "  vllm: {api: openai, base_url: 'https://llm.example.com/openai/v1'}\n"
    "  local: {api: anthropic, base_url: 'http://10.1.2.3:8080'}\n"
)
TYPES = {
    CDS_FILE: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    RDS_FILE: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    LDS_FILE: "type.googleapis.com/envoy.config.listener.v3.Listener",
}


def gateway(**settings: Any) -> Gateway:
    s = Settings.model_validate({"ca_bundle": certifi.where(), **settings})
    return gateway_with(router_from(PROVIDERS, s), s)


def upstreams(g: Gateway) -> list[Upstream]:
    return g.router.clusters(any_keys=True)


def hcm(listener: dict[str, Any]) -> dict[str, Any]:
    """The HTTP connection manager's typed config."""
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def read(directory: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / name).read_text())
    return doc


# -- resources ------------------------------------------------------------------------


def test_clusters_are_the_served_upstreams_once_each_sorted(tmp_path: Path) -> None:
    g = gateway()
    served = upstreams(g)
    names = sorted({u.cluster for u in served})
    assert {"anthropic", "openai", "mock"} <= set(names) and len(names) == 5
    # Given twice, in reverse: still one cluster each, in name order.
    files = dynamic.resources(g, str(tmp_path), True, [*served, *reversed(served)])
    clusters = files[CDS_FILE]
    assert [c["name"] for c in clusters] == names
    by_name = {c["name"]: c for c in clusters}
    vllm = next(u.cluster for u in served if u.name == "vllm")
    local = next(u.cluster for u in served if u.name == "local")
    tls = by_name[vllm]["transport_socket"]["typed_config"]
    assert tls["sni"] == "llm.example.com"
    assert by_name[local]["type"] == "STATIC" and "transport_socket" not in by_name[local]
    endpoint = by_name[local]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "10.1.2.3",
        "port_value": 8080,
    }
    # The ext_proc cluster is the bootstrap's own, never a file's.
    assert EXTPROC_CLUSTER not in by_name


def test_routes_send_each_cluster_by_the_routing_header(tmp_path: Path) -> None:
    g = gateway()
    served = upstreams(g)
    (config,) = dynamic.resources(g, str(tmp_path), True, served)[RDS_FILE]
    assert config["name"] == ROUTE_CONFIG
    (host,) = config["virtual_hosts"]
    health, *routed, unrouted = host["routes"]
    assert health["match"] == {"path": HEALTH_PATH}
    assert unrouted["direct_response"]["status"] == 502
    clusters = sorted({u.cluster for u in served})
    assert [r["route"]["cluster"] for r in routed] == clusters
    for route in routed:
        (header,) = route["match"]["headers"]
        assert header == {
            "name": UPSTREAM_HEADER,
            "string_match": {"exact": route["route"]["cluster"]},
        }
    vllm = next(u.cluster for u in served if u.name == "vllm")
    (vllm_route,) = [r for r in routed if r["route"]["cluster"] == vllm]
    assert vllm_route["route"]["prefix_rewrite"] == "/openai/"


def test_the_listener_takes_its_routes_from_the_rds_file(tmp_path: Path) -> None:
    g = gateway()
    directory = str(tmp_path)
    for response_body, body_mode in ((True, "FULL_DUPLEX_STREAMED"), (False, "NONE")):
        (listener,) = dynamic.resources(g, directory, response_body, upstreams(g))[LDS_FILE]
        assert listener["name"] == LISTENER
        manager = hcm(listener)
        assert "route_config" not in manager
        assert manager["rds"] == {
            "route_config_name": ROUTE_CONFIG,
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": f"{directory}/{RDS_FILE}",
                    "watched_directory": {"path": directory},
                },
            },
        }
        (ext_proc,) = [f for f in manager["http_filters"] if f["name"] == EXTPROC_FILTER]
        mode = ext_proc["typed_config"]["processing_mode"]
        assert mode["response_body_mode"] == body_mode


def test_upstreams_beyond_the_routing_table_are_served_too(tmp_path: Path) -> None:
    """A reload keeps the clusters of earlier configurations (`Stack.reload`): the files
    hold every upstream given, not only the ones this gateway routes to."""
    g = gateway_with()  # the built-in providers only
    extra = upstreams(gateway())
    files = dynamic.resources(g, str(tmp_path), False, extra)
    names = {c["name"] for c in files[CDS_FILE]}
    assert names == {u.cluster for u in extra}
    routed = {r["route"]["cluster"] for r in files[RDS_FILE][0]["virtual_hosts"][0]["routes"][1:-1]}
    assert routed == names


# -- writing --------------------------------------------------------------------------


def test_write_leaves_only_the_three_files_each_versioned_and_typed(tmp_path: Path) -> None:
    g = gateway()
    files = dynamic.resources(g, str(tmp_path), True, upstreams(g))
    versions = dynamic.write(tmp_path, files)
    assert sorted(os.listdir(tmp_path)) == sorted(FILES)  # no staging file left behind
    assert set(versions) == set(FILES)
    for name in FILES:
        doc = read(tmp_path, name)
        assert doc["version_info"] == versions[name] == dynamic.version(files[name])
        assert [r["@type"] for r in doc["resources"]] == [TYPES[name]] * len(files[name])
        assert [{k: v for k, v in r.items() if k != "@type"} for r in doc["resources"]] == (
            files[name]
        )
        # JSON is YAML: Envoy reads the .yaml file either way.
        assert yaml.safe_load((tmp_path / name).read_text()) == doc


def test_each_write_renames_a_new_file_into_place(tmp_path: Path) -> None:
    """Envoy rereads a watched file only when one is moved into its directory: every
    write must replace the file (a new inode), not rewrite it in place."""
    g = gateway()
    files = dynamic.resources(g, str(tmp_path), True, upstreams(g))
    dynamic.write(tmp_path, files)
    before = {name: (tmp_path / name).stat().st_ino for name in FILES}
    dynamic.write(tmp_path, files)
    after = {name: (tmp_path / name).stat().st_ino for name in FILES}
    assert all(before[name] != after[name] for name in FILES)


def test_versions_change_if_and_only_if_the_content_does(tmp_path: Path) -> None:
    g = gateway()
    served = upstreams(g)
    first = dynamic.write(tmp_path, dynamic.resources(g, str(tmp_path), True, served))
    same = dynamic.write(tmp_path, dynamic.resources(g, str(tmp_path), True, served))
    assert same == first
    # Only the listener changes with the response body mode.
    body_off = dynamic.write(tmp_path, dynamic.resources(g, str(tmp_path), False, served))
    assert body_off[LDS_FILE] != first[LDS_FILE]
    assert (body_off[CDS_FILE], body_off[RDS_FILE]) == (first[CDS_FILE], first[RDS_FILE])
    # One upstream less: clusters and routes change, the listener does not.
    fewer = dynamic.write(tmp_path, dynamic.resources(g, str(tmp_path), False, served[1:]))
    assert fewer[CDS_FILE] != first[CDS_FILE] and fewer[RDS_FILE] != first[RDS_FILE]
    assert fewer[LDS_FILE] == body_off[LDS_FILE]


def test_version_ignores_key_order_and_sees_any_value() -> None:
    assert dynamic.version([{"a": 1, "b": {"c": 2, "d": 3}}]) == dynamic.version(
        [{"b": {"d": 3, "c": 2}, "a": 1}]
    )
    assert dynamic.version([{"a": 1}]) != dynamic.version([{"a": 2}])
    assert dynamic.version([{"a": 1}, {"b": 1}]) != dynamic.version([{"b": 1}, {"a": 1}])


# -- applied ----------------------------------------------------------------------------

VERSIONS = {CDS_FILE: "c-2", RDS_FILE: "r-2", LDS_FILE: "l-2"}
ADMIN = "type.googleapis.com/envoy.admin.v3."


def dump(cds: str = "c-2", lds: str = "l-2", routes: tuple[str, ...] = ("r-2",)) -> dict[str, Any]:
    return {
        "configs": [
            {"@type": ADMIN + "BootstrapConfigDump", "bootstrap": {}},
            {"@type": ADMIN + "ClustersConfigDump", "version_info": cds},
            {"@type": ADMIN + "ListenersConfigDump", "version_info": lds},
            {"@type": ADMIN + "ScopedRoutesConfigDump"},
            {
                "@type": ADMIN + "RoutesConfigDump",
                "dynamic_route_configs": [{"version_info": v} for v in routes],
            },
        ]
    }


def test_applied_when_every_file_version_shows() -> None:
    assert dynamic.applied(dump(), VERSIONS)
    # Another route configuration beside ours does not hide it.
    assert dynamic.applied(dump(routes=("other", "r-2")), VERSIONS)


@pytest.mark.parametrize(
    "stale",
    [
        {"cds": "c-1"},
        {"lds": "l-1"},
        {"routes": ("r-1",)},
        {"routes": ()},
    ],
    ids=["clusters", "listener", "routes", "no-routes"],
)
def test_not_applied_while_any_file_is_behind(stale: dict[str, Any]) -> None:
    assert not dynamic.applied(dump(**stale), VERSIONS)


def test_not_applied_from_an_empty_or_partial_dump() -> None:
    assert not dynamic.applied({}, VERSIONS)
    assert not dynamic.applied({"configs": []}, VERSIONS)
    only_clusters = {"configs": [{"@type": ADMIN + "ClustersConfigDump", "version_info": "c-2"}]}
    assert not dynamic.applied(only_clusters, VERSIONS)
    # Only the versions asked about are checked.
    assert dynamic.applied(only_clusters, {CDS_FILE: "c-2"})


# -- the real Envoy ---------------------------------------------------------------------


def static_from_files(g: Gateway, directory: Path) -> dict[str, Any]:
    """A static bootstrap holding exactly what the three files hold. `--mode validate`
    does not read file-based xDS sources, so this is how validation sees them."""
    resources = {
        name: [
            {k: v for k, v in r.items() if k != "@type"} for r in read(directory, name)["resources"]
        ]
        for name in FILES
    }
    (routes,) = resources[RDS_FILE]
    listeners = copy.deepcopy(resources[LDS_FILE])
    for listener in listeners:
        manager = hcm(listener)
        del manager["rds"]
        manager["route_config"] = routes
    boot = dynamic_bootstrap(g, str(directory))
    return {
        "admin": boot["admin"],
        "static_resources": {
            "listeners": listeners,
            "clusters": [*boot["static_resources"]["clusters"], *resources[CDS_FILE]],
        },
    }


@pytest.mark.parametrize("response_body", [True, False])
def test_envoy_accepts_the_dynamic_bootstrap_and_its_files(
    response_body: bool, tmp_path: Path
) -> None:
    g = gateway(extproc_workers=2)
    xds = tmp_path / "xds"
    xds.mkdir()
    dynamic.write(xds, dynamic.resources(g, str(xds), response_body, upstreams(g)))
    text = render_dynamic(g, str(xds))
    assert yaml.safe_load(text) == dynamic_bootstrap(g, str(xds))
    (tmp_path / "dynamic").mkdir()
    envoy_validates(text, tmp_path / "dynamic")
    (tmp_path / "static").mkdir()
    envoy_validates(json.dumps(static_from_files(g, xds)), tmp_path / "static")


def config_dump(admin_port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{admin_port}/config_dump"
    with urllib.request.urlopen(url, timeout=2.0) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def applied_in(admin_port: int, versions: dict[str, str]) -> bool:
    try:
        return dynamic.applied(config_dump(admin_port), versions)
    except OSError:
        return False  # not listening yet


def test_a_running_envoy_follows_the_files(tmp_path: Path) -> None:
    """The real Envoy on the dynamic bootstrap: its config dump shows the written
    versions (as `applied` reads them), and a rewrite replaces them in place."""
    g = gateway(admin_port=free_port(), gateway_port=free_port(), extproc_port=free_port())
    admin = g.settings.admin_port
    xds = tmp_path / "xds"
    xds.mkdir()
    first = dynamic.write(xds, dynamic.resources(g, str(xds), True, upstreams(g)))
    config = tmp_path / "envoy.yaml"
    config.write_text(render_dynamic(g, str(xds)))
    log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(
        [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: applied_in(admin, first), "Envoy to apply the first files")
        # Fewer clusters and no response bodies: every file changes.
        second = dynamic.write(xds, dynamic.resources(g, str(xds), False, upstreams(g)[:2]))
        assert all(second[name] != first[name] for name in FILES)
        wait_for(lambda: applied_in(admin, second), "Envoy to apply the rewritten files")
        now = config_dump(admin)
        assert not dynamic.applied(now, first)
        (clusters,) = [c for c in now["configs"] if c["@type"].endswith("ClustersConfigDump")]
        active = {c["cluster"]["name"] for c in clusters.get("dynamic_active_clusters", [])}
        warming = {c["cluster"]["name"] for c in clusters.get("dynamic_warming_clusters", [])}
        assert active | warming == {u.cluster for u in upstreams(g)[:2]}
    finally:
        envoy.terminate()
        try:
            envoy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            envoy.kill()
            envoy.wait()
        log.close()


def test_not_applied_while_a_cluster_or_the_listener_warms() -> None:
    doc = dump()
    clusters = doc["configs"][1]
    clusters["dynamic_active_clusters"] = [{"cluster": {"name": "old"}}]
    clusters["dynamic_warming_clusters"] = [{"cluster": {"name": "new"}}]
    # The new cluster is not serving yet: routing to it would fail.
    assert not dynamic.applied(doc, VERSIONS, {"old", "new"})
    clusters["dynamic_active_clusters"].append({"cluster": {"name": "new"}})
    assert dynamic.applied(doc, VERSIONS, {"old", "new"})
    doc["configs"][2]["dynamic_listeners"] = [{"name": "gateway", "warming_state": {}}]
    assert dynamic.applied(doc, VERSIONS, {"old", "new"})  # an empty state warms nothing
    doc["configs"][2]["dynamic_listeners"] = [
        {"name": "gateway", "warming_state": {"version_info": "l-2"}}
    ]
    assert not dynamic.applied(doc, VERSIONS, {"old", "new"})
