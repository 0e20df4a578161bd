"""The policy config loader: example files, error messages, env expansion, chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from extproc.policies.all_caps import AllCapsPolicy
from extproc.policies.base import Chains, Policy, PolicyConfig
from extproc.policies.noop import NoOpPolicy
from extproc.policy_config import (
    POLICY_TYPES,
    ConfigError,
    PolicyFile,
    Registry,
    build_chain,
    build_chains,
    default_config,
    load_config,
    reads_responses,
    resolve_policy_class,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG_DIR.glob("*.yaml"))


class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str
    timeout_s: float = 10


class FakeConfig(PolicyConfig):
    type: Literal["fake"] = "fake"
    threshold: float = Field(default=0.5, ge=0, le=1)
    on_excess: Literal["clamp", "reject"] = "clamp"
    deny: list[str] = []
    judge: Judge | None = None


class FakePolicy(Policy[FakeConfig]):
    type = "fake"


class NeedsConfig(PolicyConfig):
    type: Literal["needs"] = "needs"
    limit: int


class NeedsPolicy(Policy[NeedsConfig]):
    type = "needs"


class ReadsPolicy(Policy[PolicyConfig]):
    type = "reads"
    observes_events = True

    def observe(self, event_type: str, payload: Any, request: Any) -> None:
        pass


REG: Registry = {
    "noop": POLICY_TYPES["noop"],
    "fake": f"{__name__}:FakePolicy",  # imported lazily, like the real registry
    "needs": NeedsPolicy,  # a class works too
    "reads": ReadsPolicy,
    "ghost": "extproc.policies.does_not_exist:GhostPolicy",
}


@pytest.fixture
def load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def load(text: str, env: dict[str, str] | None = None) -> PolicyFile:
        Path("cfg.yaml").write_text(text)
        return load_config("cfg.yaml", registry=REG, env=env or {})

    return load


def error(load, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    message = str(info.value)
    assert "validation error" not in message and "errors.pydantic.dev" not in message
    assert all(line.startswith("cfg.yaml: ") for line in message.splitlines())
    return message


# -- the example files, against the real policies ---------------------------------------


def _modules(path: Path) -> list[str]:
    """The policy modules an example file needs (to skip until they are written)."""
    doc = yaml.safe_load(path.read_text())
    chained = [entry for chain in (doc.get("chains") or {}).values() for entry in chain]
    entries = [*doc.get("policies", []), *chained]
    return sorted({POLICY_TYPES[entry["type"]].partition(":")[0] for entry in entries})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_loads_and_builds(path: Path) -> None:
    for module in _modules(path):
        pytest.importorskip(module)
    config = load_config(path, env={})
    chains = build_chains(config)
    assert chains["default"].names == [entry.type for entry in config.policies]
    for chain in chains.values():
        for policy in chain.policies:
            if hasattr(policy, "aclose"):
                await policy.aclose()


def test_examples_exist_and_strict_validates_streams() -> None:
    assert {p.name for p in EXAMPLES} == {
        "noop.yaml",
        "judge-mock.yaml",
        "strict.yaml",
        "approval.yaml",
    }
    assert yaml.safe_load((CONFIG_DIR / "strict.yaml").read_text())["validate_streams"] is True
    assert load_config(CONFIG_DIR / "noop.yaml").policies[0].type == "noop"


@pytest.mark.parametrize(("env", "port"), [({}, "9000"), ({"MOCK_LLM_PORT": "9123"}, "9123")])
def test_judge_mock_port_from_env(env: dict[str, str], port: str) -> None:
    pytest.importorskip("extproc.policies.tool_call_judge")
    config = load_config(CONFIG_DIR / "judge-mock.yaml", env=env)
    assert f"http://127.0.0.1:{port}/v1" in str(config.model_dump())


# -- error messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "policies:\n  - type: fake\n    threshold: 1.5\n",
            "policies[0] (fake): threshold: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            "policies:\n  - type: noop\n  - type: fake\n  - type: pii\n",
            "policies[2]: unknown policy type 'pii' (known: fake, ghost, needs, noop, reads)",
        ),
        (
            "policies:\n  - type: noop\n  - type: fake\n    denyy: [x]\n",
            "policies[1] (fake): unknown field 'denyy' (known: deny, judge, mode, name, "
            "on_excess, threshold, type)",
        ),
        ("policies: [{type: needs}]\n", "policies[0] (needs): limit: missing required field"),
        (
            "policies: [{type: fake, on_excess: clmap}]\n",
            "policies[0] (fake): on_excess: Input should be 'clamp' or 'reject' (got 'clmap')",
        ),
        (
            "policies: [{type: fake, mode: shdow}]\n",
            "policies[0] (fake): mode: Input should be 'enforce' or 'shadow' (got 'shdow')",
        ),
    ],
)
def test_field_errors(load, text: str, expected: str) -> None:
    assert error(load, text) == f"cfg.yaml: {expected}"


def test_nested_field_errors(load) -> None:
    message = error(load, "policies:\n  - type: fake\n    judge: {base_url: x, timeoutt: 1}\n")
    assert message.startswith("cfg.yaml: policies[0] (fake): judge: unknown field 'timeoutt'")
    message = error(load, "policies:\n  - type: fake\n    judge: {timeout_s: 1}\n")
    assert message == "cfg.yaml: policies[0] (fake): judge.base_url: missing required field"


def test_missing_and_bad_type(load) -> None:
    message = error(load, "policies:\n  - threshold: 0.5\n")
    assert message.startswith("cfg.yaml: policies[0]: missing 'type' (known: fake, ghost")
    assert "'type' must be a string" in error(load, "policies:\n  - type: 3\n")
    assert "policies[0]: expected a mapping such as {type: noop}, got str 'noop'" in error(
        load, "policies:\n  - noop\n"
    )
    assert "policies: expected a list of policy entries" in error(load, "policies: {type: x}\n")


def test_all_problems_reported_at_once(load) -> None:
    message = error(load, "policies: [{type: fake, threshold: 2}, {type: pii}]\nvalidate: 1\n")
    lines = message.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith(
        "cfg.yaml: unknown field 'validate' (known: audit, chains, limits, policies"
    )


def test_yaml_syntax_error_names_line(load) -> None:
    message = error(load, "policies:\n  - type: fake\n   threshold: 1\n")
    assert message.startswith("cfg.yaml: invalid YAML at line 3, column 4: ")
    assert "line 2" in error(load, "policies: []\npolicies: []\n")
    assert "duplicate key 'policies'" in error(load, "policies: []\npolicies: []\n")


def test_missing_empty_and_non_mapping_files(load) -> None:
    with pytest.raises(ConfigError, match=r"^nope\.yaml: file not found$"):
        load_config("nope.yaml")
    assert load("") == default_config()
    assert load("# only a comment\n").policies[0].type == "noop"
    assert "expected a mapping with 'policies'" in error(load, "- type: noop\n")


def test_policy_module_imported_only_when_used(load) -> None:
    assert load("policies: [{type: noop}]\n").policies[0].type == "noop"
    message = error(load, "policies: [{type: ghost}]\n")
    assert message.startswith("cfg.yaml: policies[0] (ghost): cannot load policy type 'ghost'")
    assert "No module named 'extproc.policies.does_not_exist'" in message


# -- environment expansion -------------------------------------------------------------


def test_env_expansion(load) -> None:
    text = (
        "policies:\n  - type: fake\n    threshold: ${T}\n    on_excess: ${MODE:-reject}\n"
        "    deny: ['${A}-${B:-b}', '$${LITERAL}', '${EMPTY:-fallback}']\n"
        "    judge: {base_url: 'http://h:${PORT:-9000}/v1', timeout_s: '${TO:-2.5}'}\n"
    )
    entry = load(text, {"T": "0.25", "A": "a", "EMPTY": ""}).policies[0]
    assert isinstance(entry, FakeConfig)
    assert (entry.threshold, entry.on_excess) == (0.25, "reject")
    assert entry.deny == ["a-b", "${LITERAL}", "fallback"]
    assert entry.judge == Judge(base_url="http://h:9000/v1", timeout_s=2.5)


def test_env_missing_variable(load) -> None:
    message = error(load, "policies:\n  - type: fake\n    judge: {base_url: 'http://${HOST}/v1'}\n")
    assert message == (
        "cfg.yaml: policies[0] (fake): judge.base_url: environment variable HOST is not set "
        "(write ${HOST:-default} to give a default)"
    )


def test_env_not_expanded_in_keys(load) -> None:
    message = error(load, "policies:\n  - type: fake\n    ${KEY:-deny}: [x]\n", {"KEY": "deny"})
    assert "unknown field '${KEY:-deny}'" in message


def test_env_from_os_environ(load, monkeypatch) -> None:
    monkeypatch.setenv("GW_TEST_T", "0.75")
    Path("cfg.yaml").write_text("policies: [{type: fake, threshold: '${GW_TEST_T}'}]\n")
    entry = load_config("cfg.yaml", registry=REG).policies[0]
    assert isinstance(entry, FakeConfig) and entry.threshold == 0.75


# -- chains ----------------------------------------------------------------------------


def test_named_chains(load) -> None:
    config = load(
        "policies: [{type: fake, name: first}, {type: noop}]\n"
        "chains:\n  admin: [{type: noop}]\n  locked: [{type: fake, threshold: 0.1}]\n"
        "validate_streams: true\n"
    )
    assert config.validate_streams is True
    chains = build_chains(config, REG)
    assert list(chains) == ["default", "admin", "locked"]
    assert chains["default"].names == ["first", "noop"]
    assert chains["locked"].policies[0].config.threshold == 0.1
    message = error(load, "chains:\n  admin: [{type: fake, threshold: -1}]\n")
    assert message.startswith("cfg.yaml: chains.admin[0] (fake): threshold: Input should be")
    assert "reserved" in error(load, "chains: {default: [{type: noop}]}\n")


def test_build_chain_preserves_order() -> None:
    entries = [FakeConfig(name="a"), NeedsConfig(limit=3), FakeConfig(name="b")]
    chain = build_chain([*entries, PolicyConfig(type="noop")], REG)  # bare config: revalidated
    assert chain.names == ["a", "needs", "b", "noop"]
    assert [type(p) for p in chain.policies] == [FakePolicy, NeedsPolicy, FakePolicy, NoOpPolicy]
    assert chain.policies[1].config.limit == 3


def test_default_config() -> None:
    config = default_config()
    assert (config.chains, config.validate_streams) == ({}, False)
    chains = build_chains(config)
    assert list(chains) == ["default"] and chains["default"].names == ["noop"]
    assert isinstance(chains, Chains) and chains.default is chains["default"]
    assert not chains["default"].reads_responses


# -- what the file asks of responses -----------------------------------------------------


def test_reads_responses_from_the_policy_classes(load) -> None:
    assert not reads_responses(default_config())
    assert not reads_responses(load("policies: [{type: noop}, {type: fake}]\n"), REG)
    assert reads_responses(load("policies: [{type: noop}, {type: reads}]\n"), REG)
    assert reads_responses(load("chains: {x: [{type: reads}]}\n"), REG)  # any chain
    # Stream validation is the gateway's question (Gateway.reads_responses), not the file's.
    assert not reads_responses(load("policies: [{type: noop}]\nvalidate_streams: true\n"), REG)


def test_reads_responses_of_the_real_policies() -> None:
    assert resolve_policy_class("all_caps") is AllCapsPolicy
    assert AllCapsPolicy.reads_responses() and not NoOpPolicy.reads_responses()
    assert reads_responses(PolicyFile.model_validate({"policies": [{"type": "all_caps"}]}))


def test_entries_of_every_chain(load) -> None:
    config = load(
        "policies: [{type: noop}]\nchains: {a: [{type: fake}], b: [{type: needs, limit: 1}]}\n"
    )
    assert [e.type for e in config.entries()] == ["noop", "fake", "needs"]


def test_resolve_policy_class_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown policy type 'noopp'.*did you mean 'noop'\?"):
        resolve_policy_class("noopp")
    with pytest.raises(ConfigError, match="is not a Policy subclass"):
        resolve_policy_class("x", {"x": "pathlib:Path"})
