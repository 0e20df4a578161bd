"""The fault suite's slice, `python -m soak.run --slice` (soak/README.md): every scenario
scaled down, about 30 s of load. Every loss figure must be 0, and the run must pass."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
def test_soak_slice(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "soak.run", "--slice", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=85,
    )
    took = time.monotonic() - started
    print(proc.stdout)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "slice"
    assert set(result["scenarios"]) >= set("abcdefg")
    errors = {k: s["error"] for k, s in result["scenarios"].items() if s["error"] is not None}
    assert not errors, (errors, proc.stderr[-3000:])
    losses = result["must_be_zero"]
    assert len(losses) >= 20, losses
    nonzero = {name: value for name, value in losses.items() if value != 0}
    assert not nonzero, nonzero
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert took < 60, f"the slice took {took:.0f} s"
