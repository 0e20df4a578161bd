"""Telling a bot (Slack, PagerDuty) that a call waits for a person, and that it ended.

The bot answers on the admin API (`POST /api/approvals/{id}`); the body it is sent names
that URL. Delivery is best effort: a webhook that fails is logged (by host, never the
URL, which often carries a token) and the call still waits for an answer from the web
view or the API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("extproc.approvals")

WEBHOOK_TIMEOUT_S = 5.0


class Webhooks:
    def __init__(self) -> None:
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, url: str, event: str, approval: dict[str, Any], answer_url: str) -> None:
        body = {
            "type": event,
            "approval": approval,
            "answer": {
                "method": "POST",
                "url": answer_url,
                "headers": {"Authorization": "Bearer <admin key>"},
                "body": {"decision": "approve | deny", "reason": "optional text"},
            },
        }
        task = asyncio.create_task(self._post(url, body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        host = urlsplit(url).hostname
        try:
            # A client per message: they are rare, and a desk outlives event loops.
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
                response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            log.warning("approval webhook to %s failed: %s", host, type(exc).__name__)
            return
        if response.status_code >= 300:
            log.warning("approval webhook to %s answered %d", host, response.status_code)

    async def aclose(self) -> None:
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=WEBHOOK_TIMEOUT_S)
