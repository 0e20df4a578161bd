"""Model routing: the table, provider resolution, config errors, the pipeline's use of it
and the Envoy clusters it generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from extproc.apis.kind import ApiKind
from extproc.config import Settings
from extproc.envoy_config import render
from extproc.keys import Caller, KeyRegistry, digest
from extproc.pipeline import Continue, Reject, RequestPipeline
from extproc.policies.base import ApiRequest, Policy, PolicyChain
from extproc.policies.base import Reject as PolicyReject
from extproc.policies.noop import NoOpPolicy
from extproc.policy_config import ConfigError, load_config
from extproc.routing import ProviderConfig, RouteConfig, Router

KEY = "sk-gw-routing"


def router(text: str = "", settings: Settings | None = None, **env: str) -> Router:
    doc = yaml.safe_load(text) or {}
    providers = {
        name: ProviderConfig.model_validate(p) for name, p in doc.get("providers", {}).items()
    }
    routes = [RouteConfig.model_validate(r) for r in doc["routes"]] if "routes" in doc else None
    return Router.build(settings or Settings(), providers, routes, env=env)


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
    assert r.default_for(ApiKind.OPENAI).name == "openai"
    assert r.default_for(ApiKind.ANTHROPIC).name == "anthropic"
    # ... else to the first routed provider of that API.
    only_local = router(
        "providers: {local: {api: openai, base_url: 'http://10.0.0.9'}}\n"
        "routes: [{models: ['*'], provider: local}]"
    )
    assert only_local.default_for(ApiKind.OPENAI).name == "local"


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


# -- the pipeline -------------------------------------------------------------------------


def pipeline(r: Router | None = None, **settings: object) -> RequestPipeline:
    cfg = Settings(gateway_keys=(SecretStr(KEY),), **settings)  # type: ignore[arg-type]
    return RequestPipeline(
        cfg,
        KeyRegistry.build(cfg.env_keys, None),
        PolicyChain([NoOpPolicy()]),
        r or Router.build(cfg, env={}),
    )


async def send(p: RequestPipeline, path: str, model: str, **headers: str) -> Continue | Reject:
    head = {
        ":method": "POST",
        ":path": path,
        "content-type": "application/json",
        "x-api-key": KEY,
        **headers,
    }
    assert isinstance(p.on_request_headers(head, False), Continue)
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    return await p.on_request_body(json.dumps(body).encode())


async def test_unknown_model_is_a_400_in_each_format() -> None:
    out = await send(pipeline(), "/v1/messages", "llama-3-70b")
    assert isinstance(out, Reject) and out.status == 400
    body = json.loads(out.body)
    assert body["error"]["type"] == "invalid_request_error"
    assert "no route matches it" in body["error"]["message"]
    assert "claude-*" in body["error"]["message"]
    out = await send(pipeline(), "/v1/chat/completions", "llama-3-70b")
    assert isinstance(out, Reject) and out.status == 400
    assert json.loads(out.body)["error"]["param"] == "model"


async def test_openai_model_on_messages_endpoint_is_refused() -> None:
    out = await send(pipeline(), "/v1/messages", "gpt-4o")
    assert isinstance(out, Reject) and out.status == 400
    assert "call /v1/chat/completions" in json.loads(out.body)["error"]["message"]


async def test_claude_on_chat_completions_goes_to_anthropic_with_bearer_key() -> None:
    p = pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/chat/completions", "claude-sonnet-5-5")
    assert isinstance(out, Continue)
    assert out.set_headers == {
        "x-gateway-upstream": "anthropic",
        "authorization": "Bearer sk-ant-provider",  # what Anthropic's OpenAI endpoint takes
    }


async def test_native_anthropic_gets_key_and_version_but_keeps_the_clients_version() -> None:
    p = pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/messages", "claude-sonnet-5-5")
    assert isinstance(out, Continue)
    assert out.set_headers["x-api-key"] == "sk-ant-provider"
    assert out.set_headers["anthropic-version"] == "2023-06-01"
    p = pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/messages", "claude-x", **{"anthropic-version": "2099-01-01"})
    assert isinstance(out, Continue) and "anthropic-version" not in out.set_headers


async def test_custom_provider_gets_its_own_key() -> None:
    r = router(
        "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1', key_env: LK}}\n"
        "routes: [{models: ['llama-*'], provider: local}]",
        LK="sk-local",
    )
    out = await send(pipeline(r), "/v1/chat/completions", "llama-3")
    assert isinstance(out, Continue)
    cluster = r.upstreams["local"].cluster
    assert out.set_headers == {"x-gateway-upstream": cluster, "authorization": "Bearer sk-local"}
    # Named after where it goes: a config rendered for another URL has no such cluster.
    assert cluster.startswith("local-") and cluster != "local"


# -- Envoy --------------------------------------------------------------------------------


def test_each_provider_is_a_cluster_with_its_timeouts() -> None:
    r = router(
        "providers:\n"
        "  local: {api: openai, base_url: 'https://llm.internal.example/openai/v1',\n"
        "          connect_timeout_s: 2.5, idle_timeout_s: 120}\n"
        "routes: [{models: ['*'], provider: local}]"
    )
    doc = yaml.safe_load(render(Settings(), ca_bundle="/ca.pem", router=r))
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    # No keys: the two built-in providers share the mock's cluster.
    name = r.upstreams["local"].cluster
    assert set(clusters) == {"extproc", "mock", name}
    local = clusters[name]
    assert local["connect_timeout"] == "2.5s"
    assert local["type"] == "LOGICAL_DNS"
    tls = local["transport_socket"]["typed_config"]
    assert tls["sni"] == "llm.internal.example"
    listener = doc["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    (route,) = [r for r in routes if r.get("route", {}).get("cluster") == name]
    assert route["route"]["idle_timeout"] == "120s"
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["prefix_rewrite"] == "/openai/"
    assert route["match"]["headers"][0]["string_match"] == {"exact": name}


def test_config_for_any_keys_does_not_depend_on_the_keys() -> None:
    """render-envoy's output (compose, Kubernetes) holds the real APIs and the mock, so
    adding or removing a provider key never needs a new Envoy config."""
    bare = Settings()
    keyed = Settings(anthropic_api_key=SecretStr("sk-a"), openai_api_key=SecretStr("sk-o"))
    rendered = [
        render(s, ca_bundle="/ca.pem", router=Router.build(s, env={}), any_keys=True)
        for s in (bare, keyed)
    ]
    assert rendered[0] == rendered[1]
    assert "sk-a" not in rendered[1] and "sk-o" not in rendered[1]
    doc = yaml.safe_load(rendered[0])
    clusters = {c["name"] for c in doc["static_resources"]["clusters"]}
    assert clusters == {"extproc", "anthropic", "openai", "mock"}
    # A URL override is not key-dependent: no mock variant for it, and its cluster is
    # named after the URL.
    override = Settings(upstream_openai_url="http://10.0.0.7:8080")
    r = Router.build(override, env={})
    doc = yaml.safe_load(render(override, router=r, any_keys=True))
    clusters = {c["name"] for c in doc["static_resources"]["clusters"]}
    assert clusters == {"extproc", "anthropic", r.upstreams["openai"].cluster, "mock"}
    only_urls = Settings(
        upstream_openai_url="http://10.0.0.7:8080", upstream_anthropic_url="http://10.0.0.8"
    )
    r = Router.build(only_urls, env={})
    doc = yaml.safe_load(render(only_urls, router=r, any_keys=True))
    assert {c["name"] for c in doc["static_resources"]["clusters"]} == {
        "extproc",
        r.upstreams["anthropic"].cluster,
        r.upstreams["openai"].cluster,
    }


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


async def test_passthrough_callers_reach_the_real_api_not_the_mock() -> None:
    cfg = Settings(gateway_keys=(SecretStr(KEY),))
    registry = KeyRegistry([Caller(name="claude-code", digest=digest(KEY), passthrough=True)])
    p = RequestPipeline(cfg, registry, PolicyChain([NoOpPolicy()]), Router.build(cfg, env={}))
    head = {
        ":method": "POST",
        ":path": "/v1/messages",
        "content-type": "application/json",
        "x-gateway-key": KEY,
        "authorization": "Bearer sk-ant-oauth-own",
    }
    assert isinstance(p.on_request_headers(head, False), Continue)
    body = {"model": "claude-x", "max_tokens": 5, "messages": []}
    out = await p.on_request_body(json.dumps(body).encode())
    assert isinstance(out, Continue)
    # The gateway has no Anthropic key, so its own callers get the mock; this caller's
    # credential goes to the real API, whose cluster render(any_keys=True) provides.
    assert out.set_headers["x-gateway-upstream"] == "anthropic"
    assert "authorization" not in out.set_headers and "x-api-key" not in out.set_headers
    assert p.upstream is not None and p.upstream.base_url == "https://api.anthropic.com"


def test_https_provider_by_address_checks_an_ip_san() -> None:
    r = router("providers: {gpu: {api: openai, base_url: 'https://10.1.2.3:8443/v1'}}")
    doc = yaml.safe_load(render(Settings(), ca_bundle="/ca.pem", router=r))
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"].startswith("gpu-")]
    tls = cluster["transport_socket"]["typed_config"]
    assert "sni" not in tls
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.1.2.3"}}]


def test_only_failures_before_the_request_are_retried() -> None:
    r = router(
        "providers:\n"
        "  a: {api: openai, base_url: 'http://h1', connect_retries: 3}\n"
        "  b: {api: openai, base_url: 'http://h2', connect_retries: 0}\n"
    )
    doc = yaml.safe_load(render(Settings(), router=r))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = {
        x["route"]["cluster"]: x["route"]
        for x in hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        if "route" in x
    }
    policy = routes[r.upstreams["a"].cluster]["retry_policy"]
    assert policy == {
        "retry_on": "connect-failure,refused-stream,reset-before-request",
        "num_retries": 3,
    }
    assert "retry_policy" not in routes[r.upstreams["b"].cluster]
    assert routes["mock"]["retry_policy"]["num_retries"] == 2  # the default


def test_durations_are_fixed_point() -> None:
    r = router("providers: {x: {api: openai, base_url: 'http://h', connect_timeout_s: 0.25}}")
    doc = yaml.safe_load(render(Settings(), router=r))
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"].startswith("x-")]
    assert cluster["connect_timeout"] == "0.25s"


async def test_model_detail_goes_to_the_provider_serving_that_model() -> None:
    r = router(
        "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1', key_env: LK}}\n"
        "routes: [{models: ['gpt-*'], provider: openai}, {models: ['llama-*'], provider: local}]",
        LK="sk-local",
    )
    for path, cluster in (
        ("/v1/models/llama-3", r.upstreams["local"].cluster),
        ("/v1/models/gpt-4o", "mock"),  # openai, falling back to the mock without a key
        ("/v1/models", "mock"),
    ):
        p = pipeline(r)
        out = p.on_request_headers({":method": "GET", ":path": path, "x-api-key": KEY}, True)
        assert isinstance(out, Continue), path
        assert out.set_headers["x-gateway-upstream"] == cluster, path


class _SwapModel(Policy):
    type = "swap_model"

    def __init__(self, to: object) -> None:
        super().__init__()
        self.to = to

    async def on_request(self, request: ApiRequest) -> PolicyReject | None:
        request.replace_body({**request.body, "model": self.to})
        return None


async def test_a_model_set_by_a_policy_is_checked_and_routed() -> None:
    cfg = Settings(gateway_keys=(SecretStr(KEY),))
    for to, status, upstream in (
        ("gpt-4o", None, "openai"),
        (None, 500, None),
        ("llama", 400, None),
    ):
        p = RequestPipeline(
            cfg, KeyRegistry.build(cfg.env_keys, None), PolicyChain([_SwapModel(to)]), router()
        )
        out = await send(p, "/v1/chat/completions", "claude-x")
        if status is None:
            assert isinstance(out, Continue) and p.upstream is not None
            assert p.upstream.name == upstream
        else:
            assert isinstance(out, Reject) and out.status == status
