"""The deployment files (docker compose, Kubernetes) against the real Envoy and the renderer.

No container runs here: the Envoy configs go through `envoy --mode validate`, the
generated files are compared with what scripts/render_deploy_configs.sh (and so the
renderer) produces today, and the compose file and the manifests are checked for
consistency with the settings.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from extproc.config import DEFAULT_CA_BUNDLE, DEV_GATEWAY_KEY, ENV_VARS, Settings
from extproc.envoy_config import render
from extproc.gateway import Gateway
from extproc.stack import envoy_binary
from tests.helpers.stack import run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_ENVOY = ROOT / "envoy" / "envoy.compose.yaml"
K8S_DIR = ROOT / "deploy" / "kubernetes"
K8S_GATEWAY = K8S_DIR / "gateway.yaml"
K8S_CONFIGMAP = K8S_DIR / "envoy-configmap.yaml"
REGENERATE = "scripts/render_deploy_configs.sh"

# The settings each shipped bootstrap is rendered with (see scripts/render_deploy_configs.sh,
# which passes the same values as GATEWAY_HOST / EXTPROC_HOST / MOCK_LLM_HOST).
COMPOSE_SETTINGS = Settings(host="0.0.0.0", extproc_host="extproc", mock_host="mock-llm")
K8S_SETTINGS = Settings(host="0.0.0.0")

# Every variable the gateway reads from its environment.
DOCUMENTED_VARS = {*ENV_VARS.values(), "GATEWAY_API_KEYS"}


def _ca_bundle() -> str:
    """A CA file that exists here: Envoy's validation opens it for TLS clusters."""
    if Path(DEFAULT_CA_BUNDLE).exists():
        return DEFAULT_CA_BUNDLE
    certifi = pytest.importorskip("certifi")
    return str(certifi.where())


def _validate(path: Path) -> None:
    proc = subprocess.run(
        [
            envoy_binary(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"envoy --mode validate rejected {path.name}:\n{output[-3000:]}"


def _configmap() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(K8S_CONFIGMAP.read_text()) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap"], f"{K8S_CONFIGMAP.name}: one ConfigMap"
    return docs[0]


def _configmap_bootstrap() -> str:
    data = _configmap()["data"]
    assert list(data) == ["envoy.yaml"], "the ConfigMap holds exactly envoy.yaml"
    return str(data["envoy.yaml"])


def _manifests() -> dict[str, dict[str, Any]]:
    """Every manifest `kubectl apply -f deploy/kubernetes/` applies, as `kind/name` ->
    document, and `kind` -> the first document of that kind."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                key = f"{doc['kind']}/{doc['metadata']['name']}"
                assert key not in docs, f"two {key} documents"
                docs[key] = doc
                docs.setdefault(doc["kind"], doc)
    return docs


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _render(settings: Settings, response_body: bool = True, any_keys: bool = False) -> str:
    """The bootstrap for these settings alone (no variable of this process read)."""
    return render(Gateway.load(settings, env={}), response_body=response_body, any_keys=any_keys)


def _strip_generated_header(text: str, name: str) -> str:
    first, _, rest = text.partition("\n")
    assert first.startswith("# Generated") and REGENERATE in first, (
        f"{name} must start with a one-line comment naming {REGENERATE}"
    )
    return rest


def _assert_up_to_date(shipped: str, expected: str, name: str) -> None:
    if shipped == expected:
        return
    diff = "".join(
        list(
            difflib.unified_diff(
                shipped.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                f"{name} (shipped)",
                f"{name} (rendered now)",
            )
        )[:40]
    )
    pytest.fail(
        f"{name} is out of date with extproc/envoy_config/: "
        f"regenerate it with `{REGENERATE}` (never edit it by hand)\n{diff}"
    )


def _bootstrap_endpoints(bootstrap: str) -> dict[str, tuple[str, int]]:
    """cluster name (and `listener`) -> (address, port) of an Envoy bootstrap."""
    config = yaml.safe_load(bootstrap)
    out: dict[str, tuple[str, int]] = {}
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    out["listener"] = (listener["address"], listener["port_value"])
    for cluster in config["static_resources"]["clusters"]:
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        addr = endpoint["endpoint"]["address"]["socket_address"]
        out[cluster["name"]] = (addr["address"], addr["port_value"])
    return out


# -- (a) every shipped or renderable Envoy config passes Envoy's own validation ----------


def test_compose_envoy_config_validates() -> None:
    _validate(COMPOSE_ENVOY)


def test_kubernetes_configmap_bootstrap_validates(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(_configmap_bootstrap())
    _validate(path)


RENDERED = {
    "default-mock": {},
    "real-providers": {
        "anthropic_api_key": SecretStr("sk-ant-dummy"),
        "openai_api_key": SecretStr("sk-openai-dummy"),
    },
    "https-override-with-path-prefix": {
        "upstream_openai_url": "https://llm-proxy.internal.example/openai/v1",
        "openai_api_key": SecretStr("sk-openai-dummy"),
    },
    "http-override": {
        "upstream_anthropic_url": "http://llm-proxy.internal.example:8080/anthropic",
        "upstream_openai_url": "http://10.0.0.7:8080",
    },
    "compose-hosts": {"host": "0.0.0.0", "extproc_host": "extproc", "mock_host": "mock-llm"},
}


@pytest.mark.parametrize("values", list(RENDERED.values()), ids=list(RENDERED))
def test_rendered_config_validates(values: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(_render(Settings(**values, ca_bundle=_ca_bundle())))
    _validate(path)


def test_render_envoy_with_a_routing_table_validates(tmp_path: Path) -> None:
    """The README's recipe for added providers: POLICY_CONFIG=... llm-gateway render-envoy."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n"
        "  local: {api: openai, base_url: 'http://vllm.internal:8000/v1', connect_timeout_s: 3}\n"
        "  azure: {api: openai, base_url: 'https://team.openai.azure.example/openai/v1',\n"
        "          idle_timeout_s: 1200}\n"
        "routes:\n"
        "  - {models: ['claude-*'], provider: anthropic}\n"
        "  - {models: ['llama-*'], provider: local}\n"
        "  - {models: ['gpt-*'], provider: azure}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "POLICY_CONFIG": str(config),
        "CA_BUNDLE": _ca_bundle(),
    }
    done = run_cli("render-envoy", env, check=True)
    path = tmp_path / "envoy.yaml"
    path.write_text(done.stdout)
    clusters = {
        c["name"].split("-")[0]: c
        for c in yaml.safe_load(done.stdout)["static_resources"]["clusters"]
    }
    # The built-in two both ways (real API and mock), the added ones by URL.
    assert {"anthropic", "openai", "mock", "local", "azure", "extproc"} == set(clusters)
    assert clusters["local"]["connect_timeout"] == "3s"
    assert "transport_socket" in clusters["azure"]
    _validate(path)


def test_image_installs_only_the_package() -> None:
    """The image is the installed package and nothing else from the checkout: no Envoy
    template or other file beside extproc/ is copied (render-envoy needs none)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copied == [["pyproject.toml", "README.m[d]"], ["extproc"]], copied
    assert "pip install /tmp/src && rm -rf /tmp/src" in dockerfile
    assert "ENVOY_TEMPLATE" not in dockerfile and "envoy/" not in dockerfile
    assert not (ROOT / "envoy" / "envoy.yaml.tmpl").exists()


def test_render_envoy_needs_no_file_outside_the_package(tmp_path: Path) -> None:
    """A copy of extproc/ alone, as the image installs it, renders the same bootstrap as
    the checkout."""
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "extproc", site / "extproc", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {"PATH": os.environ.get("PATH", ""), "CA_BUNDLE": _ca_bundle()}
    # Imported from the copy (the working directory comes first on sys.path), then run
    # as `python -m extproc render-envoy`.
    code = (
        "import runpy, sys, extproc\n"
        f"assert extproc.__file__ == {str(site / 'extproc' / '__init__.py')!r}, extproc.__file__\n"
        "sys.argv = ['llm-gateway', 'render-envoy']\n"
        "runpy.run_module('extproc', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=site,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == run_cli("render-envoy", env, check=True).stdout
    path = tmp_path / "envoy.yaml"
    path.write_text(done.stdout)
    _validate(path)


# -- (b) the generated files match what the renderer produces today ----------------------


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where scripts/render_deploy_configs.sh has just written both files,
    run from a copy of the script so the checkout is never touched."""
    out = tmp_path_factory.mktemp("regenerated")
    (out / "scripts").mkdir()
    shutil.copy2(ROOT / REGENERATE, out / REGENERATE)
    (out / COMPOSE_ENVOY.relative_to(ROOT)).parent.mkdir(parents=True)
    (out / K8S_CONFIGMAP.relative_to(ROOT)).parent.mkdir(parents=True)
    (out / "extproc").symlink_to(ROOT / "extproc", target_is_directory=True)
    # A variable of this shell must not reach the files: the script clears them itself.
    env = {**os.environ, "PYTHON": sys.executable, "CA_BUNDLE": "/nowhere/ca.pem"}
    done = subprocess.run(
        ["bash", str(out / REGENERATE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_compose_envoy_config_is_up_to_date(regenerated: Path) -> None:
    name = "envoy/envoy.compose.yaml"
    shipped = COMPOSE_ENVOY.read_text()
    _assert_up_to_date(shipped, (regenerated / name).read_text(), name)
    # What the script renders is the bootstrap of the compose settings.
    expected = _render(COMPOSE_SETTINGS, any_keys=True)
    _assert_up_to_date(_strip_generated_header(shipped, COMPOSE_ENVOY.name), expected, name)


def test_kubernetes_configmap_is_up_to_date(regenerated: Path) -> None:
    name = "deploy/kubernetes/envoy-configmap.yaml"
    shipped = K8S_CONFIGMAP.read_text()
    _assert_up_to_date(shipped, (regenerated / name).read_text(), name)
    _strip_generated_header(shipped, K8S_CONFIGMAP.name)
    expected = _render(K8S_SETTINGS, any_keys=True)
    _assert_up_to_date(_configmap_bootstrap(), expected, name)


# -- (c) docker-compose.yml ------------------------------------------------------------


def test_compose_file_services() -> None:
    compose = _compose()
    assert "version" not in compose, "compose spec: no `version:` key"
    services = compose["services"]
    assert {"envoy", "extproc", "mock-llm"} <= set(services)

    envoy = services["envoy"]
    assert "./envoy/envoy.compose.yaml:/etc/envoy/envoy.yaml:ro" in envoy["volumes"]
    command = envoy["command"]
    assert command[command.index("-c") + 1] == "/etc/envoy/envoy.yaml"
    port = COMPOSE_SETTINGS.gateway_port
    # Published on loopback only: the development key is public knowledge.
    assert envoy["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "extproc" in envoy["depends_on"]
    assert f"/dev/tcp/127.0.0.1/{port}" in str(envoy["healthcheck"]["test"])
    assert "/healthz" in str(envoy["healthcheck"]["test"])

    extproc = services["extproc"]
    assert extproc["build"] == "."
    env = extproc["environment"]
    assert env["EXTPROC_LISTEN"] == "0.0.0.0"
    # Empty by default: the dev key then works only while no keys file is set.
    assert env["GATEWAY_API_KEYS"] == "${GATEWAY_API_KEYS:-}"
    assert Settings.from_env({"GATEWAY_API_KEYS": ""}).env_keys[0].get_secret_value() == (
        DEV_GATEWAY_KEY
    )
    assert env["MOCK_LLM_HOST"] == "mock-llm"
    assert "./config:/etc/llm-gateway:ro" in extproc["volumes"]
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        assert env[var] == f"${{{var}:-}}"
    assert set(env) <= DOCUMENTED_VARS, f"undocumented: {set(env) - DOCUMENTED_VARS}"

    mock = services["mock-llm"]
    assert mock["image"] == extproc["image"], "the mock runs from the gateway image"
    assert mock["command"][:3] == ["python", "-m", "extproc.mock_llm"]
    args = mock["command"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == str(COMPOSE_SETTINGS.mock_port)


def test_compose_envoy_config_points_at_compose_services() -> None:
    """The bootstrap reaches ext_proc and the mock by their compose service names."""
    endpoints = _bootstrap_endpoints(COMPOSE_ENVOY.read_text())
    services = set(_compose()["services"])
    s = COMPOSE_SETTINGS
    assert endpoints["listener"] == ("0.0.0.0", s.gateway_port)
    assert endpoints["extproc"] == ("extproc", s.extproc_port)
    assert endpoints["mock"] == ("mock-llm", s.mock_port)
    # Also the real APIs: ext_proc picks them when it has their keys.
    assert endpoints["anthropic"] == ("api.anthropic.com", 443)
    assert endpoints["openai"] == ("api.openai.com", 443)
    assert {"extproc", "mock-llm"} <= services


def test_compose_variables_are_documented() -> None:
    text = COMPOSE_FILE.read_text()
    # ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} and bare $VAR ($$ escapes).
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    used |= set(re.findall(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "the compose file passes variables through from the host"
    assert used <= DOCUMENTED_VARS, f"undocumented variables: {sorted(used - DOCUMENTED_VARS)}"


# -- (d) Kubernetes manifests ------------------------------------------------------------


def _containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def test_kubernetes_manifest_kinds() -> None:
    docs = _manifests()
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= set(docs)
    secret = docs["Secret"]
    assert "GATEWAY_API_KEYS" in secret["stringData"]
    assert "REPLACE-ME" in secret["stringData"]["GATEWAY_API_KEYS"], "placeholder, marked"


def test_kubernetes_ports_match_settings() -> None:
    docs = _manifests()
    s = K8S_SETTINGS
    containers = _containers(docs["Deployment"])
    assert set(containers) == {"envoy", "extproc", "mock-llm"}
    assert _ports(containers["envoy"]) == {"http": s.gateway_port}
    assert _ports(containers["extproc"]) == {"grpc": s.extproc_port, "admin": s.gateway_admin_port}
    assert _ports(containers["mock-llm"]) == {"mock": s.mock_port}

    mock_cmd = containers["mock-llm"]["command"]
    assert mock_cmd[mock_cmd.index("--host") + 1] == s.mock_host
    assert mock_cmd[mock_cmd.index("--port") + 1] == str(s.mock_port)

    # The bootstrap in the ConfigMap: listener for the Service, everything else loopback.
    endpoints = _bootstrap_endpoints(_configmap_bootstrap())
    assert endpoints["listener"] == ("0.0.0.0", s.gateway_port)
    assert endpoints["extproc"] == ("127.0.0.1", s.extproc_port)
    assert endpoints["mock"] == (s.mock_host, s.mock_port)
    assert endpoints["anthropic"] == ("api.anthropic.com", 443)

    service = docs["Service"]
    assert service["spec"]["selector"].items() <= (
        docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )
    [svc_port] = service["spec"]["ports"]
    assert svc_port["port"] == s.gateway_port
    assert svc_port["targetPort"] == "http"


def test_kubernetes_admin_server_stays_in_the_cluster() -> None:
    docs = _manifests()
    extproc = _containers(docs["Deployment"])["extproc"]
    env = {e["name"]: e.get("value") for e in extproc["env"]}
    # Listening on the pod IP for Prometheus and the Service, not for the world.
    assert env["GATEWAY_ADMIN_HOST"] == "0.0.0.0"
    service = docs["Service/llm-gateway-admin"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "admin", "port": K8S_SETTINGS.gateway_admin_port, "targetPort": "admin"}
    ]
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(K8S_SETTINGS.gateway_admin_port)
    assert "REPLACE-ME" in docs["Secret"]["stringData"]["GATEWAY_ADMIN_KEY"]
    # The root filesystem is read-only: the SQLite store lives on a volume.
    mount = next(m for m in extproc["volumeMounts"] if m["name"] == "audit")
    assert env["AUDIT_DB"].startswith(mount["mountPath"] + "/")
    refs = {e["secretRef"]["name"]: e["secretRef"].get("optional") for e in extproc["envFrom"]}
    assert refs["llm-gateway-audit-db"] is True


def test_compose_admin_server_on_loopback_and_postgres_optional() -> None:
    services = _compose()["services"]
    extproc = services["extproc"]
    port = COMPOSE_SETTINGS.gateway_admin_port
    assert extproc["ports"] == [f"127.0.0.1:{port}:{port}"]
    env = extproc["environment"]
    assert env["GATEWAY_ADMIN_HOST"] == "0.0.0.0"
    assert env["GATEWAY_ADMIN_KEY"] == "${GATEWAY_ADMIN_KEY:-}"
    assert env["AUDIT_DB"].startswith("/var/lib/llm-gateway/")
    assert "audit:/var/lib/llm-gateway" in extproc["volumes"]
    assert services["audit-db"]["profiles"] == ["postgres"]


def test_kubernetes_envoy_reads_the_configmap() -> None:
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    envoy = _containers(docs["Deployment"])["envoy"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount, _drain = envoy["volumeMounts"]
    assert volumes[mount["name"]]["configMap"]["name"] == _configmap()["metadata"]["name"]
    args = envoy["args"]
    assert args[args.index("-c") + 1] == f"{mount['mountPath']}/envoy.yaml"
    for probe in ("readinessProbe", "livenessProbe"):
        assert envoy[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_kubernetes_secrets_and_resources() -> None:
    docs = _manifests()
    containers = _containers(docs["Deployment"])
    refs = [e["secretRef"]["name"] for e in containers["extproc"]["envFrom"]]
    assert docs["Secret"]["metadata"]["name"] in refs
    for name, container in containers.items():
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        assert "readinessProbe" in container, name
    for name in ("extproc", "mock-llm"):
        assert containers[name]["image"] == "llm-gateway:latest"


def test_kubernetes_rolling_updates_drain() -> None:
    """The extproc container's preStop drains (llm-gateway drain), Envoy's waits for it
    through a shared volume, and the grace period covers DRAIN_TIMEOUT_S."""
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    containers = _containers(docs["Deployment"])
    drain = containers["extproc"]["lifecycle"]["preStop"]["exec"]["command"]
    assert drain[:4] == ["python", "-m", "extproc", "drain"]
    done = drain[drain.index("--done-file") + 1]
    wait = " ".join(containers["envoy"]["lifecycle"]["preStop"]["exec"]["command"])
    assert done in wait
    for name in ("envoy", "extproc"):
        mounts = {m["name"]: m["mountPath"] for m in containers[name]["volumeMounts"]}
        assert done.startswith(mounts["drain"] + "/"), name
    assert pod["terminationGracePeriodSeconds"] >= Settings().drain_timeout_s + 10
