"""Callers with limits in the end-to-end tests: a keys file whose callers carry their own
limits, their usage as the admin API reports it (charges land just after a response
ends, so tests wait for them), and the UTC windows the limits are counted in."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from extproc.keys import digest
from extproc.stack import Stack
from tests.helpers.admin import admin_get, observed_stack
from tests.helpers.wait import wait_for

# Caller name -> its own `limits:` (None: its chain's alone), and its chain.
Callers = Mapping[str, tuple[dict[str, Any] | None, str | None]]


def key_for(caller: str) -> str:
    """The (test-only) gateway key of a caller of `write_keys_file`."""
    return f"sk-gw-limits-{caller}"


def write_keys_file(path: Path, callers: Callers) -> Path:
    """A keys file with one entry per caller (JSON, which YAML reads), its key `key_for`."""
    entries = []
    for name, (limits, chain) in callers.items():
        entry: dict[str, Any] = {"name": name, "key_sha256": digest(key_for(name)).hex()}
        if chain is not None:
            entry["chain"] = chain
        if limits is not None:
            entry["limits"] = limits
        entries.append(entry)
    path.write_text(json.dumps({"callers": entries}, indent=1))
    return path


def limited_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    policy: str,
    callers: Callers,
    **overrides: Any,
) -> Iterator[Stack]:
    """A whole stack with its admin server, `policy` as its policy file and `callers` in
    its keys file. Use from a module fixture."""
    keys = write_keys_file(tmp_path_factory.mktemp(f"{name}-keys") / "keys.yaml", callers)
    yield from observed_stack(tmp_path_factory, name, policy, keys_file=str(keys), **overrides)


def usage_windows(st: Stack, caller: str) -> dict[str, dict[str, Any]]:
    """`GET /api/usage?caller=`: the caller's windows by name (`tokens.per_day`)."""
    resp = admin_get(st, "/api/usage", caller=caller)
    assert resp.status_code == 200, resp.text
    (entry,) = resp.json()["usage"]
    assert entry["caller"] == caller
    return {w["limit"]: w for w in entry["windows"]}


def wait_usage(
    st: Stack,
    caller: str,
    limit: str,
    check: Callable[[float], bool],
    what: str,
    timeout: float = 10,
) -> dict[str, Any]:
    """The caller's `limit` window once its `used` passes `check`."""
    seen: dict[str, Any] = {}

    def ready() -> bool:
        seen.update(usage_windows(st, caller)[limit])
        return check(seen["used"])

    try:
        wait_for(ready, f"{caller}'s {limit} used {what}", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (last seen: {seen.get('used')})") from None
    return seen


def wait_used(
    st: Stack, caller: str, limit: str, used: float, timeout: float = 10
) -> dict[str, Any]:
    """The caller's `limit` window once exactly `used` was charged to it."""
    return wait_usage(
        st, caller, limit, lambda v: math.isclose(v, used, abs_tol=1e-9), f"== {used}", timeout
    )


def seconds_to_utc_midnight(now: float | None = None) -> float:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp() - moment.timestamp()


def seconds_left_in_minute(now: float | None = None) -> float:
    return 60 - (time.time() if now is None else now) % 60


def fresh_minute(margin_s: float = 5.0) -> int:
    """The current UTC minute (epoch minutes), once at least `margin_s` of it remain:
    near its end, the next one is waited for, so a per-minute count is not reset midway
    through a test."""
    minute = int(time.time() // 60)
    if seconds_left_in_minute() < margin_s:
        wait_for(lambda: int(time.time() // 60) > minute, "the next UTC minute", margin_s + 2)
        minute = int(time.time() // 60)
    return minute


def current_minute() -> int:
    return int(time.time() // 60)
