"""Envoy's listener, routes and provider clusters as xDS files that a running Envoy
follows (file-based dynamic configuration): a reload writes them again, and Envoy
updates clusters and routes in place, leaving open streams alone.

Envoy rereads a file only when one is moved into the watched directory, so each file is
written beside its final name and renamed over it: the rename is atomic, Envoy never
reads half a file. Each resource carries a `version_info`, the hash of what it says, so
`applied` can tell from Envoy's config dump whether a version is live.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from extproc.envoy_config.bootstrap import (
    CDS_FILE,
    LDS_FILE,
    RDS_FILE,
    ROUTE_CONFIG,
    file_source,
    listener,
    provider_clusters,
    route_config,
)
from extproc.gateway import Gateway
from extproc.routing import Upstream

_TYPES = "type.googleapis.com/envoy.config"
_TYPE_OF = {
    LDS_FILE: f"{_TYPES}.listener.v3.Listener",
    RDS_FILE: f"{_TYPES}.route.v3.RouteConfiguration",
    CDS_FILE: f"{_TYPES}.cluster.v3.Cluster",
}


def resources(
    gateway: Gateway, directory: str, response_body: bool, upstreams: Iterable[Upstream]
) -> dict[str, list[dict[str, Any]]]:
    """Each file's resources. `upstreams`: every provider cluster to serve, which may be
    more than this configuration routes to (see `Stack.reload`)."""
    served = sorted({u.cluster: u for u in upstreams}.values(), key=lambda u: u.cluster)
    rds = {
        "rds": {
            "route_config_name": ROUTE_CONFIG,
            "config_source": file_source(directory, RDS_FILE),
        }
    }
    return {
        CDS_FILE: provider_clusters(gateway, served),
        RDS_FILE: [route_config(served)],
        LDS_FILE: [listener(gateway, rds, response_body)],
    }


def version(resources: list[dict[str, Any]]) -> str:
    canonical = json.dumps(resources, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write(directory: Path, files: Mapping[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Write each file atomically (CDS first: routes and the listener may name its
    clusters); returns each file's version."""
    versions: dict[str, str] = {}
    for name in (CDS_FILE, RDS_FILE, LDS_FILE):
        items = files[name]
        versions[name] = v = version(items)
        doc = {
            "version_info": v,
            "resources": [{"@type": _TYPE_OF[name], **item} for item in items],
        }
        target = directory / name
        staging = directory / f".{name}.tmp"
        # JSON is YAML, and needs no dumper that could fold a long line.
        staging.write_text(json.dumps(doc, indent=1))
        os.replace(staging, target)
    return versions


def applied(
    config_dump: Mapping[str, Any], versions: Mapping[str, str], clusters: Iterable[str] = ()
) -> bool:
    """Whether Envoy's `/config_dump` shows every file's version processed, every one
    of `clusters` active (a new cluster warms first: routing to it before then fails)
    and the listener active in its new version (not still warming)."""
    seen: dict[str, set[str]] = {LDS_FILE: set(), RDS_FILE: set(), CDS_FILE: set()}
    active: set[str] = set()
    for config in config_dump.get("configs", []):
        kind = str(config.get("@type", ""))
        if kind.endswith("ClustersConfigDump"):
            seen[CDS_FILE].add(str(config.get("version_info", "")))
            active.update(
                str(c.get("cluster", {}).get("name", ""))
                for c in config.get("dynamic_active_clusters", [])
            )
        elif kind.endswith("ListenersConfigDump"):
            # The last version processed (an unchanged listener keeps its own older
            # one); a listener still warming is not serving its new version yet.
            seen[LDS_FILE].add(str(config.get("version_info", "")))
            if any(lis.get("warming_state") for lis in config.get("dynamic_listeners", [])):
                return False
        elif kind.endswith("RoutesConfigDump"):
            for r in config.get("dynamic_route_configs", []):
                seen[RDS_FILE].add(str(r.get("version_info", "")))
    return all(versions[name] in seen[name] for name in versions) and set(clusters) <= active
