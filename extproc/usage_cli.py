"""`llm-gateway usage`: callers' use of their limits, read where the counters are (Redis,
shared by every worker), or asked of the running gateway's admin API when they live in
its process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from extproc.gateway import Gateway
from extproc.limit_report import CounterStoreError, open_counters, usage_report


def fetch_usage(gateway: Gateway, caller: str | None) -> list[dict[str, Any]]:
    """The report; RuntimeError saying why when it cannot be had."""
    settings = gateway.settings
    if not gateway.limits_active:
        raise RuntimeError("no caller has limits (README, 'Limits and budgets')")
    if settings.rate_limit_redis_url is not None:
        return asyncio.run(_from_counters(gateway, caller))
    key = settings.gateway_admin_key
    if key is None or not settings.gateway_admin_port:
        raise RuntimeError(
            "the counters live in the running gateway: set GATEWAY_ADMIN_KEY (the admin key "
            "`llm-gateway run` printed) and GATEWAY_ADMIN_PORT as the gateway has them"
        )
    url = f"http://{settings.gateway_admin_host}:{settings.gateway_admin_port}/api/usage"
    try:
        resp = httpx.get(
            url,
            params={"caller": caller} if caller else None,
            headers={"Authorization": f"Bearer {key.get_secret_value()}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach the gateway's admin server at {url}: {exc}") from None
    if resp.status_code != 200:
        message = resp.json().get("error", {}).get("message", resp.text[:200])
        raise RuntimeError(f"the admin server answered {resp.status_code}: {message}")
    report: list[dict[str, Any]] = resp.json()["usage"]
    return report


async def _from_counters(gateway: Gateway, caller: str | None) -> list[dict[str, Any]]:
    counters = open_counters(gateway.settings)
    try:
        return await usage_report(gateway, counters, caller)
    except CounterStoreError as exc:
        raise RuntimeError(f"the limit counters cannot be read: {exc}") from None
    finally:
        await counters.aclose()


def format_usage(report: list[dict[str, Any]]) -> str:
    rows = [("caller", "limit", "used", "max", "remaining", "resets at (UTC)")]
    for entry in report:
        for w in entry["windows"]:
            rows.append(
                (
                    entry["caller"],
                    w["limit"],
                    _number(w["used"]),
                    _number(w["max"]),
                    _number(w["remaining"]),
                    w["resets_at"],
                )
            )
    if len(rows) == 1:
        return "no caller has used a limited window yet\n"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"
