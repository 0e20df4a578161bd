"""Settings from the environment: every variable, the round trip to a child process's
environment, bad values, URL checks, which keys are accepted."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from extproc.config import (
    DEFAULT_CA_BUNDLE,
    DEV_GATEWAY_KEY,
    ENV_VARS,
    Settings,
    check_url,
    usable_cores,
)
from extproc.core.providers import ProviderApi

EVERY_VARIABLE = {
    "GATEWAY_API_KEYS": "sk-one,sk-two",
    "GATEWAY_KEYS_FILE": "/etc/gw/keys.yaml",
    "GATEWAY_HOST": "0.0.0.0",
    "GATEWAY_PORT": "8100",
    "ENVOY_ADMIN_PORT": "9911",
    "EXTPROC_PORT": "50100",
    "EXTPROC_WORKERS": "3",
    "EXTPROC_HOST": "extproc",
    "EXTPROC_LISTEN": "0.0.0.0",
    "MOCK_LLM_PORT": "9100",
    "MOCK_LLM_HOST": "mock-llm",
    "ANTHROPIC_API_KEY": "sk-ant",
    "OPENAI_API_KEY": "sk-oai",
    "UPSTREAM_ANTHROPIC_URL": "http://127.0.0.1:7000",
    "UPSTREAM_OPENAI_URL": "https://proxy.example/v1",
    "MAX_REQUEST_BYTES": "1000",
    "MAX_RESPONSE_BYTES": "2000",
    "MAX_SSE_FRAME_BYTES": "3000",
    "POLICY_TIMEOUT_S": "2.5",
    "POLICY_CONFIG": "/etc/gw/policy.yaml",
    "VALIDATE_STREAMS": "true",
    "RESPONSE_PROCESSING": "always",
    "CA_BUNDLE": "/etc/gw/ca.pem",
    "AUDIT_ENABLED": "false",
    "AUDIT_DB": "/var/lib/gw/audit.db",
    "AUDIT_DATABASE_URL": "postgresql://gw:pw@db:5432/audit",
    "AUDIT_RETENTION_DAYS": "7",
    "GATEWAY_ADMIN_HOST": "0.0.0.0",
    "GATEWAY_ADMIN_PORT": "8101",
    "GATEWAY_ADMIN_KEY": "adm-secret",
    "GATEWAY_ADMIN_KEYS": "alice:alice-secret-1,bob@ops:bob-secret-22",
    "GATEWAY_ADMIN_URL": "https://gw-admin.example",
    "KEEPALIVE_INTERVAL_S": "5",
    "EXTPROC_UDS_DIR": "/run/llm-gateway",
    "RATE_LIMIT_REDIS_URL": "redis://:pw@cache:6379/2",
    "EXTPROC_MAX_STREAMS": "64",
    "DRAIN_TIMEOUT_S": "30",
}


def test_every_variable_is_read() -> None:
    assert set(EVERY_VARIABLE) == {"GATEWAY_API_KEYS", *ENV_VARS.values()}
    s = Settings.from_env(EVERY_VARIABLE)
    assert s.gateway_keys is not None
    assert [k.get_secret_value() for k in s.gateway_keys] == ["sk-one", "sk-two"]
    assert (s.host, s.gateway_port, s.admin_port) == ("0.0.0.0", 8100, 9911)
    assert (s.extproc_host, s.extproc_listen, s.extproc_port, s.extproc_workers) == (
        "extproc",
        "0.0.0.0",
        50100,
        3,
    )
    assert (s.mock_host, s.mock_port) == ("mock-llm", 9100)
    assert s.anthropic_api_key == SecretStr("sk-ant") and s.openai_api_key == SecretStr("sk-oai")
    assert s.upstream_url(ProviderApi.ANTHROPIC) == "http://127.0.0.1:7000"
    assert s.upstream_url(ProviderApi.OPENAI) == "https://proxy.example/v1"
    assert (s.max_request_bytes, s.max_response_bytes, s.max_sse_frame_bytes) == (1000, 2000, 3000)
    assert (s.policy_timeout_s, s.policy_config, s.keys_file) == (
        2.5,
        "/etc/gw/policy.yaml",
        "/etc/gw/keys.yaml",
    )
    assert s.validate_streams is True and s.response_processing == "always"
    assert s.ca_bundle == "/etc/gw/ca.pem"
    assert (s.audit_enabled, s.audit_db, s.audit_retention_days) == (
        False,
        "/var/lib/gw/audit.db",
        7,
    )
    assert s.audit_database_url == SecretStr("postgresql://gw:pw@db:5432/audit")
    assert (s.gateway_admin_host, s.gateway_admin_port) == ("0.0.0.0", 8101)
    assert s.gateway_admin_key == SecretStr("adm-secret")
    assert s.rate_limit_redis_url == SecretStr("redis://:pw@cache:6379/2")
    assert s.extproc_max_streams == 64
    assert s.drain_timeout_s == 30
    assert s.admin_keys() == {
        "adm-secret": "admin",
        "alice-secret-1": "alice",
        "bob-secret-22": "bob@ops",
    }
    assert s.admin_base_url() == "https://gw-admin.example"
    assert s.keepalive_interval_s == 5
    assert s.extproc_address(50100) == "unix:/run/llm-gateway/extproc-50100.sock"


@pytest.mark.parametrize(
    "value", ["alice=key-123456", "alice:short", ":key-123456", "a b:key-123456"]
)
def test_named_admin_keys_are_checked_without_echoing_them(value: str) -> None:
    with pytest.raises(ValidationError, match="name:key") as err:
        Settings.from_env({"GATEWAY_ADMIN_KEYS": value})
    assert "key-123456" not in str(err.value) and "short" not in str(err.value)


def test_the_limit_counters_must_be_redis() -> None:
    with pytest.raises(ValidationError, match="redis://") as err:
        Settings.from_env({"RATE_LIMIT_REDIS_URL": "memcached://u:hunter2@db/x"})
    assert "hunter2" not in str(err.value)


def test_the_audit_database_must_be_postgresql() -> None:
    with pytest.raises(ValidationError, match="postgresql://") as err:
        Settings.from_env({"AUDIT_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("env", [EVERY_VARIABLE, {}, {"GATEWAY_API_KEYS": "sk-x"}])
def test_to_env_round_trip(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert Settings.from_env(settings.to_env()) == settings
    # Secrets are written out in full: the child needs them.
    assert "sk-ant" not in str(settings) and "sk-one" not in repr(settings)
    assert "adm-secret" not in repr(settings) and "pw@db" not in repr(settings)
    if env is EVERY_VARIABLE:
        assert settings.to_env()["ANTHROPIC_API_KEY"] == "sk-ant"
        assert settings.to_env()["GATEWAY_API_KEYS"] == "sk-one,sk-two"


def test_defaults_and_blank_values() -> None:
    blank = {var: "  " for var in ENV_VARS.values()} | {"GATEWAY_API_KEYS": " , ,"}
    assert Settings.from_env(blank) == Settings.from_env({}) == Settings()
    s = Settings()
    assert s.gateway_keys is None and s.ca_bundle == DEFAULT_CA_BUNDLE
    assert (s.host, s.gateway_port, s.extproc_port, s.extproc_workers) == (
        "127.0.0.1",
        8000,
        50051,
        1,
    )
    assert s.response_processing == "auto" and s.policy_timeout_s == 60.0
    assert Settings.from_env({"GATEWAY_API_KEYS": " a , ,b "}).gateway_keys == (
        SecretStr("a"),
        SecretStr("b"),
    )


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "8777")
    monkeypatch.setenv("CA_BUNDLE", "/from/os.pem")
    s = Settings.from_env()
    assert s.gateway_port == 8777 and s.ca_bundle == "/from/os.pem"


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("GATEWAY_PORT", "70000", "gateway_port"),
        ("GATEWAY_PORT", "http", "gateway_port"),
        ("ENVOY_ADMIN_PORT", "0", "admin_port"),
        ("EXTPROC_WORKERS", "0", "extproc_workers"),
        ("EXTPROC_WORKERS", "65", "extproc_workers"),
        ("MAX_REQUEST_BYTES", "-1", "max_request_bytes"),
        ("MAX_SSE_FRAME_BYTES", "0", "max_sse_frame_bytes"),
        ("POLICY_TIMEOUT_S", "0", "policy_timeout_s"),
        ("VALIDATE_STREAMS", "maybe", "validate_streams"),
        ("RESPONSE_PROCESSING", "sometimes", "response_processing"),
        ("UPSTREAM_OPENAI_URL", "ftp://user:hunter2@h", "upstream_openai_url"),
        ("UPSTREAM_ANTHROPIC_URL", "http://999.1.1.1", "upstream_anthropic_url"),
    ],
)
def test_bad_values_are_rejected_naming_the_setting(var: str, value: str, field: str) -> None:
    """The error names the setting (its field; `llm-gateway` prints "invalid configuration
    in <field>"), and a URL's value is never echoed."""
    assert ENV_VARS[field] == var
    with pytest.raises(ValidationError) as err:
        Settings.from_env({var: value})
    assert [e["loc"] for e in err.value.errors()] == [(field,)]
    if "URL" in var:
        assert "hunter2" not in err.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9000",
        "http://mock-llm:9000",
        "http://my_vllm:8000/v1",  # compose service names may hold '_'
        "https://API.OpenAI.com/v1/",
        "http://10.0.0.7:8080",
        "https://llm.internal.example/openai/v1",
        "http://h:65535/a/b~c%20d",
    ],
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h", "must be an http(s) URL"),
        ("api.openai.com", "must be an http(s) URL"),
        ("https//admin:hunter2@vllm.internal/v1", "must be an http(s) URL"),
        ("https://u:hunter2@h", "must not carry credentials, a query or a fragment"),
        ("https://h/v1?key=hunter2", "must not carry credentials, a query or a fragment"),
        ("https://h/v1#hunter2", "must not carry credentials, a query or a fragment"),
        ("http://", "must name a host"),
        ("http://999.1.1.1", "must name a host"),
        ("http://a..b", "must name a host"),
        ("http://-h", "must name a host"),
        ("http://vllm}x/v1", "must name a host"),
        ("http://[::1]:8000", "must name a host"),  # IPv6 literals are not supported
        ("http://h:0", "has an invalid port"),
        ("http://h:99999/v1", "has an invalid port"),
        ("http://h:x", "has an invalid port"),
        ("http://h/a b", "has a path"),
    ],
)
def test_check_url_refuses_without_echoing(url: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        check_url(url)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("url", ["http://h/a\nb", "http://vl\tlm:8000/v1", "http://h/v1\r"])
def test_check_url_refuses_control_characters(url: str) -> None:
    """urlsplit drops tabs and line breaks before parsing, so the parts checked are not
    the value returned (kept as the provider's base_url, hashed into its cluster name and
    logged at start)."""
    with pytest.raises(ValueError):
        check_url(url)


def test_env_keys_dev_key_rule() -> None:
    assert [k.get_secret_value() for k in Settings().env_keys] == [DEV_GATEWAY_KEY]
    # With a keys file, the development key is no longer accepted...
    assert Settings(keys_file="keys.yaml").env_keys == ()
    # ... and configured keys are the only ones, with or without a file.
    keys = (SecretStr("sk-a"),)
    assert Settings(gateway_keys=keys).env_keys == keys
    assert Settings(gateway_keys=keys, keys_file="keys.yaml").env_keys == keys


def test_ca_bundle_from_ca_bundle() -> None:
    assert Settings.from_env({"CA_BUNDLE": "/opt/ca.pem"}).ca_bundle == "/opt/ca.pem"
    assert Settings.from_env({}).ca_bundle == DEFAULT_CA_BUNDLE
    assert Settings(ca_bundle="/x.pem").to_env()["CA_BUNDLE"] == "/x.pem"


def test_provider_keys_by_variable_name() -> None:
    s = Settings(anthropic_api_key=SecretStr("sk-a"))
    assert s.provider_key("ANTHROPIC_API_KEY") == SecretStr("sk-a")
    assert s.provider_key("OPENAI_API_KEY") is None
    assert s.provider_key("TEAM_KEY") is None  # other variables: the environment's


def test_workers_auto_is_one_per_core() -> None:
    assert Settings.from_env({"EXTPROC_WORKERS": "auto"}).extproc_workers == min(usable_cores(), 64)
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert Settings.from_env({"EXTPROC_WORKERS": "3"}).extproc_workers == 3
