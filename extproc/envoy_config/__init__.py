"""The Envoy bootstrap for a gateway configuration, built as data (`bootstrap.py`) and
dumped as YAML; `llm-gateway render-envoy`, `llm-gateway run`, the shipped deployment
configs and the benchmarks all come from here."""

from __future__ import annotations

import yaml

from extproc.envoy_config.bootstrap import bootstrap, dynamic_bootstrap
from extproc.gateway import Gateway


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people to read: no anchors for repeated parts, no folded lines,
    strings with a newline in double quotes (`\\n`)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Envoy bootstrap for the LLM policy gateway, rendered by `llm-gateway render-envoy`\n"
    "# (extproc/envoy_config/) from the gateway's settings and policy file.\n"
    "# client -> listener -> ext_proc (auth, policies, routing header) -> router -> provider\n"
)


def render(gateway: Gateway, response_body: bool | None = None, any_keys: bool = False) -> str:
    """The bootstrap as YAML. `response_body` defaults to whether the configuration
    reads responses (`Gateway.reads_responses`)."""
    body = gateway.reads_responses if response_body is None else response_body
    doc = bootstrap(gateway, body, any_keys)
    return HEADER + _dump(doc)


def render_dynamic(gateway: Gateway, directory: str) -> str:
    """A bootstrap whose listener, routes and clusters Envoy reads from `directory`
    (`dynamic.write` puts them there, and again on every reload)."""
    return HEADER + _dump(dynamic_bootstrap(gateway, directory))


def _dump(doc: object) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)


__all__ = ["bootstrap", "render", "render_dynamic"]
