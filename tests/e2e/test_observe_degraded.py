"""Observing under strain, end to end: several ext_proc workers report one sum of
metrics, and an audit database that cannot be reached costs records (counted), never
traffic."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from extproc.stack import Stack, free_port
from tests.helpers.admin import admin_get, metric, observed_stack, scrape
from tests.helpers.policy_stack import KEY_HEADERS, anthropic_body
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

REQUESTS = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Nothing listens there: every write fails.
    dead = f"postgresql://gateway:secret-pw@127.0.0.1:{free_port()}/audit"
    yield from observed_stack(
        tmp_path_factory, "degraded", extproc_workers=2, audit_database_url=SecretStr(dead)
    )


def test_traffic_flows_while_the_audit_database_is_down(stack: Stack) -> None:
    for i in range(REQUESTS):
        body = anthropic_body(f"Repeat after me: request {i}")
        resp = httpx.post(
            f"{stack.base_url}/v1/messages", json=body, headers=KEY_HEADERS, timeout=30
        )
        assert resp.status_code == 200, resp.text

    def dropped() -> bool:
        return metric(scrape(stack), "gateway_audit_dropped_total") > 0

    wait_for(dropped, "records counted as dropped", timeout=20)
    # The admin API says what is wrong, in JSON, without the URL or its password.
    resp = admin_get(stack, "/api/decisions")
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "store_unavailable"
    assert "secret-pw" not in resp.text
    assert stack.log_dir is not None
    logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
    assert "secret-pw" not in logs


def test_metrics_are_the_sum_over_every_worker(stack: Stack) -> None:
    samples = scrape(stack)
    # Only noop runs: responses bypass ext_proc, so their status is not the gateway's.
    total = metric(samples, "gateway_requests_total", api="anthropic", status="unseen")
    assert total == REQUESTS
    # Each worker wrote its own file; the admin server read both.
    assert stack.metrics_dir is not None
    files = list(stack.metrics_dir.glob("counter_*.db"))
    assert len(files) == 2
