"""The LiteLLM proxy as a benchmark target: its virtualenv, its config, its process.

LiteLLM is installed into its own virtualenv (`benchmarks/.peers-venv`, by
`make bench-peers`), never into the gateway's. Each target writes a config.yaml into the
run directory (the harness's upstream for both APIs, a master key, no database, and
optionally the guardrail of `litellm_guardrail.py`) and starts `litellm` on it with one
worker, in an environment that keeps it off the internet: every LITELLM_LOCAL_* switch
on (model cost map, Anthropic beta headers... read from the package instead of fetched),
and HTTP(S) proxies pointing at a closed local port so that any other outgoing call
fails at once (loopback excepted: NO_PROXY).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks.gateway import BenchTarget, Config
from benchmarks.procs import Group, http_ok
from benchmarks.scenarios import Api
from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import free_port

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".peers-venv"
REQUIREMENTS = HERE / "requirements.txt"
GUARDRAIL = HERE / "litellm_guardrail.py"
GUARDRAIL_CLASS = "litellm_guardrail.BenchReplaceGuardrail"
STARTUP_S = 180.0  # LiteLLM imports a lot: ~15 s on an idle 2-core machine

# Read from the installed package instead of fetched at start-up.
LOCAL_SWITCHES = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
)
# Port 9 (discard) on loopback: nothing listens, so a stray outgoing call fails fast.
DEAD_PROXY = "http://127.0.0.1:9"
# Never inherited: a database (spend logs, keys) would add work and a dependency.
UNSET = ("DATABASE_URL", "DIRECT_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL")


def pinned() -> str:
    """The requirement line of requirements.txt, e.g. `litellm[proxy]==1.108.7`."""
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines()]
    return next(ln for ln in lines if ln and not ln.startswith("#"))


def pinned_version() -> str:
    return pinned().split("==", 1)[1]


def installed_version() -> str | None:
    """LiteLLM's version in the peers' virtualenv, None when it is not installed."""
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def check_venv() -> str:
    """The installed version; raises SystemExit with the fix when missing or not pinned."""
    version = installed_version()
    if version != pinned_version():
        found = f"LiteLLM {version}" if version else "no LiteLLM"
        raise SystemExit(
            f"{VENV} has {found}, the benchmark pins {pinned()}: run `make bench-peers` "
            "(it installs the pin into that virtualenv first)"
        )
    return version


def request_model(api: Api) -> str:
    model = orjson.loads(api.request)["model"]
    assert isinstance(model, str)
    return model


def config(
    anthropic: Api, anthropic_base: str, openai: Api | None, openai_base: str, guardrail: bool
) -> dict[str, Any]:
    """config.yaml: one deployment per API, under the model names the requests ask for."""
    models: list[dict[str, Any]] = [
        {
            "model_name": request_model(anthropic),
            # Anthropic provider: /v1/messages goes through LiteLLM's native messages
            # route, which relays the upstream's SSE bytes.
            "litellm_params": {
                "model": f"anthropic/{request_model(anthropic)}",
                "api_base": anthropic_base,
                "api_key": "sk-bench-upstream",
            },
        }
    ]
    if openai is not None:
        models.append(
            {
                "model_name": request_model(openai),
                "litellm_params": {
                    "model": f"openai/{request_model(openai)}",
                    "api_base": f"{openai_base}/v1",
                    "api_key": "sk-bench-upstream",
                },
            }
        )
    doc: dict[str, Any] = {
        "model_list": models,
        # The key every benchmark request carries (x-api-key): LiteLLM refuses to start
        # without a master key, and checks it on every request (no database: no virtual
        # keys, no spend logs).
        "general_settings": {"master_key": DEV_GATEWAY_KEY},
        "litellm_settings": {"callbacks": [], "success_callback": [], "failure_callback": []},
    }
    if guardrail:
        doc["guardrails"] = [
            {
                "guardrail_name": "bench-replace",
                "litellm_params": {
                    "guardrail": GUARDRAIL_CLASS,
                    "mode": "post_call",
                    "default_on": True,
                },
            }
        ]
    return doc


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (workers, if LiteLLM ever forks some)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class LiteLLMTarget(BenchTarget):
    """The LiteLLM proxy in the place of the gateway (`url` is where the load goes).

    A BenchTarget so that the harness's phases take it as they take ours. Its `kind`
    ("passthrough": no ext_proc) is only read by BenchTarget.start, replaced here. Its
    pid is also in `envoy_pid`, the process `paced.measure_point` measures in the
    gateway's place (recorded there as `gateway_envoy`; the peers report renames it).
    """

    guardrail: bool = False
    # The APIs LiteLLM serves: Anthropic always, OpenAI chat when given (the paced
    # upstream has only /v1/messages).
    anthropic: Api | None = None
    openai: Api | None = None
    pid: int = 0
    stats_file: Path | None = None
    children: list[int] = field(default_factory=list)

    def start(self) -> None:
        assert self.anthropic is not None
        log_dir = self.run_dir / self.config.name
        log_dir.mkdir(parents=True, exist_ok=True)
        doc = config(
            self.anthropic, self.upstream.url, self.openai, self.upstream.url, self.guardrail
        )
        config_path = log_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {name: "True" for name in LOCAL_SWITCHES}
        env.update(HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, ALL_PROXY=DEAD_PROXY)
        env.update(http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, all_proxy=DEAD_PROXY)
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        if self.guardrail:
            shutil.copyfile(GUARDRAIL, log_dir / GUARDRAIL.name)
            self.stats_file = log_dir / "guardrail-stats.json"
            env["BENCH_GUARDRAIL_STATS"] = str(self.stats_file)
        port = free_port()
        # `env -u` drops what must not be inherited, then execs LiteLLM (same pid).
        argv = ["env", *(f"-u{name}" for name in UNSET), str(VENV / "bin" / "litellm")]
        argv += ["--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--num_workers", "1"]
        self.group = group = Group(log_dir)
        try:
            self.pid = group.spawn("litellm", argv, env)
            url = f"http://127.0.0.1:{port}"
            group.wait(lambda: http_ok(f"{url}/health/liveliness"), "litellm", STARTUP_S)
        except BaseException:
            group.stop()
            raise
        self.url = url
        self.envoy_pid = self.pid
        self.children = descendants(self.pid)

    def watch(self) -> dict[str, int]:
        """The proxy's processes, by name, for the harness's CPU accounting."""
        out = {"litellm": self.pid}
        out.update({f"litellm_{pid}": pid for pid in self.children})
        return out

    def guardrail_stats(self, settle_s: float = 0.5) -> dict[str, Any]:
        """The guardrail's counters so far ({} without the guardrail or before a stream)."""
        if self.stats_file is None:
            return {}
        time.sleep(settle_s)  # the guardrail writes its file at most every 0.2 s
        if not self.stats_file.exists():
            return {}
        data: dict[str, Any] = json.loads(self.stats_file.read_text())
        return data


def litellm_configs() -> list[Config]:
    """The two LiteLLM rows; names are the rows of the table."""
    return [
        Config("litellm", "passthrough", "LiteLLM proxy, one worker, no guardrail"),
        Config(
            "litellm_guardrail",
            "passthrough",
            "LiteLLM proxy + a CustomGuardrail streaming hook: benchmark -> test run",
        ),
    ]


def environment_note() -> str:
    return ", ".join(f"{k}=True" for k in LOCAL_SWITCHES) + f"; HTTP(S)_PROXY={DEAD_PROXY}"
