"""Gateway settings, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from extproc.contract import DEFAULT_MAX_STREAMS, MAX_CONCURRENT_STREAMS
from extproc.core.providers import ProviderApi

DEV_GATEWAY_KEY = "sk-luthien-dev-key"
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_AUDIT_DB = ".llm-gateway/audit.db"  # under the working directory


# Settings field -> environment variable (besides GATEWAY_API_KEYS).
ENV_VARS = {
    "host": "GATEWAY_HOST",
    "gateway_port": "GATEWAY_PORT",
    "admin_port": "ENVOY_ADMIN_PORT",
    "extproc_port": "EXTPROC_PORT",
    "extproc_workers": "EXTPROC_WORKERS",
    "extproc_host": "EXTPROC_HOST",
    "extproc_listen": "EXTPROC_LISTEN",
    "extproc_uds_dir": "EXTPROC_UDS_DIR",
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
    "ca_bundle": "CA_BUNDLE",
    "audit_enabled": "AUDIT_ENABLED",
    "audit_db": "AUDIT_DB",
    "audit_database_url": "AUDIT_DATABASE_URL",
    "audit_retention_days": "AUDIT_RETENTION_DAYS",
    "gateway_admin_host": "GATEWAY_ADMIN_HOST",
    "gateway_admin_port": "GATEWAY_ADMIN_PORT",
    "gateway_admin_key": "GATEWAY_ADMIN_KEY",
    "gateway_admin_keys": "GATEWAY_ADMIN_KEYS",
    "gateway_admin_url": "GATEWAY_ADMIN_URL",
    "keepalive_interval_s": "KEEPALIVE_INTERVAL_S",
    "rate_limit_redis_url": "RATE_LIMIT_REDIS_URL",
    "extproc_max_streams": "EXTPROC_MAX_STREAMS",
    "drain_timeout_s": "DRAIN_TIMEOUT_S",
}


def usable_cores() -> int:
    """The cores this process may run on (its affinity, and a cgroup's CPU quota where
    one is set, as in a container with a CPU limit), not the machine's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores or 1, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores or 1


_ADMIN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def parse_admin_keys(text: str) -> list[tuple[str, str]]:
    """`name:key,name:key` as (name, key) pairs. Errors never echo a key."""
    pairs: list[tuple[str, str]] = []
    for n, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, key = item.partition(":")
        if not sep or not _ADMIN_NAME.fullmatch(name.strip()) or len(key.strip()) < 8:
            raise ValueError(
                f"entry {n + 1} must be name:key (a name of letters, digits, '.', '_', '@', "
                "'-', and a key of at least 8 characters)"
            )
        pairs.append((name.strip(), key.strip()))
    return pairs


# Set by `llm-gateway run` for its children: the process that reloads them all.
SUPERVISOR_ENV = "LLM_GATEWAY_SUPERVISOR_PID"
# Set for an ext_proc worker the supervisor started again after a crash.
RESTARTED_ENV = "LLM_GATEWAY_WORKER_RESTARTED"
# Where `llm-gateway run` leaves its process id for `llm-gateway reload`.
PID_FILE = ".llm-gateway/gateway.pid"

# A host Envoy's YAML and its socket_address take as they are: DNS labels (with '_', as
# in compose service names) or an IPv4 address. IPv6 literals are not supported.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _valid_host(host: str) -> bool:
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    if all(label.isdigit() for label in labels):  # looks like an address: must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
    return True


def check_url(value: str) -> str:
    """An upstream base URL: http(s), a plain host, an optional port and path. Errors
    never echo the value: a URL can carry credentials or come from a secret."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # urlsplit silently drops tabs and newlines: check what it would not see.
        raise ValueError("must not contain control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http(s) URL such as https://api.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    if not parts.hostname or not _valid_host(parts.hostname):
        raise ValueError(
            "must name a host: DNS labels of letters, digits, '-' and '_', or an IPv4 address"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 and parts.netloc.rsplit("]", 1)[-1].count(":"):
        raise ValueError("has an invalid port (1-65535)")
    if not re.fullmatch(r"[A-Za-z0-9._~/%:@+-]*", parts.path):
        raise ValueError("has a path with characters a URL path does not need")
    return value


class Settings(BaseModel):
    # Values can be keys or URLs with passwords: an error names the field, never the value.
    model_config = ConfigDict(hide_input_in_errors=True)

    # GATEWAY_API_KEYS; None: the development key, unless a keys file is configured.
    gateway_keys: tuple[SecretStr, ...] | None = None
    keys_file: str | None = None
    host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    admin_port: int = Field(default=9901, ge=1, le=65535)
    extproc_port: int = Field(default=50051, ge=1, le=65535)
    # ext_proc server processes, on ports extproc_port, extproc_port + 1, ...; Envoy
    # balances requests across them. Python runs one core per process.
    extproc_workers: int = Field(default=1, ge=1, le=64)
    # Requests one ext_proc process serves at once; beyond it new requests get a fast
    # "overloaded, retry" in their API's format instead of slowing every stream down.
    extproc_max_streams: int = Field(default=DEFAULT_MAX_STREAMS, ge=1, le=MAX_CONCURRENT_STREAMS)
    # At SIGTERM, how long open streams get to finish (long generations) before the
    # ones left are ended with an in-format error.
    drain_timeout_s: float = Field(default=600.0, ge=0, le=86400)
    # Where Envoy reaches the ext_proc server, and where that server listens: both
    # loopback on one host or in a pod; a service name and 0.0.0.0 under compose.
    extproc_host: str = "127.0.0.1"
    extproc_listen: str = "127.0.0.1"
    # A directory: each ext_proc worker listens on a Unix socket there instead of TCP
    # (`extproc-<port>.sock`), which Envoy must reach (the same host, or a volume both
    # containers mount).
    extproc_uds_dir: str | None = None
    mock_port: int = Field(default=9000, ge=1, le=65535)
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
    # The CA file Envoy checks https providers' certificates against.
    ca_bundle: str = DEFAULT_CA_BUNDLE
    # Decision records and request summaries (README, "Observe"): an SQLite file by
    # default, PostgreSQL when a URL is given (several replicas, one store).
    audit_enabled: bool = True
    audit_db: str = DEFAULT_AUDIT_DB
    audit_database_url: SecretStr | None = None
    audit_retention_days: int = Field(default=30, ge=0)
    # The admin server: /metrics, /healthz, the admin API and the web view. Port 0: none.
    gateway_admin_host: str = "127.0.0.1"
    gateway_admin_port: int = Field(default=8001, ge=0, le=65535)
    gateway_admin_key: SecretStr | None = None
    # Named admin keys, `name:key,name:key`: each approver is named in the records.
    gateway_admin_keys: SecretStr | None = None
    # The admin server's address as bots reach it (approval webhooks name it).
    gateway_admin_url: str | None = None
    # A stream held back for long (a tool call waiting for a person) gets the API's
    # keepalive this often, so neither the client nor a proxy times it out.
    keepalive_interval_s: float = Field(default=10.0, gt=0, le=300)
    # Where callers' limit counters live when several processes share them (README,
    # "Limits and budgets"); unset: in the ext_proc process.
    rate_limit_redis_url: SecretStr | None = None

    @field_validator("extproc_workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        # One worker per core: each is a Python process with its own GIL.
        if isinstance(value, str) and value.strip().lower() == "auto":
            return max(1, min(usable_cores(), 64))
        return value

    @field_validator("rate_limit_redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("gateway_admin_keys")
    @classmethod
    def _check_admin_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_admin_keys(value.get_secret_value())
        return value

    @field_validator("gateway_admin_url")
    @classmethod
    def _check_admin_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    def extproc_socket(self, port: int) -> str | None:
        """The Unix socket of the ext_proc worker numbered by `port`, if workers use
        them."""
        if self.extproc_uds_dir is None:
            return None
        return os.path.join(os.path.abspath(self.extproc_uds_dir), f"extproc-{port}.sock")

    def extproc_address(self, port: int) -> str:
        """Where the worker numbered by `port` listens, as gRPC writes it."""
        path = self.extproc_socket(port)
        return f"unix:{path}" if path is not None else f"{self.extproc_listen}:{port}"

    def admin_keys(self) -> dict[str, str]:
        """Admin key -> its holder's name. GATEWAY_ADMIN_KEY is the `admin`'s."""
        keys: dict[str, str] = {}
        if self.gateway_admin_key is not None and self.gateway_admin_key.get_secret_value():
            keys[self.gateway_admin_key.get_secret_value()] = "admin"
        if self.gateway_admin_keys is not None:
            for name, key in parse_admin_keys(self.gateway_admin_keys.get_secret_value()):
                keys[key] = name
        return keys

    def admin_base_url(self) -> str:
        if self.gateway_admin_url is not None:
            return self.gateway_admin_url.rstrip("/")
        return f"http://{self.gateway_admin_host}:{self.gateway_admin_port}"

    @field_validator("audit_database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("upstream_anthropic_url", "upstream_openai_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

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

    def upstream_url(self, api: ProviderApi) -> str | None:
        """The URL override for an API's built-in provider (UPSTREAM_*_URL)."""
        overrides = {
            ProviderApi.ANTHROPIC: self.upstream_anthropic_url,
            ProviderApi.OPENAI: self.upstream_openai_url,
        }
        return overrides[api]

    def provider_key(self, env_name: str) -> SecretStr | None:
        """A provider key these settings hold (the two standard variables)."""
        if env_name == "ANTHROPIC_API_KEY":
            return self.anthropic_api_key
        if env_name == "OPENAI_API_KEY":
            return self.openai_api_key
        return None
