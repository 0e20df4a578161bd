"""The configurations under test and how each one is started on its own free ports.

* direct: the load generator talks to the fast upstream itself;
* passthrough: the gateway's own Envoy bootstrap (as `llm-gateway run` renders it) with the
  ext_proc filter removed from http_filters, nothing else changed;
* every other configuration: the ext_proc server with a policy file, and the rendered
  bootstrap as is (what `llm-gateway run` starts); with `workers` > 1, that many ext_proc
  processes on consecutive ports, as `llm-gateway run` starts EXTPROC_WORKERS, and the
  bootstrap rendered with EXTPROC_WORKERS set so Envoy balances across them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from benchmarks.procs import Group, http_ok
from extproc.config import Settings
from extproc.contract import DEFAULT_MAX_STREAMS, EXTPROC_FILTER, FACTS_FILTER
from extproc.envoy_config import render
from extproc.gateway import Gateway, GatewayError
from extproc.processes import tcp_ready
from extproc.stack import envoy_binary, free_port, port_in_use

REPO = Path(__file__).resolve().parent.parent

Kind = Literal["direct", "passthrough", "extproc"]


class Upstream(Protocol):
    """What the gateway forwards to: the fast upstream, or the paced one (`paced.py`)."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class Config:
    name: str
    kind: Kind
    description: str
    policy_file: Path | None = None
    response_processing: Literal["auto", "always"] = "auto"
    # Decision records and request summaries written to SQLite (the default).
    audit: bool = True


def configurations(policy_files: dict[str, Path]) -> list[Config]:
    return [
        Config("direct", "direct", "load generator -> fast upstream, no gateway"),
        Config("passthrough", "passthrough", "gateway Envoy without the ext_proc filter"),
        Config(
            "noop",
            "extproc",
            "Envoy + ext_proc, noop chain (responses bypass ext_proc: the default)",
            REPO / "config" / "noop.yaml",
        ),
        Config(
            "noop_audit_off",
            "extproc",
            "noop with AUDIT_ENABLED=false: no request summaries written",
            REPO / "config" / "noop.yaml",
            audit=False,
        ),
        Config(
            "noop_streamed",
            "extproc",
            "noop chain with RESPONSE_PROCESSING=always: every body through ext_proc",
            REPO / "config" / "noop.yaml",
            response_processing="always",
        ),
        Config(
            "noop_limits",
            "extproc",
            "noop chain with per-caller limits: every response metered (token accounting)",
            policy_files["noop_limits"],
        ),
        Config(
            "string_replacement",
            "extproc",
            "hold-back text policy: 4 patterns never match, 1 matches 4x per stream",
            policy_files["string_replacement"],
        ),
        Config(
            "tool_call_judge",
            "extproc",
            "tool_call_judge on a text-only stream (judge never called)",
            policy_files["tool_call_judge"],
        ),
        Config(
            "strict",
            "extproc",
            "config/strict.yaml: guard, PII both ways, tool filter, judge, validation",
            REPO / "config" / "strict.yaml",
        ),
        Config(
            "strict_audit_off",
            "extproc",
            "strict with AUDIT_ENABLED=false: no decision records or request summaries",
            REPO / "config" / "strict.yaml",
            audit=False,
        ),
    ]


def label(name: str, workers: int) -> str:
    """How results name a configuration run with `workers` ext_proc processes: the name
    alone for one (or none), `noop x2` for two."""
    return name if workers <= 1 else f"{name} x{workers}"


def worker_counts(
    cfg: Config, counts: tuple[int, ...], only: tuple[str, ...] = ()
) -> tuple[int, ...]:
    """The ext_proc worker counts `cfg` is measured with: `counts` (or one worker when
    `only` names other configurations); (0,) without ext_proc, measured once."""
    if cfg.kind != "extproc":
        return (0,)
    return counts if not only or cfg.name in only else (1,)


def free_ports(count: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """The first of `count` consecutive free ports (EXTPROC_WORKERS takes EXTPROC_PORT,
    EXTPROC_PORT + 1, ...)."""
    for _ in range(attempts):
        first = free_port(host)
        ports = range(first, first + count)
        if ports[-1] <= 65535 and not any(port_in_use(host, p) for p in ports[1:]):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def start_envoy(
    group: Group, rendered: str, settings: Settings, concurrency: int
) -> tuple[int, str]:
    """The gateway's Envoy from the `rendered` bootstrap, once its listener takes
    connections: its pid and admin URL."""
    config_path = group.log_dir / "envoy.yaml"
    config_path.write_text(rendered)
    argv = [envoy_binary(), "-c", str(config_path), "--log-level", "warn"]
    argv += ["--disable-hot-restart", "--concurrency", str(concurrency)]
    pid = group.spawn("envoy", argv)
    admin_url = f"http://127.0.0.1:{settings.admin_port}"
    group.wait(lambda: http_ok(f"{admin_url}/ready"), "gateway envoy")
    group.wait(lambda: tcp_ready("127.0.0.1", settings.gateway_port), "gateway listener")
    return pid, admin_url


def strip_ext_proc(rendered: str, provider_of: dict[str, str] | None = None) -> str:
    """The same bootstrap without the ext_proc HTTP filter (its per-route config, and the
    request facts filter that feeds it).
    `provider_of` (cluster -> provider name) makes routes match the provider's name in
    x-gateway-upstream, which the benchmark requests carry, instead of the cluster name
    ext_proc would set (`anthropic-<hash of URL>` for a configured URL)."""
    doc: dict[str, Any] = yaml.safe_load(rendered)
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for net_filter in chain["filters"]:
                hcm = net_filter["typed_config"]
                # The request facts filter only serves ext_proc: it goes too.
                kept = [
                    f
                    for f in hcm["http_filters"]
                    if f["name"] not in (EXTPROC_FILTER, FACTS_FILTER)
                ]
                if not any(f["name"] == EXTPROC_FILTER for f in hcm["http_filters"]):
                    raise ValueError("rendered bootstrap has no ext_proc filter to remove")
                hcm["http_filters"] = kept
                for host in hcm["route_config"]["virtual_hosts"]:
                    for route in host["routes"]:
                        for header in route.get("match", {}).get("headers", []):
                            exact = header.get("string_match", {}).get("exact")
                            if exact in (provider_of or {}):
                                header["string_match"]["exact"] = (provider_of or {})[exact]
                        per_filter = route.get("typed_per_filter_config", {})
                        per_filter.pop(EXTPROC_FILTER, None)
                        if not per_filter:
                            route.pop("typed_per_filter_config", None)
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class BenchTarget:
    """One configuration, running: `url` is where the load goes."""

    config: Config
    upstream: Upstream
    run_dir: Path
    envoy_concurrency: int = 1
    # EXTPROC_MAX_STREAMS (requests one ext_proc process serves at once); None: default.
    max_streams: int | None = None
    # ext_proc processes (EXTPROC_WORKERS); ignored by configurations without ext_proc.
    workers: int = 1
    url: str = ""
    admin_url: str = ""  # the gateway Envoy's admin interface (its /stats)
    extproc_pid: int | None = None  # the first worker
    extproc_pids: list[int] = field(default_factory=list)  # every worker
    envoy_pid: int | None = None
    group: Group | None = None

    def start(self) -> None:
        if self.config.kind == "direct":
            self.url = self.upstream.url
            return
        workers = self.workers if self.config.kind == "extproc" else 1
        log_dir = self.run_dir / (self.config.name + (f"-x{workers}" if workers > 1 else ""))
        log_dir.mkdir(parents=True, exist_ok=True)
        first = free_ports(workers)
        taken = set(range(first, first + workers))

        def other_port() -> int:
            """A free port outside the ext_proc range and not given out yet."""
            while (found := free_port()) in taken:
                pass
            taken.add(found)
            return found

        settings = Settings(
            gateway_port=other_port(),
            admin_port=other_port(),
            extproc_port=first,
            # Rendered into the bootstrap: one endpoint per worker in the ext_proc cluster
            # (and its circuit breakers sized for all of them).
            extproc_workers=workers,
            # The judge URL of strict.yaml / tool_call_judge: a closed port. Text-only
            # streams never call the judge.
            mock_port=other_port(),
            upstream_anthropic_url=self.upstream.url,
            upstream_openai_url=self.upstream.url,
            policy_config=str(self.config.policy_file) if self.config.policy_file else None,
            response_processing=self.config.response_processing,
            audit_enabled=self.config.audit,
            audit_db=str(log_dir / "audit.db"),
            # `llm-gateway run` serves the admin API from a process of its own.
            gateway_admin_port=0,
            extproc_max_streams=self.max_streams or DEFAULT_MAX_STREAMS,
        )
        # The same configuration, and so the same decision, as `llm-gateway run`: a
        # chain that never looks at responses keeps them out of ext_proc. Loaded before
        # any process starts: a configuration the gateway refuses with this many workers
        # (per-caller limits without Redis) raises GatewayError here, not a crash later.
        gateway = Gateway.load(settings)
        self.group = group = Group(log_dir)
        try:
            if self.config.kind == "extproc":
                # As `llm-gateway run` starts EXTPROC_WORKERS (extproc/stack.py): worker i
                # serves EXTPROC_PORT + i and is named like its log there.
                for i in range(workers):
                    port = settings.extproc_port + i
                    argv = [sys.executable, "-m", "extproc", "serve", "--port", str(port)]
                    name = "extproc" if i == 0 else f"extproc-{i}"
                    self.extproc_pids.append(group.spawn(name, argv, settings.to_env()))
                self.extproc_pid = self.extproc_pids[0]
                for i in range(workers):
                    port = settings.extproc_port + i
                    group.wait(partial(tcp_ready, "127.0.0.1", port), f"ext_proc {i}")
            rendered = render(gateway)
            if self.config.kind == "passthrough":
                routes = gateway.router.upstreams.values()
                rendered = strip_ext_proc(rendered, {u.cluster: u.name for u in routes})
            self.envoy_pid, self.admin_url = start_envoy(
                group, rendered, settings, self.envoy_concurrency
            )
        except BaseException:
            group.stop()
            raise
        self.url = f"http://127.0.0.1:{settings.gateway_port}"

    @property
    def extproc(self) -> tuple[int, ...]:
        """Every ext_proc worker's pid (a subclass that sets only extproc_pid: that one)."""
        if self.extproc_pids:
            return tuple(self.extproc_pids)
        return () if self.extproc_pid is None else (self.extproc_pid,)

    def check_alive(self) -> None:
        if self.group is not None:
            self.group.check_alive()

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None


def refusal(exc: Exception, gw: BenchTarget) -> str | None:
    """Why the gateway refused to load this configuration with several ext_proc workers
    (per-caller limits need RATE_LIMIT_REDIS_URL then), or None. With one worker a
    refusal is a broken configuration, reported as a problem, not left out."""
    if not isinstance(exc, GatewayError) or gw.workers <= 1 or gw.group is not None:
        return None
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
