"""The bootstrap as YAML: plain for people to read, toggled by whether responses are
read, and accepted by the real Envoy (`envoy --mode validate`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml

from extproc.config import Settings
from extproc.contract import EXTPROC_FILTER
from extproc.envoy_config import bootstrap, render
from extproc.gateway import Gateway
from extproc.policy_config import PolicyFile
from extproc.stack import envoy_binary
from tests.helpers.pipeline import gateway_with, router_from


def processing_mode(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (ext_proc,) = [f for f in hcm["typed_config"]["http_filters"] if f["name"] == EXTPROC_FILTER]
    mode: dict[str, str] = ext_proc["typed_config"]["processing_mode"]
    return mode


def test_rendered_yaml_parses_to_the_bootstrap() -> None:
    gateway = gateway_with()
    text = render(gateway, response_body=True, any_keys=True)
    assert text.startswith("# Envoy bootstrap for the LLM policy gateway")
    assert yaml.safe_load(text) == bootstrap(gateway, True, True)


def test_rendered_yaml_has_no_anchors_or_aliases() -> None:
    """Repeated parts of the bootstrap (shared objects) are written out in full."""
    gateway = gateway_with(settings=Settings(extproc_workers=3))
    assert "&id" in yaml.safe_dump(bootstrap(gateway, True, True))  # PyYAML's default
    text = render(gateway, any_keys=True)
    events = list(yaml.parse(text))
    assert not any(isinstance(e, yaml.AliasEvent) for e in events)
    assert not any(getattr(e, "anchor", None) for e in events)


def test_strings_with_a_newline_are_double_quoted() -> None:
    text = render(gateway_with())
    (line,) = [ln for ln in text.splitlines() if "inline_string: " in ln and "START_TIME" in ln]
    assert line.rstrip().endswith('%UPSTREAM_CLUSTER%\\n"')


def test_response_body_toggles_processing_mode() -> None:
    gateway = gateway_with()
    assert processing_mode(render(gateway, response_body=True))["response_body_mode"] == (
        "FULL_DUPLEX_STREAMED"
    )
    assert processing_mode(render(gateway, response_body=False))["response_body_mode"] == "NONE"
    # By default: whether the configuration reads responses.
    assert not gateway.reads_responses
    assert processing_mode(render(gateway))["response_header_mode"] == "SKIP"
    reading = Gateway(
        settings=gateway.settings,
        keys=gateway.keys,
        router=gateway.router,
        policy_file=PolicyFile(),
        validate_streams=True,
    )
    assert processing_mode(render(reading))["response_header_mode"] == "SEND"


def envoy_validates(text: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert f"configuration '{path}' OK" in done.stdout + done.stderr


CA = certifi.where()
PROVIDERS: list[tuple[str, dict[str, Any]]] = [
    ("", {}),
    ("", {"extproc_workers": 4, "extproc_host": "extproc"}),
    ("", {"extproc_workers": 2, "extproc_uds_dir": "/run/llm-gateway"}),
    ("providers: {x: {api: openai, base_url: 'https://llm.example.com/v1'}}", {}),
    ("providers: {x: {api: openai, base_url: 'https://10.1.2.3:8443/v1'}}", {}),
    ("providers: {x: {api: openai, base_url: 'http://vllm.internal:8000/openai/v1'}}", {}),
    ("providers: {x: {api: anthropic, base_url: 'https://proxy.example/anthropic'}}", {}),
]


@pytest.mark.parametrize(("response_body", "any_keys"), [(True, True), (False, False)])
@pytest.mark.parametrize(
    ("providers", "settings"),
    PROVIDERS,
    ids=[
        "default",
        "workers",
        "unix-sockets",
        "https-name",
        "https-ipv4",
        "path-prefix",
        "https-prefix",
    ],
)
def test_envoy_accepts_the_config(
    providers: str, settings: dict[str, Any], response_body: bool, any_keys: bool, tmp_path: Path
) -> None:
    s = Settings.model_validate({"ca_bundle": CA, **settings})
    gateway = gateway_with(router_from(providers, s), s)
    envoy_validates(render(gateway, response_body=response_body, any_keys=any_keys), tmp_path)
