"""Talking to a stack's admin server from the end-to-end tests: its JSON API (waiting
for records, which are written in batches off the hot path) and its metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from extproc.stack import Stack, free_port
from tests.helpers.stack import running_stack
from tests.helpers.wait import wait_for

ADMIN_KEY = "adm-canary-0b7c4e9a1f"  # a canary: it must never show up in output


def observed_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    config: str | None = None,
    extra_env: dict[str, str] | None = None,
    **overrides: Any,
) -> Iterator[Stack]:
    """A whole stack with its admin server (key ADMIN_KEY) and, given `config`, that
    policy file; `overrides` are more Settings fields. Use from a module fixture."""
    log_dir = tmp_path_factory.mktemp(name)
    if config is not None:
        (log_dir / "policy.yaml").write_text(config)
        overrides["policy_config"] = str(log_dir / "policy.yaml")
    with running_stack(
        log_dir,
        extra_env=extra_env,
        gateway_admin_port=free_port(),
        gateway_admin_key=SecretStr(ADMIN_KEY),
        **overrides,
    ) as st:
        yield st


def admin_get(st: Stack, path: str, key: str = ADMIN_KEY, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{st.admin_url}{path}",
        params=params,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def decisions(st: Stack, **filters: Any) -> list[dict[str, Any]]:
    resp = admin_get(st, "/api/decisions", **filters)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["decisions"])


def wait_decisions(st: Stack, count: int = 1, timeout: float = 15, **filters: Any) -> list[Any]:
    """At least `count` decisions matching the filters, once written."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = decisions(st, **filters)
        return len(found) >= count

    wait_for(enough, f"{count} decision(s) with {filters}", timeout)
    return found


def request_detail(st: Stack, request_id: str, timeout: float = 15) -> dict[str, Any]:
    """A request's summary and decisions, once its summary was written."""
    detail: dict[str, Any] = {}

    def written() -> bool:
        resp = admin_get(st, f"/api/requests/{request_id}")
        if resp.status_code != 200 or resp.json().get("request") is None:
            return False
        detail.update(resp.json())
        return True

    wait_for(written, f"request {request_id}'s summary", timeout)
    return detail


def scrape(st: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    return scrape_url(st.admin_url)


def scrape_url(admin_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an admin server's /metrics (one that is no Stack's too)."""
    resp = httpx.get(f"{admin_url}/metrics", timeout=10)
    assert resp.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def metric(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
