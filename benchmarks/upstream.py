"""The fast upstream: a dedicated Envoy answering with `direct_response` bodies.

No artificial delay: each request gets the whole canned body at once. Routes:

* `x-mock-chunk-delay-ms` present: proxied to the embedded mock LLM (slow streams that
  stay open, for the memory test);
* `x-bench-response: json`: the non-streaming Message / chat.completion;
* otherwise by path: the 200-event Anthropic stream on /v1/messages, the 200-chunk OpenAI
  stream on /v1/chat/completions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import Group, http_ok
from benchmarks.scenarios import Api
from extproc.processes import tcp_ready
from extproc.stack import envoy_binary, free_port

JSON_HEADER = "x-bench-response"
MAX_BODY = 4 * 1024 * 1024


def _direct(path: str, body_file: Path, ctype: str, json_only: bool) -> dict[str, Any]:
    match: dict[str, Any] = {"path": path}
    if json_only:
        match["headers"] = [{"name": JSON_HEADER, "string_match": {"exact": "json"}}]
    return {
        "match": match,
        "direct_response": {"status": 200, "body": {"filename": str(body_file)}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": ctype},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            },
            {
                "header": {"key": "cache-control", "value": "no-cache"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            },
        ],
    }


def bootstrap(
    port: int, admin_port: int, mock_port: int, apis: dict[str, Api], body_dir: Path
) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [
        {
            "match": {
                "prefix": "/",
                "headers": [{"name": "x-mock-chunk-delay-ms", "present_match": True}],
            },
            "route": {"cluster": "mock", "timeout": "0s"},
        }
    ]
    for api in apis.values():
        stream_file = body_dir / f"{api.name}.sse"
        json_file = body_dir / f"{api.name}.json"
        stream_file.write_bytes(api.stream_body)
        json_file.write_bytes(api.json_body)
        routes.append(_direct(api.path, json_file, "application/json", json_only=True))
        routes.append(_direct(api.path, stream_file, "text/event-stream; charset=utf-8", False))
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "codec_type": "AUTO",
        "request_timeout": "0s",
        "route_config": {
            "name": "upstream",
            "max_direct_response_body_size_bytes": MAX_BODY,
            "virtual_hosts": [{"name": "upstream", "domains": ["*"], "routes": routes}],
        },
        # Read the whole request before answering: a direct response sent while the
        # request body is still arriving makes Envoy close the connection (no keep-alive).
        "http_filters": [
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": MAX_BODY,
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    admin = {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
    return {
        "admin": {"address": admin},
        "static_resources": {
            "listeners": [
                {
                    "name": "upstream",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "mock",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "mock",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": mock_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


@dataclass
class FastUpstream:
    """The upstream Envoy plus the mock LLM behind it, for the whole benchmark run."""

    run_dir: Path
    apis: dict[str, Api]
    concurrency: int = 1
    port: int = 0
    admin_port: int = 0
    mock_port: int = 0
    group: Group | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def envoy_pid(self) -> int:
        assert self.group is not None
        return self.group.pid("envoy")

    def start(self) -> None:
        self.port, self.admin_port, self.mock_port = free_port(), free_port(), free_port()
        log_dir = self.run_dir / "upstream"
        log_dir.mkdir(parents=True, exist_ok=True)
        config = bootstrap(self.port, self.admin_port, self.mock_port, self.apis, log_dir)
        config_path = log_dir / "envoy.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.group = group = Group(log_dir)
        try:
            group.spawn(
                "mock-llm",
                [sys.executable, "-m", "extproc.mock_llm", "--port", str(self.mock_port)],
            )
            group.spawn(
                "envoy",
                [
                    envoy_binary(),
                    "-c",
                    str(config_path),
                    "--log-level",
                    "warn",
                    "--disable-hot-restart",
                    "--concurrency",
                    str(self.concurrency),
                ],
            )
            group.wait(lambda: tcp_ready("127.0.0.1", self.mock_port), "mock LLM")
            group.wait(lambda: http_ok(f"http://127.0.0.1:{self.admin_port}/ready"), "envoy")
            group.wait(lambda: tcp_ready("127.0.0.1", self.port), "upstream listener")
        except BaseException:
            group.stop()
            raise

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None
