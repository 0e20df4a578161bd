"""Model routing: the table, provider resolution, config errors and the clusters a
router asks Envoy for. (The pipeline's use of it: tests/unit/pipeline/test_upstream.py;
the Envoy config: tests/unit/envoy_config/.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from extproc.config import Settings
from extproc.core.providers import ProviderApi
from extproc.policy_config import ConfigError, load_config
from extproc.routing import RouteConfig, Router
from tests.helpers.pipeline import router_from as router


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("claude-sonnet-5-5", "anthropic"),
        ("claude-3-5-haiku-20241022", "anthropic"),
        ("gpt-4o-mini", "openai"),
        ("o1-preview", "openai"),
        ("o3", "openai"),
        ("o4-mini", "openai"),
        ("llama-3-70b", None),
        ("Claude-sonnet", None),  # case-sensitive, as the providers are
        ("", None),
    ],
)
def test_default_table(model: str, provider: str | None) -> None:
    found = router().for_model(model)
    assert (found.name if found else None) == provider


def test_first_matching_route_wins_and_custom_providers_resolve() -> None:
    r = router(
        """
        providers:
          local: {api: openai, base_url: "http://10.0.0.9:8000/v1", key_env: LOCAL_KEY,
                  connect_timeout_s: 2, idle_timeout_s: 90}
        routes:
          - {models: ["gpt-4o-mini*"], provider: local}
          - {models: ["gpt-*", "llama-*"], provider: openai}
          - {models: ["claude-*"], provider: anthropic}
        """,
        LOCAL_KEY="sk-local-secret",
    )
    assert r.for_model("gpt-4o-mini-2024-07-18").name == "local"  # type: ignore[union-attr]
    assert r.for_model("gpt-4o").name == "openai"  # type: ignore[union-attr]
    assert r.for_model("llama-3").name == "openai"  # type: ignore[union-attr]
    local = r.upstreams["local"]
    assert (local.host, local.port, local.path_prefix) == ("10.0.0.9", 8000, "")
    assert local.api_key is not None and local.api_key.get_secret_value() == "sk-local-secret"
    assert (local.connect_timeout_s, local.idle_timeout_s) == (2, 90)
    assert "sk-local-secret" not in repr(local)
    assert r.patterns == ["gpt-4o-mini*", "gpt-*", "llama-*", "claude-*"]
    # /v1/models goes to the built-in provider of the client's API while routes use it...
    assert r.default_for(ProviderApi.OPENAI).name == "openai"
    assert r.default_for(ProviderApi.ANTHROPIC).name == "anthropic"
    # ... else to the first routed provider of that API.
    only_local = router(
        "providers: {local: {api: openai, base_url: 'http://10.0.0.9'}}\n"
        "routes: [{models: ['*'], provider: local}]"
    )
    assert only_local.default_for(ProviderApi.OPENAI).name == "local"


def test_builtin_providers_resolve_to_mock_real_api_or_override() -> None:
    plain = router()
    assert plain.needs_mock and plain.upstreams["anthropic"].is_mock
    keyed = router(settings=Settings(anthropic_api_key=SecretStr("sk-ant")))
    assert keyed.upstreams["anthropic"].base_url == "https://api.anthropic.com"
    assert keyed.upstreams["openai"].is_mock
    override = router(settings=Settings(upstream_openai_url="http://127.0.0.1:7000/v1"))
    assert override.upstreams["openai"].base_url == "http://127.0.0.1:7000/v1"
    assert override.upstreams["openai"].api_key is None
    # A key from key_env, on the built-in provider, goes to the real API.
    other = router(
        "providers: {openai: {api: openai, key_env: TEAM_OPENAI_KEY}}", TEAM_OPENAI_KEY="sk-t"
    )
    assert other.upstreams["openai"].base_url == "https://api.openai.com"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "routes: [{models: ['llama-*'], provider: vllm}]",
            "routes[0].provider: no provider named 'vllm' (known: anthropic, openai)",
        ),
        ("providers: {Local: {api: openai, base_url: 'http://x'}}", "providers.Local:"),
        ("providers: {extproc: {api: openai, base_url: 'http://x'}}", "providers.extproc:"),
        ("providers: {local-0123abcd: {api: openai}}", "the form of cluster names"),
        ("providers: {openai: {api: anthropic}}", "speaks the openai API"),
        ("providers: {x: {api: gemini}}", "providers.x.api:"),
        ("providers: {x: {api: openai, base_url: 'ftp://h'}}", "providers.x.base_url:"),
        (
            "providers: {x: {api: openai, base_url: 'https://u:p@h'}}",
            "must not carry credentials, a query or a fragment",
        ),
        ("providers: {x: {api: openai, key_env: 'a-b'}}", "providers.x.key_env:"),
        ("providers: {x: {api: openai, connect_timeout_s: 0}}", "connect_timeout_s:"),
        ("providers: {x: {api: openai, timeout: 3}}", "unknown field 'timeout'"),
        ("routes: [{models: [], provider: openai}]", "routes[0].models:"),
        ("routes: [{models: ['gpt 4'], provider: openai}]", "is not a model pattern"),
        ("routes: [{models: ['gpt-*\\n'], provider: openai}]", "is not a model pattern"),
        ('providers: {"local\\n": {api: openai}}', "providers.local\n:"),
        ("providers: {x: {api: openai, base_url: 'http://vllm:99999/v1'}}", "invalid port"),
        ("providers: {x: {api: openai, base_url: 'http://vllm}x/v1'}}", "must name a host"),
        ("providers: {x: {api: openai, base_url: 'http://h/a b'}}", "has a path"),
        ("providers: {x: {api: openai, base_url: 'http://h:0'}}", "invalid port"),
        ("providers: {x: {api: openai, base_url: 'http://999.1.1.1'}}", "must name a host"),
        ("providers: {x: {api: openai, base_url: 'http://a..b'}}", "must name a host"),
        ("providers: {x: {api: openai, connect_timeout_s: 0.00001}}", "connect_timeout_s:"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path))
    assert "u:p" not in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9000",
        "http://mock-llm:9000",
        "http://my_vllm:8000/v1",  # compose service names may hold '_'
        "https://API.OpenAI.com/v1/",
        "http://10.0.0.7:8080",
    ],
)
def test_good_urls_load(tmp_path: Path, url: str) -> None:
    config = load_config(_write(tmp_path, f"providers: {{x: {{api: openai, base_url: '{url}'}}}}"))
    assert config.providers["x"].base_url == url


def test_bad_url_is_never_echoed(tmp_path: Path) -> None:
    path = _write(tmp_path, "providers: {x: {api: openai, base_url: '${SECRET_URL}'}}")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"SECRET_URL": "https//admin:hunter2@vllm.internal/v1"})
    assert "providers.x.base_url: must be an http(s) URL" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_custom_providers_never_get_the_standard_keys_or_overrides() -> None:
    keyed = Settings(
        openai_api_key=SecretStr("sk-real-openai"),
        upstream_openai_url="http://corp-proxy.example:8080",
    )
    r = router(
        "providers:\n"
        "  local: {api: openai, base_url: 'http://vllm.internal:8000/v1'}\n"
        "  team-b: {api: openai, key_env: TEAM_B_KEY}\n",
        settings=keyed,
        TEAM_B_KEY="sk-team-b",
    )
    assert r.upstreams["local"].api_key is None
    assert r.upstreams["openai"].base_url == "http://corp-proxy.example:8080"
    # No URL: the real API with its own key, not the built-in's override.
    team_b = r.upstreams["team-b"]
    assert team_b.base_url == "https://api.openai.com"
    assert team_b.api_key is not None and team_b.api_key.get_secret_value() == "sk-team-b"


def test_config_routes_replace_defaults(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1/v1'}}\n"
            "routes: [{models: ['*'], provider: local}]\n",
        )
    )
    r = Router.build(Settings(), config.providers, config.routes, env={})
    assert r.for_model("claude-sonnet-5-5").name == "local"  # type: ignore[union-attr]
    assert set(r.upstreams) == {"anthropic", "openai", "local"}


def test_a_config_rendered_for_other_urls_has_no_cluster_for_this_one() -> None:
    """Rendered with one override, run with another (or with a key instead): the cluster
    ext_proc names is absent, so Envoy fails closed rather than sending keys elsewhere."""
    rendered = Router.build(Settings(upstream_openai_url="http://proxy-a:3128"), env={})
    clusters = {u.cluster for u in rendered.clusters(any_keys=True)}
    for running in (
        Settings(upstream_openai_url="http://proxy-b:3128"),
        Settings(openai_api_key=SecretStr("sk-real")),
    ):
        chosen = Router.build(running, env={}).upstreams["openai"].cluster
        assert chosen not in clusters


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("http://h", ""),
        ("http://h/v1", ""),
        ("http://h/v1/", ""),
        ("https://h/openai/v1", "/openai"),
        ("https://h/anthropic", "/anthropic"),
    ],
)
def test_path_prefix_drops_a_trailing_v1(url: str, prefix: str) -> None:
    r = router(f"providers: {{x: {{api: openai, base_url: '{url}'}}}}")
    assert r.upstreams["x"].path_prefix == prefix


def test_clusters_and_the_real_api_of_a_keyless_provider() -> None:
    r = router("providers: {x: {api: openai, base_url: 'http://h:1'}}")
    mock = r.upstreams["openai"]
    assert mock.is_mock and mock.cluster == "mock" and mock.keyed_fallback
    real = mock.real()
    assert (real.base_url, real.cluster, real.is_mock) == (
        "https://api.openai.com",
        "openai",
        False,
    )
    configured = r.upstreams["x"]
    assert configured.real() is configured  # a URL is where it goes, key or not
    assert [u.cluster for u in r.clusters()] == ["mock", configured.cluster]
    assert [u.cluster for u in r.clusters(any_keys=True)] == [
        "anthropic",
        "mock",
        "openai",
        configured.cluster,
    ]
    assert "mock LLM" in mock.describe() and real.describe() == "openai -> https://api.openai.com"


def test_the_mock_is_needed_while_something_goes_to_it() -> None:
    keyed = Settings(anthropic_api_key=SecretStr("sk-a"), openai_api_key=SecretStr("sk-o"))
    assert not router(settings=keyed).needs_mock
    # A URL naming the mock's own address: the mock playing a real provider.
    playing = Settings(
        anthropic_api_key=SecretStr("sk-a"),
        openai_api_key=SecretStr("sk-o"),
        upstream_openai_url="http://127.0.0.1:9000/v1",
    )
    assert router(settings=playing).needs_mock


def test_keys_never_show_in_a_description() -> None:
    r = router(settings=Settings(openai_api_key=SecretStr("sk-real-openai")))
    assert all("sk-real" not in u.describe() + repr(u) for u in r.upstreams.values())


def test_named_models_are_the_routes_without_wildcards() -> None:
    routes = [
        RouteConfig(models=["claude-opus-4-1", "claude-*"], provider="anthropic"),
        RouteConfig(models=["gpt-[45]o", "o3"], provider="openai"),
    ]
    router = Router.build(Settings(), routes=routes, env={})
    assert router.named_models() == {"claude-opus-4-1", "o3"}
