"""The one builder of a gateway's configuration: files read and checked once, callers,
router, whether responses pass through ext_proc, and the runtime a process serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.gateway import Gateway, GatewayError, Runtime
from extproc.keys import digest
from extproc.policy_config import default_config

SHA = digest("sk-bot").hex()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_load_without_files() -> None:
    gateway = Gateway.load(Settings(), env={})
    assert gateway.policy_file == default_config()
    assert gateway.keys.lookup(DEV_GATEWAY_KEY) is not None
    assert set(gateway.router.upstreams) == {"anthropic", "openai"}
    assert not gateway.validate_streams and not gateway.reads_responses
    assert not gateway.brings_own_key_callers


def test_load_reads_the_files_once_and_builds_keys_and_router(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.yaml",
        "policies: [{type: all_caps}]\n"
        "chains: {strict: [{type: noop}]}\n"
        "providers: {local: {api: openai, base_url: 'http://${HOST}:8000/v1', key_env: LK}}\n"
        "routes: [{models: ['llama-*'], provider: local}]\n",
    )
    keys = write(
        tmp_path, "keys.yaml", f"callers: [{{name: bot, key_sha256: '{SHA}', chain: strict}}]\n"
    )
    settings = Settings(policy_config=policy, keys_file=keys)
    gateway = Gateway.load(settings, env={"HOST": "vllm", "LK": "sk-local"})
    Path(policy).unlink()
    Path(keys).unlink()  # everything was read at load
    local = gateway.router.for_model("llama-3")
    assert local is not None and local.base_url == "http://vllm:8000/v1"
    assert local.api_key is not None and local.api_key.get_secret_value() == "sk-local"
    assert gateway.router.for_model("claude-x") is None  # the file's routes replace the table
    # With a keys file and no GATEWAY_API_KEYS, only its callers are accepted.
    assert [c.name for c in gateway.keys.callers] == ["bot"]
    assert gateway.keys.lookup(DEV_GATEWAY_KEY) is None
    runtime = gateway.runtime()
    assert isinstance(runtime, Runtime) and runtime.gateway is gateway
    assert runtime.settings is settings
    assert list(runtime.chains) == ["default", "strict"]
    assert runtime.chains.default.names == ["all_caps"]
    assert runtime.chains["strict"].names == ["noop"]


def test_each_runtime_has_its_own_policies() -> None:
    gateway = Gateway.load(Settings(), env={})
    first, second = gateway.runtime(), gateway.runtime()
    assert first.chains.default.policies[0] is not second.chains.default.policies[0]
    assert gateway.build_chains().default.names == ["noop"]


def test_default_env_is_this_process_with_the_settings_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an ext_proc child is started with: `${MOCK_LLM_PORT}` in the policy file is
    the settings' mock port, a provider's key_env is read from the environment."""
    monkeypatch.setenv("MOCK_LLM_PORT", "1111")  # the settings win over it
    monkeypatch.setenv("GW_TEST_LOCAL_KEY", "sk-from-environ")
    policy = write(
        tmp_path,
        "policy.yaml",
        "providers:\n"
        "  local: {api: openai, base_url: 'http://127.0.0.1:${MOCK_LLM_PORT}/v1',"
        " key_env: GW_TEST_LOCAL_KEY}\n",
    )
    gateway = Gateway.load(Settings(policy_config=policy, mock_port=9123))
    local = gateway.router.upstreams["local"]
    assert local.port == 9123
    assert local.api_key is not None and local.api_key.get_secret_value() == "sk-from-environ"


@pytest.mark.parametrize(
    ("policy", "keys", "message"),
    [
        ("policies: [{type: nope}]\n", None, "{policy}: policies[0]: unknown policy type 'nope'"),
        (
            "providers: {x: {api: gemini}}\n",
            None,
            "{policy}: providers.x.api: Input should be 'anthropic' or 'openai'",
        ),
        (
            "routes: [{models: ['x-*'], provider: vllm}]\n",
            None,
            "{policy}: routes[0].provider: no provider named 'vllm'",
        ),
        (None, "callers: [{name: a, key_sha256: abc}]\n", "{keys}: callers[0] (a): key_sha256"),
        (
            "policies: [{type: noop}]\n",
            f"callers: [{{name: a, key_sha256: '{SHA}', chain: ghost}}]\n",
            "{keys}: callers use policy chains that {policy} does not define: ghost",
        ),
        (
            None,
            f"callers: [{{name: a, key_sha256: '{SHA}', chain: ghost}}]\n",
            "{keys}: callers use policy chains that the (absent) policy file does not define: "
            "ghost",
        ),
    ],
)
def test_bad_configuration_names_the_file(
    tmp_path: Path, policy: str | None, keys: str | None, message: str
) -> None:
    policy_path = write(tmp_path, "policy.yaml", policy) if policy is not None else None
    keys_path = write(tmp_path, "keys.yaml", keys) if keys is not None else None
    settings = Settings(policy_config=policy_path, keys_file=keys_path)
    with pytest.raises(GatewayError) as err:
        Gateway.load(settings, env={})
    assert str(err.value).startswith(message.format(policy=policy_path, keys=keys_path))


@pytest.mark.parametrize("name", ["policy_config", "keys_file"])
def test_missing_file_names_it(tmp_path: Path, name: str) -> None:
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(GatewayError, match=r"missing\.yaml: file not found"):
        Gateway.load(Settings.model_validate({name: missing}), env={})


@pytest.mark.parametrize(
    ("policy", "settings", "reads"),
    [
        ("policies: [{type: noop}]\n", {}, False),
        ("policies: [{type: request_guard, max_tokens: 10}]\n", {}, False),  # requests only
        ("policies: [{type: all_caps}]\n", {}, True),
        ("chains: {loud: [{type: all_caps}]}\n", {}, True),  # any chain counts
        ("policies: [{type: noop}]\nvalidate_streams: true\n", {}, True),
        ("policies: [{type: noop}]\n", {"validate_streams": True}, True),
        ("policies: [{type: noop}]\n", {"response_processing": "always"}, True),
    ],
)
def test_reads_responses(
    tmp_path: Path, policy: str, settings: dict[str, object], reads: bool
) -> None:
    path = write(tmp_path, "policy.yaml", policy)
    gateway = Gateway.load(Settings.model_validate({"policy_config": path, **settings}), env={})
    assert gateway.reads_responses is reads


def test_validate_streams_from_the_settings_or_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "validate_streams: true\n")
    assert Gateway.load(Settings(policy_config=path), env={}).validate_streams
    assert Gateway.load(Settings(validate_streams=True), env={}).validate_streams
    assert not Gateway.load(Settings(), env={}).validate_streams


@pytest.mark.parametrize(
    ("field", "brings"), [("brings_own_key: true", True), ("passthrough: true", True), ("", False)]
)
def test_brings_own_key_callers(tmp_path: Path, field: str, brings: bool) -> None:
    extra = f", {field}" if field else ""
    keys = write(tmp_path, "keys.yaml", f"callers: [{{name: cc, key_sha256: '{SHA}'{extra}}}]\n")
    settings = Settings(keys_file=keys, gateway_keys=(SecretStr("sk-env"),))
    gateway = Gateway.load(settings, env={})
    assert gateway.brings_own_key_callers is brings
    assert {c.name for c in gateway.keys.callers} == {"GATEWAY_API_KEYS[0]", "cc"}


APPROVAL = "policies:\n  - type: tool_approval\n    approval: {timeout_s: 300}\n"


def test_approvals_need_the_audit_store(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", APPROVAL)
    with pytest.raises(GatewayError, match="needs AUDIT_ENABLED"):
        Gateway.load(Settings(policy_config=policy, audit_enabled=False), env={})
    # In shadow mode nobody is asked: nothing is needed.
    shadow = write(
        tmp_path, "shadow.yaml", APPROVAL.replace("approval:", "mode: shadow\n    approval:")
    )
    Gateway.load(Settings(policy_config=shadow, audit_enabled=False), env={})


def test_every_route_must_stay_open_while_a_call_waits(tmp_path: Path) -> None:
    short = APPROVAL + (
        "providers:\n  local: {api: openai, base_url: 'http://127.0.0.1:9', idle_timeout_s: 120}\n"
    )
    policy = write(tmp_path, "policy.yaml", short)
    with pytest.raises(GatewayError, match=r"provider 'local' closes a silent request after "
                       r"idle_timeout_s=120.*raise idle_timeout_s above 330"):  # fmt: skip
        Gateway.load(Settings(policy_config=policy), env={})
    # The built-in providers keep streams open 600 s: a 300 s wait fits.
    Gateway.load(Settings(policy_config=write(tmp_path, "ok.yaml", APPROVAL)), env={})
    # A keepalive must come well within the idle timeout too.
    with pytest.raises(GatewayError, match="keepalive every 400s"):
        Gateway.load(
            Settings(
                policy_config=write(tmp_path, "ok2.yaml", APPROVAL), keepalive_interval_s=300
            ).model_copy(update={"keepalive_interval_s": 400}),
            env={},
        )
