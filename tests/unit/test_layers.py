"""Dependencies point one way (README, "Architecture"): each part of `extproc` imports
only from its own layer and the layers below it, and only the server knows gRPC and
Envoy's types. A change that breaks the layering fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "extproc"

# Lowest first. A module may import from its own part and from parts of a lower rank.
RANKS: dict[str, int] = {
    "core": 0,
    "sse": 0,
    "contract": 0,
    "events": 1,
    "engine": 2,
    "dialects": 3,
    "policies": 4,
    # The desk where tool calls wait for people (policies ask it; stores keep its rows).
    "approvals": 3,
    "limits": 4,
    "stream_check": 4,
    "config": 5,
    "keys": 5,
    "routing": 6,
    # Records, stores, metrics and traces; the admin server that shows them.
    "observe": 6,
    "admin": 7,
    "policy_config": 7,
    "gateway": 8,
    "pipeline": 9,
    # The runtime a serving process swaps on reload.
    "live": 9,
    "limit_report": 9,
    "envoy_config": 9,
    "server": 10,
    "serve": 11,
    "stack": 11,
    "restarts": 0,
    # Child processes and readiness probes: nothing of the gateway (the server probes a
    # worker socket with it too).
    "processes": 0,
    "cli": 12,
    "usage_cli": 11,
    "__main__": 13,
    "__init__": 13,
    # The fake provider stands apart: it imports nothing of the gateway.
    "mock_llm": -1,
}
# Protobuf and gRPC: the server's business only.
WIRE_PACKAGES = ("grpc", "envoy")
WIRE_MODULES = {"server"}
# Only the command line starts the mock; nothing of the gateway depends on it.
MOCK_USERS = {"cli"}


def _part(module: str) -> str:
    """`extproc.dialects.anthropic.dialect` -> `dialects`."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_part_has_a_rank() -> None:
    parts = {_part(_module_name(p)) for p in MODULES}
    assert parts <= set(RANKS), f"give these a rank: {sorted(parts - set(RANKS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    name = _module_name(path)
    part = _part(name)
    rank = RANKS[part]
    for target in _imports(path):
        if target.split(".")[0] in WIRE_PACKAGES:
            assert part in WIRE_MODULES, f"{name} imports {target}: only the server may"
        if not target.startswith("extproc.") and target != "extproc":
            continue
        other = _part(target)
        if other == part:
            continue
        if rank < 0:
            pytest.fail(f"{name} imports {target}: the mock LLM imports nothing of the gateway")
        if other == "mock_llm":
            assert part in MOCK_USERS, f"{name} imports {target}: the gateway needs no mock"
            continue
        assert 0 <= RANKS[other] < rank, (
            f"{name} ({part}, rank {rank}) imports {target} ({other}, rank {RANKS[other]})"
        )
