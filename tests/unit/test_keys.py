"""The keys file: hashed keys, constant-time lookup, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from extproc.cli import main
from extproc.keys import (
    Caller,
    KeyRegistry,
    KeysError,
    digest,
    load_keys,
    new_key,
    presented_key,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    return path


def test_lookup_by_hash_and_env_keys(tmp_path: Path) -> None:
    key, sha = new_key()
    assert key.startswith("sk-gw-") and digest(key).hex() == sha
    path = write(
        tmp_path,
        f"callers:\n  - {{name: bot, key_sha256: {sha.upper()}, chain: strict,"
        f" allowed_models: ['claude-*']}}\n",
    )
    registry = KeyRegistry.build([SecretStr("sk-env")], str(path))
    bot = registry.lookup(key)
    assert bot is not None and bot.name == "bot" and bot.chain == "strict"
    assert bot.allows("claude-sonnet-5-5") and not bot.allows("gpt-4o")
    env = registry.lookup("sk-env")
    assert env is not None and env.chain == "default" and env.allows("anything")
    assert registry.lookup("sk-other") is None and registry.lookup(None) is None
    assert registry.chains() == {"strict", "default"}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("callers:\n  - {name: a, key_sha256: abc}\n", "callers[0] (a): key_sha256: must be"),
        (
            "callers:\n  - {name: a, key_sha256: " + "a" * 64 + ", chian: x}\n",
            "callers[0] (a): chian",
        ),
        ("callers:\n  - {key_sha256: " + "a" * 64 + "}\n", "callers[0]: name"),
        ("callers: [\n", "invalid YAML"),
        ("callers:\n  - {name: a, key_sha256: " + "1" * 64 + "}\n", "quoted string"),
        (
            "callers:\n  - {name: a, key_sha256: "
            + "a" * 64
            + "}\n  - {name: a, key_sha256: "
            + "b" * 64
            + "}\n",
            "caller names must be unique: a",
        ),
    ],
)
def test_bad_keys_file_names_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(KeysError, match=r"keys\.yaml: ") as info:
        load_keys(write(tmp_path, text))
    assert expected in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(KeysError, match="file not found"):
        load_keys("/nonexistent/keys.yaml")


def test_new_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-key", "--name", "ci"]) == 0
    out = capsys.readouterr().out
    key = out.split("shown once): ", 1)[1].split()[0]
    assert f"key_sha256: {digest(key).hex()}" in out and "name: ci" in out


def test_brings_own_key_and_its_former_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "callers:\n"
        f"  - {{name: a, key_sha256: '{'a' * 64}', brings_own_key: true}}\n"
        f"  - {{name: b, key_sha256: '{'b' * 64}', passthrough: true}}\n"
        f"  - {{name: c, key_sha256: '{'c' * 64}'}}\n",
    )
    assert [(c.name, c.brings_own_key) for c in load_keys(path)] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": " sk-1 "}, "sk-1"),
        ({"authorization": "Bearer sk-2"}, "sk-2"),
        ({"authorization": "bearer  sk-3 "}, "sk-3"),
        ({"x-api-key": "sk-1", "authorization": "Bearer sk-2"}, "sk-1"),
        ({"authorization": "Basic abc"}, None),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


def test_authenticate() -> None:
    team = Caller(name="team", digest=digest("sk-team"))
    own = Caller(name="claude-code", digest=digest("sk-cc"), brings_own_key=True)
    registry = KeyRegistry([team, own])
    assert registry.authenticate({"x-api-key": "sk-team"}) is team
    assert registry.authenticate({"authorization": "Bearer sk-team"}) is team
    # x-gateway-key wins: the other headers may carry a provider credential.
    assert registry.authenticate({"x-gateway-key": "sk-team", "x-api-key": "sk-ant-x"}) is team
    missing = "invalid or missing gateway key (send it as x-api-key or Authorization: Bearer)"
    assert registry.authenticate({}) == missing
    assert registry.authenticate({"x-api-key": "sk-wrong"}) == missing
    # A caller that brings its own provider key must send the gateway key apart from it.
    assert registry.authenticate({"x-gateway-key": "sk-cc", "x-api-key": "sk-ant-own"}) is own
    refused = registry.authenticate({"x-api-key": "sk-cc"})
    assert refused == (
        "this key brings its own provider key: send it as x-gateway-key, and your own "
        "provider key as x-api-key or Authorization"
    )
