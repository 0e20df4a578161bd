"""debug_log: logs every event the response carries; bodies only when asked for."""

from __future__ import annotations

import builtins
import logging
from typing import Any, ClassVar, Literal

import orjson

from extproc.policies.base import ApiRequest, Policy, PolicyConfig

log = logging.getLogger("extproc.debug_log")


class DebugLogConfig(PolicyConfig):
    type: Literal["debug_log"] = "debug_log"
    # Event payloads can hold personal data and secrets: off unless explicitly enabled.
    log_bodies: bool = False
    max_body_chars: int = 2000


class DebugLogPolicy(Policy):
    type = "debug_log"
    Config: ClassVar[builtins.type[PolicyConfig]] = DebugLogConfig
    observes_events = True

    async def on_request(self, request: ApiRequest) -> None:
        body = self._body(request.body) if self._bodies else ""
        log.info(
            "request api=%s model=%s stream=%s messages=%d%s",
            request.api.value,
            request.model,
            request.stream,
            len(request.body.get("messages") or []),
            body,
        )
        return None

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        size = len(orjson.dumps(payload)) if payload is not None else 0
        body = self._body(payload) if self._bodies and payload is not None else ""
        log.info("event model=%s type=%s bytes=%d%s", request.model, event_type, size, body)

    @property
    def _bodies(self) -> bool:
        return bool(getattr(self.config, "log_bodies", False))

    def _body(self, payload: Any) -> str:
        limit = int(getattr(self.config, "max_body_chars", 2000))
        text = orjson.dumps(payload).decode()
        return " body=" + (text if len(text) <= limit else text[:limit] + "...")
