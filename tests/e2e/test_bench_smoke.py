"""The benchmark harness works end to end: `python -m benchmarks.run --smoke`.

Without wrk (CI) the harness falls back to its Python load generator, so this runs
either way; it checks the JSON has every configuration, each valid and error-free, and
the paced-stream section (C upstream and client, built with gcc on the way). noop is
measured again with two ext_proc workers (`--extproc-workers 1,2 --workers-configs
noop`, about 10 s more): its figures are the sums over both processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    "direct",
    "passthrough",
    "noop",
    "noop x2",
    "noop_audit_off",
    "noop_streamed",
    "noop_limits",
    "string_replacement",
    "tool_call_judge",
    "strict",
    "strict_audit_off",
]
EXTPROC = CONFIGS[2:]
PACED = ["passthrough", "noop", "noop x2", "noop_streamed", "string_replacement", "strict"]
WORKERS = ["--extproc-workers", "1,2", "--workers-configs", "noop"]

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(200)
def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", *WORKERS, "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=190,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "| Figure |" in proc.stdout
    result = json.loads(out.read_text())
    assert list(result["configs"]) == CONFIGS
    for name, cfg in result["configs"].items():
        assert cfg["valid"], (name, cfg["problems"])
        assert cfg["totals"]["errors"] == 0, name
        assert {(t["api"], t["concurrency"]) for t in cfg["throughput"]} == {
            ("anthropic", 1),
            ("anthropic", 4),
            ("openai", 4),
            ("responses", 4),
        }, name
        for item in cfg["throughput"]:
            assert item["ok"] > 0 and item["rps"] > 0 and item["events_per_s"] > 0, name
        for item in cfg["latency"]:
            assert item["completed"] == item["requests"], name
            assert 0 < item["ttfb_p50_ms"] <= item["ttlb_p99_ms"], name
        if name in EXTPROC:
            slow = cfg["slow_streams"]
            assert slow["completed"] == slow["streams"] == 16 and slow["all_open_at_once"]
            assert slow["peak_rss_kib"] >= slow["rss_before_kib"] > 0
            cpu = next(
                t for t in cfg["throughput"] if t["api"] == "anthropic" and t["concurrency"] == 4
            )
            assert cpu["extproc_cpu_s_per_1k_events"] > 0, name
    for name in ("noop", "noop x2", "strict"):
        leak = result["configs"][name]["leak"]
        assert leak["requests_first"] >= 200 and leak["requests_total"] >= 400, leak
    assert result["machine"]["nproc"] >= 1 and result["machine"]["envoy"]
    assert "## Paced streams" in proc.stdout
    check_paced(result["paced"])
    check_workers(result, proc.stdout)


def check_workers(result: dict[str, Any], stdout: str) -> None:
    """Every configuration names its worker count; noop x2 ran two ext_proc processes."""
    assert result["plan"]["extproc_workers"] == [1, 2]
    assert result["plan"]["workers_configs"] == ["noop"]
    assert result["skipped"] == {}
    for section in (result["configs"], result["paced"]["configs"]):
        for name, cfg in section.items():
            expected = 0 if name in ("direct", "passthrough") else 2 if name == "noop x2" else 1
            assert cfg["workers"] == expected, name
            assert cfg["config"] == name.removesuffix(" x2"), name
    one, two = result["configs"]["noop"], result["configs"]["noop x2"]
    assert len(one["slow_streams"]["per_worker"]) == 1
    assert len(two["slow_streams"]["per_worker"]) == 2
    # Two processes, each with its own interpreter: the summed RSS is about twice one.
    assert two["leak"]["rss_first_kib"] > 1.5 * one["leak"]["rss_first_kib"]
    assert "## ext_proc workers" in stdout
    assert "| noop: Anthropic req/s, c=4 |" in stdout
    assert "| noop: paced ext_proc CPU µs / event, c=16 |" in stdout


def check_paced(paced: dict[str, Any]) -> None:
    """16 streams of 32 events, every one complete and correct, every event timed."""
    assert not paced["problems"] and list(paced["configs"]) == PACED
    assert paced["concurrencies"] == [16] and paced["events_per_stream"] == 32
    for name, cfg in paced["configs"].items():
        assert cfg["valid"], (name, cfg["problems"])
        (point,) = cfg["points"]
        streams = point["streams"]
        assert point["errors"] == 0 and streams["bad"] == 0, (name, point["error_samples"])
        assert streams["ok"] == streams["started"] >= 16, name
        assert point["streams_in_window"] > 0 and point["events_in_window"] > 0, name
        timed = point["delay_measured"]
        assert timed["unmeasured"] == 0, name
        # One delay per upstream event (merged ones each count).
        assert point["event_delay_ms"]["count"] >= point["events_in_window"] > 0, name
        assert 0 < point["event_delay_ms"]["p50"] <= point["event_delay_ms"]["max"], name
        assert 0 < point["ttfb_ms"]["p50"] <= point["ttfb_ms"]["max"], name
        assert point["cpu_us_per_event"]["gateway_envoy"] > 0, name
        assert "added" in point, name
        if name == "passthrough":
            assert "extproc_messages_per_response" not in point
        else:
            assert point["cpu_us_per_event"]["extproc"] > 0, name
            assert point["extproc_cpu_us_per_message"] > 0, name
        # Stamps survive every configuration but a rewrite, whose text is timed by offset.
        if name == "string_replacement":
            assert timed["by_text"] > 0
        else:
            assert timed["by_text"] == 0 and timed["stamped"] == point["events_in_window"]
    configs = paced["configs"]
    messages = {n: c["points"][0].get("extproc_messages_per_response") for n, c in configs.items()}
    # The fast path: the request headers only (Envoy read the model of the small body);
    # streamed: the body and every event as well.
    assert messages["noop"] == {"received": 1.0, "sent": 1.0}
    assert messages["noop_streamed"]["received"] >= 32 + 3
    assert paced["configs"]["passthrough"]["max_concurrency_within_limit"] in (0, 16)
