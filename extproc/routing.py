"""Model routing: which provider serves a model, where it lives, and with which key.

    providers:                # merged over the two defaults, "anthropic" and "openai"
      local:
        api: openai           # the API it speaks natively: anthropic | openai
        base_url: http://vllm.internal:8000/v1
        key_env: LOCAL_LLM_KEY
        connect_timeout_s: 2
    routes:                   # replaces the default table; first match wins
      - {models: ["claude-*"], provider: anthropic}
      - {models: ["gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"], provider: openai}
      - {models: ["llama-*"], provider: local}

Each provider becomes an Envoy cluster of its own name; ext_proc picks one per request
by model. A provider without `base_url` is its API's real endpoint, or the URL in
`UPSTREAM_ANTHROPIC_URL` / `UPSTREAM_OPENAI_URL`, or the mock LLM when there is neither
a URL nor a key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from extproc.config import Settings, check_url
from extproc.contract import EXTPROC_CLUSTER, MOCK_CLUSTER, STREAM_IDLE_TIMEOUT_S
from extproc.core.providers import ProviderApi

REAL_BASE_URLS = {
    ProviderApi.ANTHROPIC: "https://api.anthropic.com",
    ProviderApi.OPENAI: "https://api.openai.com",
}
DEFAULT_KEY_ENV = {ProviderApi.ANTHROPIC: "ANTHROPIC_API_KEY", ProviderApi.OPENAI: "OPENAI_API_KEY"}
# Envoy cluster names share a namespace with our own: keep them apart and YAML-safe.
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,47}")
_RESERVED_NAMES = frozenset({EXTPROC_CLUSTER, MOCK_CLUSTER})
_HASHED = re.compile(r".+-[0-9a-f]{8}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATTERN = re.compile(r"[A-Za-z0-9._:/@*?\[\]-]{1,200}")


class ProviderConfig(BaseModel):
    """One provider entry of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: ProviderApi
    base_url: str | None = None
    key_env: str | None = None
    # Reaching the provider: a dead address fails fast instead of holding the client.
    connect_timeout_s: float = Field(default=10.0, ge=0.01, le=300)
    # A stream with no byte either way for this long is dead. Long generations stay
    # alive: models that think for minutes still send pings.
    idle_timeout_s: float = Field(default=STREAM_IDLE_TIMEOUT_S, ge=1, le=86400)
    # Retries of failures before any byte of the request left (refused or failed
    # connection, a reset before sending): never of a request the provider may have
    # read, which could be a second, billed generation. A kept-alive connection the
    # provider closes under a request in flight is therefore a 503, not a retry.
    connect_retries: int = Field(default=2, ge=0, le=5)
    # Callers with limits are charged from usage reports; OpenAI chat streams report
    # usage only when asked (stream_options.include_usage), which the gateway adds.
    # false: the provider refuses that option (some older compatible servers), so its
    # streams are charged from their events instead.
    stream_usage: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name such as MY_PROVIDER_KEY")
        return value


class RouteConfig(BaseModel):
    """Model name patterns (shell-style, case-sensitive) served by one provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1)
    provider: str

    @field_validator("models")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not _PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{pattern!r} is not a model pattern (letters, digits, . _ : / @ - and "
                    "the wildcards * ? [...])"
                )
        return value


DEFAULT_PROVIDERS: dict[str, ProviderConfig] = {
    "anthropic": ProviderConfig(api=ProviderApi.ANTHROPIC),
    "openai": ProviderConfig(api=ProviderApi.OPENAI),
}
DEFAULT_ROUTES: list[RouteConfig] = [
    RouteConfig(models=["claude-*"], provider="anthropic"),
    RouteConfig(models=["gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"], provider="openai"),
]


def check_routing(
    providers: Mapping[str, ProviderConfig], routes: list[RouteConfig] | None
) -> list[str]:
    """Problems with a config's providers and routes, one message each."""
    problems = []
    for name, provider in providers.items():
        if (
            not _PROVIDER_NAME.fullmatch(name)
            or name in _RESERVED_NAMES
            or _HASHED.fullmatch(name)  # could be another provider's cluster name
        ):
            problems.append(
                f"providers.{name}: provider names are lower-case letters, digits, - and _, "
                "starting with a letter (not 'extproc', 'mock' or ending in '-' and 8 "
                "hex digits, the form of cluster names)"
            )
        default = DEFAULT_PROVIDERS.get(name)
        if default is not None and provider.api is not default.api:
            problems.append(
                f"providers.{name}: the built-in provider {name!r} speaks the {default.api} "
                "API; give a provider of another API its own name"
            )
    known = {**DEFAULT_PROVIDERS, **providers}
    for i, route in enumerate(routes or []):
        if route.provider not in known:
            problems.append(
                f"routes[{i}].provider: no provider named {route.provider!r} "
                f"(known: {', '.join(sorted(known))})"
            )
    return problems


class Upstream(BaseModel):
    """A provider resolved for this process: its address and the key to inject."""

    model_config = ConfigDict(frozen=True)

    name: str
    api: ProviderApi
    base_url: str
    api_key: SecretStr | None = None
    key_env: str = ""
    is_mock: bool = False
    # The Envoy cluster: the provider's name, or the mock's cluster for a provider that
    # falls back to it, so a config rendered for any keys can hold both.
    cluster: str = ""
    # No URL configured: the real API with a key, the mock without one.
    keyed_fallback: bool = False
    connect_timeout_s: float = 10.0
    idle_timeout_s: float = STREAM_IDLE_TIMEOUT_S
    connect_retries: int = 2
    stream_usage: bool = True

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

    def describe(self) -> str:
        return f"{self.name} -> {'mock LLM' if self.is_mock else self.base_url}"

    def real(self) -> Upstream:
        """This provider's real API, for a keyless provider that otherwise falls back to
        the mock: where a caller that brings its own (real) credential goes."""
        if not self.keyed_fallback:
            return self
        return self.model_copy(
            update={"base_url": REAL_BASE_URLS[self.api], "is_mock": False, "cluster": self.name}
        )


def cluster_name(name: str, url: str, configured: bool) -> str:
    """The Envoy cluster of a provider says where it goes, not only whose it is: a config
    rendered with other URLs than the ext_proc server runs with then fails closed (no
    route) instead of sending traffic, and keys, to another host."""
    if not configured:
        return name  # the provider's real API
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def mock_url(settings: Settings) -> str:
    return f"http://{settings.mock_host}:{settings.mock_port}"


def resolve(
    name: str, provider: ProviderConfig, settings: Settings, env: Mapping[str, str]
) -> Upstream:
    """Where a provider is, and its key, from the settings and the environment.

    Only the built-in providers default to the standard key variables and follow the
    UPSTREAM_*_URL overrides: another provider gets a key only from its own `key_env`,
    so the real OpenAI or Anthropic key never reaches a host nobody chose for it."""
    builtin = name in DEFAULT_PROVIDERS
    key_env = provider.key_env or (DEFAULT_KEY_ENV[provider.api] if builtin else "")
    key = settings.provider_key(key_env) if key_env else None
    if key is None and key_env:
        raw = env.get(key_env, "").strip()
        key = SecretStr(raw) if raw else None
    override = settings.upstream_url(provider.api) if builtin else None
    is_mock = False
    fallback = provider.base_url is None and override is None
    if provider.base_url is not None:
        url = provider.base_url
    elif override is not None:
        url = override
    elif key is not None:
        url = REAL_BASE_URLS[provider.api]
    else:
        url, is_mock = mock_url(settings), True
    return Upstream(
        name=name,
        api=provider.api,
        base_url=url,
        api_key=key,
        key_env=key_env,
        is_mock=is_mock,
        cluster=MOCK_CLUSTER if is_mock else cluster_name(name, url, not fallback),
        keyed_fallback=fallback,
        connect_timeout_s=provider.connect_timeout_s,
        idle_timeout_s=provider.idle_timeout_s,
        connect_retries=provider.connect_retries,
        stream_usage=provider.stream_usage,
    )


class Router:
    """Model name -> upstream, first matching route wins."""

    def __init__(
        self, upstreams: dict[str, Upstream], routes: list[RouteConfig], mock_base_url: str = ""
    ) -> None:
        self.upstreams = upstreams
        self.mock_base_url = mock_base_url
        self.routes = routes
        self._table = [
            (re.compile(fnmatch.translate(p)), upstreams[r.provider])
            for r in routes
            for p in r.models
        ]
        self._cache: dict[str, Upstream | None] = {}

    @classmethod
    def build(
        cls,
        settings: Settings,
        providers: Mapping[str, ProviderConfig] | None = None,
        routes: list[RouteConfig] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Router:
        """`env` holds the keys named by `key_env` (the process environment by default)."""
        merged = {**DEFAULT_PROVIDERS, **(providers or {})}
        problems = check_routing(merged, routes)
        if problems:
            raise ValueError("; ".join(problems))
        environ = os.environ if env is None else env
        upstreams = {name: resolve(name, p, settings, environ) for name, p in merged.items()}
        return cls(
            upstreams, list(DEFAULT_ROUTES if routes is None else routes), mock_url(settings)
        )

    def named_models(self) -> frozenset[str]:
        """The model names routes spell out whole (no wildcard): the ones a metric may
        always name, whatever clients send."""
        return frozenset(p for r in self.routes for p in r.models if not any(c in p for c in "*?["))

    def for_model(self, model: str) -> Upstream | None:
        found = self._cache.get(model, self)
        if found is not self:
            return found  # type: ignore[return-value]
        match = next((up for rx, up in self._table if rx.match(model)), None)
        if len(self._cache) < 4096:  # model names are few; a flood of junk ones is not cached
            self._cache[model] = match
        return match

    def default_for(self, api: ProviderApi) -> Upstream:
        """The provider for requests that name no model (`/v1/models`): the built-in one
        of that API while a route uses it, else the first routed provider of that API."""
        builtin = self.upstreams[api.value]
        routed = [self.upstreams[r.provider] for r in self.routes]
        if builtin in routed:
            return builtin
        return next((u for u in routed if u.api is api), builtin)

    @property
    def patterns(self) -> list[str]:
        return [p for r in self.routes for p in r.models]

    @property
    def needs_mock(self) -> bool:
        """Whether the embedded mock must run: a provider falls back to it, or a URL
        names the mock's own address (the mock playing a real provider)."""
        parts = urlsplit(self.mock_base_url)
        at = (parts.hostname, parts.port)
        return any(u.is_mock or (u.host, u.port) == at for u in self.upstreams.values())

    def clusters(self, any_keys: bool = False) -> list[Upstream]:
        """The Envoy clusters to render, one per distinct `cluster`. `any_keys` renders
        providers without a URL both ways, the real API and the mock, so the config
        stays right whichever keys the ext_proc server has when it starts (and lets
        callers with their own key reach the real API of a provider the gateway holds no key
        for)."""
        out: dict[str, Upstream] = {}
        for upstream in self.upstreams.values():
            variants = [upstream]
            if any_keys and upstream.keyed_fallback:
                mock = self.mock_upstream(upstream)
                variants = [upstream.real(), mock]
            for variant in variants:
                out.setdefault(variant.cluster, variant)
        return list(out.values())

    def mock_upstream(self, like: Upstream) -> Upstream:
        """The mock, as the fallback of `like` (a keyless provider without a URL)."""
        for upstream in self.upstreams.values():
            if upstream.is_mock:
                return upstream
        return like.model_copy(
            update={"base_url": self.mock_base_url, "is_mock": True, "cluster": MOCK_CLUSTER}
        )
