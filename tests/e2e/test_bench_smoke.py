"""The benchmark harness works end to end: `python -m benchmarks.run --smoke`.

Without wrk (CI) the harness falls back to its Python load generator, so this runs
either way; it checks the JSON has every configuration, each valid and error-free.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    "direct",
    "passthrough",
    "noop",
    "noop_audit_off",
    "noop_streamed",
    "noop_limits",
    "string_replacement",
    "tool_call_judge",
    "strict",
    "strict_audit_off",
]
EXTPROC = CONFIGS[2:]

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(150)
def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
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
    for name in ("noop", "strict"):
        leak = result["configs"][name]["leak"]
        assert leak["requests_first"] >= 200 and leak["requests_total"] >= 400, leak
    assert result["machine"]["nproc"] >= 1 and result["machine"]["envoy"]
