"""Callers from a keys file: their own chains, allowed models, their own provider
credentials (brings_own_key), and the provider key injected in place of the gateway key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.keys import digest
from extproc.stack import Stack, free_port
from tests.helpers.stack import run_cli, running_stack

pytestmark = pytest.mark.e2e

KEYS = {name: f"sk-gw-test-{name}" for name in ("plain", "shouter", "gpt-only", "own-creds")}
PROVIDER_KEY = "sk-ant-provider-from-gateway-env"
CLIENT_KEY = "sk-ant-client-own-key"
MESSAGE = [{"role": "user", "content": "Repeat after me: hello there"}]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("keys")
    (log_dir / "policy.yaml").write_text(
        "policies: [{type: noop}]\nchains:\n  caps: [{type: all_caps}]\n"
    )
    entries = {
        "plain": "",
        "shouter": "chain: caps",
        "gpt-only": "allowed_models: ['gpt-*']",
        # The field's former name, still accepted as an alias of `brings_own_key: true`
        # (tests/e2e/test_routing.py uses the current name).
        "own-creds": "passthrough: true",
    }
    (log_dir / "keys.yaml").write_text(
        "callers:\n"
        + "".join(
            f"  - {{name: {n}, key_sha256: '{digest(KEYS[n]).hex()}'"
            + (f", {extra}" if extra else "")
            + "}\n"
            for n, extra in entries.items()
        )
    )
    mock_port = free_port()
    with running_stack(
        log_dir,
        mock_port=mock_port,
        policy_config=str(log_dir / "policy.yaml"),
        keys_file=str(log_dir / "keys.yaml"),
        # The mock plays the real Anthropic API: the gateway injects its own key.
        upstream_anthropic_url=f"http://127.0.0.1:{mock_port}",
        anthropic_api_key=SecretStr(PROVIDER_KEY),
        # A URL for OpenAI too: with a caller bringing its own key, a keyless provider without
        # one would get a cluster for the real API (and Envoy would resolve its name).
        upstream_openai_url=f"http://127.0.0.1:{mock_port}",
    ) as st:
        yield st


def _claude(st: Stack, key: str, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=st.base_url, api_key=key, max_retries=0, **kw)  # type: ignore[arg-type]


def _last_request(st: Stack) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"http://127.0.0.1:{st.settings.mock_port}/_mock/requests").json()[-1]


def _ask(client: anthropic.Anthropic) -> str:
    msg = client.messages.create(model="claude-sonnet-5-5", max_tokens=50, messages=MESSAGE)
    return msg.content[0].text  # type: ignore[union-attr]


def test_caller_gets_its_chain_and_provider_key_replaces_gateway_key(keyed: Stack) -> None:
    assert _ask(_claude(keyed, KEYS["plain"])) == "hello there"
    headers = _last_request(keyed)["headers"]
    assert headers["x-api-key"] == PROVIDER_KEY and KEYS["plain"] not in str(headers)
    assert _ask(_claude(keyed, KEYS["shouter"])) == "HELLO THERE"


def test_model_not_allowed_is_403(keyed: Stack) -> None:
    with pytest.raises(anthropic.PermissionDeniedError, match="may not use model"):
        _ask(_claude(keyed, KEYS["gpt-only"]))
    oai = openai.OpenAI(base_url=f"{keyed.base_url}/v1", api_key=KEYS["gpt-only"], max_retries=0)
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGE)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "hello there"


def test_caller_bringing_its_own_key_sends_its_own_provider_key(keyed: Stack) -> None:
    client = _claude(keyed, CLIENT_KEY, default_headers={"x-gateway-key": KEYS["own-creds"]})
    assert _ask(client) == "hello there"
    headers = _last_request(keyed)["headers"]
    # anthropic 2.x sends its api_key as Authorization: Bearer; it arrives as sent.
    assert CLIENT_KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert PROVIDER_KEY not in str(headers)
    assert "x-gateway-key" not in headers and KEYS["own-creds"] not in str(headers)
    # The same key in x-api-key is refused: it would be sent to the provider.
    with pytest.raises(
        anthropic.AuthenticationError,
        match="this key brings its own provider key: send it as x-gateway-key",
    ):
        _ask(_claude(keyed, KEYS["own-creds"]))


@pytest.mark.parametrize("key", [DEV_GATEWAY_KEY, "sk-gw-unknown"])
def test_unknown_and_dev_keys_refused_with_a_keys_file(keyed: Stack, key: str) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        _ask(_claude(keyed, key))


def _oai(st: Stack, key: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=key, max_retries=0, **kw)  # type: ignore[arg-type]


AUTH_CASES = {
    "unknown-key": ("sk-gw-unknown", {}),
    "dev-key-with-keys-file": (DEV_GATEWAY_KEY, {}),
    "own-key-caller-key-as-api-key": (KEYS["own-creds"], {}),
    "unknown-gateway-key-header": (CLIENT_KEY, {"x-gateway-key": "sk-gw-unknown"}),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
def test_every_auth_failure_is_the_sdks_own_exception(keyed: Stack, case: str) -> None:
    key, headers = AUTH_CASES[case]
    with pytest.raises(anthropic.AuthenticationError) as a_err:
        _ask(_claude(keyed, key, default_headers=headers))
    assert a_err.value.status_code == 401
    assert a_err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError) as o_err:
        _oai(keyed, key, default_headers=headers).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGE,  # type: ignore[arg-type]
        )
    assert o_err.value.status_code == 401 and o_err.value.code == "invalid_api_key"
    for err in (a_err.value, o_err.value):
        assert key not in str(err.body) and "sk-gw-unknown" not in str(err.body)


def test_missing_key_is_401_in_each_format(keyed: Stack) -> None:
    body = {"model": "claude-sonnet-5-5", "max_tokens": 5, "messages": MESSAGE}
    resp = httpx.post(f"{keyed.base_url}/v1/messages", json=body)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    resp = httpx.post(f"{keyed.base_url}/v1/chat/completions", json=body)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


def test_model_not_allowed_is_permission_denied_in_the_openai_sdk_too(keyed: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="may not use model") as err:
        _oai(keyed, KEYS["gpt-only"]).chat.completions.create(
            model="claude-sonnet-5-5",
            messages=MESSAGE,  # type: ignore[arg-type]
        )
    assert err.value.status_code == 403


def test_log_names_callers_not_keys(keyed: Stack) -> None:
    log = (Path(keyed.log_dir or ".") / "extproc.log").read_text()
    assert '"caller":"shouter"' in log
    assert not any(key in log for key in (*KEYS.values(), PROVIDER_KEY, CLIENT_KEY))


def test_bad_keys_file_stops_start(tmp_path: Path) -> None:
    bad = tmp_path / "keys.yaml"
    bad.write_text("callers:\n  - {name: x, key_sha256: 'nothex'}\n")
    env = {**os.environ, "GATEWAY_KEYS_FILE": str(bad), "GATEWAY_PORT": str(free_port())}
    done = run_cli("run", env)
    assert done.returncode != 0
    assert "callers[0] (x): key_sha256" in done.stderr
