"""Gateway settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

DEV_GATEWAY_KEY = "sk-luthien-dev-key"

ANTHROPIC_API_BASE = "https://api.anthropic.com"
OPENAI_API_BASE = "https://api.openai.com"


# Settings field -> environment variable (besides GATEWAY_API_KEYS).
ENV_VARS = {
    "host": "GATEWAY_HOST",
    "gateway_port": "GATEWAY_PORT",
    "admin_port": "ENVOY_ADMIN_PORT",
    "extproc_port": "EXTPROC_PORT",
    "extproc_workers": "EXTPROC_WORKERS",
    "extproc_host": "EXTPROC_HOST",
    "extproc_listen": "EXTPROC_LISTEN",
    "mock_port": "MOCK_LLM_PORT",
    "mock_host": "MOCK_LLM_HOST",
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "openai_api_key": "OPENAI_API_KEY",
    "upstream_anthropic_url": "UPSTREAM_ANTHROPIC_URL",
    "upstream_openai_url": "UPSTREAM_OPENAI_URL",
    "max_request_bytes": "MAX_REQUEST_BYTES",
    "max_response_bytes": "MAX_RESPONSE_BYTES",
    "max_sse_frame_bytes": "MAX_SSE_FRAME_BYTES",
    "policy_timeout_s": "POLICY_TIMEOUT_S",
    "policy_config": "POLICY_CONFIG",
    "validate_streams": "VALIDATE_STREAMS",
    "response_processing": "RESPONSE_PROCESSING",
    "keys_file": "GATEWAY_KEYS_FILE",
}


class Upstream(BaseModel):
    """Where one provider's traffic goes: the real API, an override, or the mock."""

    name: str
    base_url: str
    api_key: SecretStr | None = None
    is_mock: bool = False

    @property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def path_prefix(self) -> str:
        """Path before `/v1/...`; a trailing `/v1` (SDK-style base URLs) is dropped."""
        path = urlsplit(self.base_url).path.rstrip("/")
        return path.removesuffix("/v1")


class Settings(BaseModel):
    # GATEWAY_API_KEYS; None: the development key, unless a keys file is configured.
    gateway_keys: tuple[SecretStr, ...] | None = None
    keys_file: str | None = None
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    admin_port: int = 9901
    extproc_port: int = 50051
    # ext_proc server processes, on ports extproc_port, extproc_port + 1, ...; Envoy
    # balances requests across them. Python runs one core per process.
    extproc_workers: int = Field(default=1, ge=1, le=64)
    # Where Envoy reaches the ext_proc server, and where that server listens: both
    # loopback on one host or in a pod; a service name and 0.0.0.0 under compose.
    extproc_host: str = "127.0.0.1"
    extproc_listen: str = "127.0.0.1"
    mock_port: int = 9000
    mock_host: str = "127.0.0.1"
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    upstream_anthropic_url: str | None = None
    upstream_openai_url: str | None = None
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_sse_frame_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Upper bound for the policy work on one chunk: Envoy applies no per-message
    # timeout in FULL_DUPLEX_STREAMED mode, so a stuck policy would hang the client.
    policy_timeout_s: float = Field(default=60.0, gt=0)
    # The policy YAML file (config/*.yaml); none means the noop chain.
    policy_config: str | None = None
    # Check every response stream against the invariants and log violations.
    validate_streams: bool = False
    # auto: response bodies go through ext_proc only when a policy looks at them (noop
    # alone: Envoy streams them straight to the client). always: every response does,
    # which also repairs truncated upstream streams and rewrites plain-text error pages.
    response_processing: Literal["auto", "always"] = "auto"

    @field_validator("upstream_anthropic_url", "upstream_openai_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL such as http://127.0.0.1:9000, got {value!r}")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        values: dict[str, object] = {}
        keys = [k.strip() for k in env.get("GATEWAY_API_KEYS", "").split(",") if k.strip()]
        if keys:
            values["gateway_keys"] = tuple(SecretStr(k) for k in keys)
        for field_name, var in ENV_VARS.items():
            value = opt(var)
            if value is not None:
                values[field_name] = value
        return cls.model_validate(values)

    @property
    def env_keys(self) -> tuple[SecretStr, ...]:
        """Keys accepted besides the keys file: the development key only when nothing
        else was configured, so a real deployment never accepts it by accident."""
        if self.gateway_keys is not None:
            return self.gateway_keys
        return () if self.keys_file else (SecretStr(DEV_GATEWAY_KEY),)

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` rebuild these settings in a child."""
        env: dict[str, str] = {}
        if self.gateway_keys is not None:
            env["GATEWAY_API_KEYS"] = ",".join(k.get_secret_value() for k in self.gateway_keys)
        for field_name, var in ENV_VARS.items():
            value = getattr(self, field_name)
            if value is None:
                continue
            env[var] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env

    def _upstream(self, name: str, url: str | None, key: SecretStr | None, real: str) -> Upstream:
        if url:
            return Upstream(name=name, base_url=url, api_key=key)
        if key is not None:
            return Upstream(name=name, base_url=real, api_key=key)
        return Upstream(
            name=name, base_url=f"http://{self.mock_host}:{self.mock_port}", is_mock=True
        )

    @property
    def anthropic(self) -> Upstream:
        return self._upstream(
            "anthropic", self.upstream_anthropic_url, self.anthropic_api_key, ANTHROPIC_API_BASE
        )

    @property
    def openai(self) -> Upstream:
        return self._upstream(
            "openai", self.upstream_openai_url, self.openai_api_key, OPENAI_API_BASE
        )

    @property
    def needs_mock(self) -> bool:
        return self.anthropic.is_mock or self.openai.is_mock
