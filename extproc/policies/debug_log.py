"""debug_log: logs every event the response carries; bodies only when asked for."""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson

from extproc.core.request import ApiRequest
from extproc.policies.base import Policy, PolicyConfig

log = logging.getLogger("extproc.debug_log")


class DebugLogConfig(PolicyConfig):
    type: Literal["debug_log"] = "debug_log"
    # Event payloads can hold personal data and secrets: off unless explicitly enabled.
    log_bodies: bool = False
    max_body_chars: int = 2000


class DebugLogPolicy(Policy[DebugLogConfig]):
    type = "debug_log"
    reads_requests = True
    observes_events = True

    async def on_request(self, request: ApiRequest) -> None:
        body = self._body(request.body) if self.config.log_bodies else ""
        log.info(
            "request api=%s model=%s stream=%s messages=%d%s",
            request.api,
            request.model,
            request.stream,
            len(request.body.get("messages") or []),
            body,
        )
        return None

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        size = len(orjson.dumps(payload)) if payload is not None else 0
        body = self._body(payload) if self.config.log_bodies and payload is not None else ""
        log.info("event model=%s type=%s bytes=%d%s", request.model, event_type, size, body)

    def _body(self, payload: Any) -> str:
        limit = self.config.max_body_chars
        text = orjson.dumps(payload).decode()
        return " body=" + (text if len(text) <= limit else text[:limit] + "...")
