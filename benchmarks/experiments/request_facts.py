"""What routing from Envoy's reading of a request body saves and costs (issue #15):
Envoy CPU and ext_proc CPU per request, with the request facts filter (one gRPC
message) and without it (two: headers, then the buffered body), for bodies of a few
sizes; and what the JSON parser alone costs Envoy per byte, which sets
`contract.FACTS_MAX_BODY_BYTES`.

The ext_proc here is a minimal servicer (no policy, no records): it shows the
difference the message makes, not the gateway's whole cost. wrk drives each Envoy
(c=8, one connection per wrk thread) at a direct response, so no upstream runs.

    python -m benchmarks.experiments.request_facts [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import yaml
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from google.protobuf import json_format

from extproc.contract import FACTS_NAMESPACE, REQUEST_ONLY_MODE, SKIP_BODY_MODE
from extproc.envoy_config.bootstrap import _request_facts_filter
from extproc.stack import envoy_binary, free_port

_TYPES = "type.googleapis.com/envoy.extensions"
SIZES = (1_000, 10_000, 19_000)
PARSER_SIZES = (10_000, 100_000, 1_000_000)


class Minimal(ep_grpc.ExternalProcessorServicer):
    """Skips the body when Envoy read the model, else answers the body as it is."""

    skip = json_format.ParseDict(SKIP_BODY_MODE, processing_mode_pb2.ProcessingMode())

    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: Any
    ) -> AsyncIterator[ep.ProcessingResponse]:
        async for req in requests:
            if req.HasField("request_headers"):
                reply = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
                if FACTS_NAMESPACE in req.metadata_context.filter_metadata:
                    reply.mode_override.CopyFrom(self.skip)
                yield reply
            elif req.HasField("request_body"):
                yield ep.ProcessingResponse(request_body=ep.BodyResponse())


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    ep_grpc.add_ExternalProcessorServicer_to_server(Minimal(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def bootstrap(port: int, admin: int, extproc: int | None, facts: str) -> dict[str, Any]:
    """`facts`: "gated" (the gateway's filter), "always" (json_to_metadata on every
    body, for the parser's cost) or "none"; `extproc`: its port, or None for none."""
    filters: list[dict[str, Any]] = []
    if facts == "gated":
        filters.append(_request_facts_filter())
    elif facts == "always":
        filters.append(_request_facts_filter()["typed_config"]["extension_config"])
    if extproc is not None:
        config: dict[str, Any] = {
            "@type": f"{_TYPES}.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": "extproc"}},
            "processing_mode": REQUEST_ONLY_MODE,
        }
        if facts != "none":
            config["allow_mode_override"] = True
            config["allowed_override_modes"] = [SKIP_BODY_MODE]
            config["metadata_options"] = {"forwarding_namespaces": {"untyped": [FACTS_NAMESPACE]}}
        filters.append({"name": "envoy.filters.http.ext_proc", "typed_config": config})
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
        }
    )
    hcm = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": filters,
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    clusters = []
    if extproc is not None:
        endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": extproc}}}
        clusters.append(
            {
                "name": "extproc",
                "type": "STATIC",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
                "load_assignment": {
                    "cluster_name": "extproc",
                    "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                },
            }
        )
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": address,
                    "per_connection_buffer_limit_bytes": 16 << 20,
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
            "clusters": clusters,
        },
    }


def body(size: int) -> bytes:
    """A Messages request of about `size` bytes: short turns of plain text."""
    rng = random.Random(size)
    turns, doc = [], b""
    while True:
        text = "".join(rng.choice(string.ascii_letters + " ") for _ in range(200))
        turns.append({"role": "user" if len(turns) % 2 == 0 else "assistant", "content": text})
        doc = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": turns}).encode()
        if len(doc) >= size:
            return doc


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, data: bytes, pids: list[int], seconds: int, work: Path) -> list[float]:
    """Requests served and µs of CPU per request of each process in `pids`."""
    script = work / "post.lua"
    (work / "body.json").write_bytes(data)
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
        f'local f = io.open("{work / "body.json"}", "rb")\nwrk.body = f:read("*a")\n'
    )
    before = [cpu_s(p) for p in pids]
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{int(seconds)}s", "-s", str(script), f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = [cpu_s(p) for p in pids]
    served = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    return [float(served), *((a - b) * 1e6 / served for a, b in zip(after, before, strict=True))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def start(argv: list[str]) -> int:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            return proc.pid

        def envoy(name: str, extproc: int | None, facts: str) -> tuple[int, int]:
            port = free_port()
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump(bootstrap(port, free_port(), extproc, facts)))
            pid = start(
                [envoy_binary(), "-c", str(path), "--concurrency", "1", "-l", "error",
                 "--base-id", str(len(procs) + 40), "--disable-hot-restart"]
            )  # fmt: skip
            return port, pid

        try:
            xp = free_port()
            xp_pid = start(
                [sys.executable, "-m", "benchmarks.experiments.request_facts", "--serve", str(xp)]
            )
            envoys = {
                "two messages": envoy("buffered", xp, "none"),
                "facts, one message": envoy("facts", xp, "gated"),
                "parser only": envoy("parser", None, "always"),
                "Envoy only": envoy("bare", None, "none"),
            }
            time.sleep(2.0)
            print("| body bytes | path | req/s | Envoy µs/request | ext_proc µs/request |")
            print("|---|---|---|---|---|")
            for size in SIZES:
                data = body(size)
                for name in ("two messages", "facts, one message"):
                    port, pid = envoys[name]
                    served, env_us, xp_us = measure(port, data, [pid, xp_pid], args.seconds, work)
                    rate = served / args.seconds
                    print(f"| {len(data):,} | {name} | {rate:,.0f} | {env_us:.0f} | {xp_us:.0f} |")
            print("\n| body bytes | Envoy µs/request, JSON parsed | without | ns per byte |")
            print("|---|---|---|---|")
            for size in PARSER_SIZES:
                data = body(size)
                parsed = measure(
                    envoys["parser only"][0], data, [envoys["parser only"][1]], args.seconds, work
                )
                bare = measure(
                    envoys["Envoy only"][0], data, [envoys["Envoy only"][1]], args.seconds, work
                )
                per_byte = (parsed[1] - bare[1]) * 1000 / len(data)
                print(f"| {len(data):,} | {parsed[1]:.0f} | {bare[1]:.0f} | {per_byte:.1f} |")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


if __name__ == "__main__":
    main()
