"""Check requests before they go upstream: allowed models, a max_tokens cap and denied
patterns.

- `allowed_models` (fnmatch globs, case-sensitive): any other model is rejected, 403.
- `max_tokens`: a larger `max_tokens` (OpenAI: also `max_completion_tokens`) is lowered
  to the cap (`max_tokens_mode: clamp`) or rejected with 400 (`reject`). A request that
  sets no limit is left alone.
- `deny_patterns` (regexes, case-insensitive) searched in every user-visible text of the
  request, system prompts and tool results included: a match is rejected with 400. The
  message does not say which pattern matched.

Checks run in that order except that denied patterns are checked before max_tokens is
clamped, so a rejected request is never modified. Messages use `deny_message` with
`{reason}`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from extproc.core.decisions import Deny
from extproc.core.request import ApiRequest
from extproc.policies.base import Policy, PolicyConfig
from extproc.policies.matching import check_format, compile_regex, matches_any


class RequestGuardConfig(PolicyConfig):
    type: Literal["request_guard"] = "request_guard"
    allowed_models: list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_tokens_mode: Literal["clamp", "reject"] = "clamp"
    deny_patterns: list[str] = Field(default_factory=list)
    deny_message: str = "Request rejected by the gateway policy: {reason}."

    @field_validator("deny_patterns")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            compile_regex(pattern, re.IGNORECASE)
        return value

    @field_validator("deny_message")
    @classmethod
    def _check_message(cls, value: str) -> str:
        return check_format(value, "deny_message", reason="r")


class RequestGuardPolicy(Policy[RequestGuardConfig]):
    type = "request_guard"
    reads_requests = True

    def __init__(self, config: RequestGuardConfig | None = None) -> None:
        super().__init__(config)
        self._deny = [re.compile(p, re.IGNORECASE) for p in self.config.deny_patterns]

    def _deny_with(self, status: int, reason: str) -> Deny:
        return Deny(status, self.config.deny_message.format(reason=reason))

    async def on_request(self, request: ApiRequest) -> Deny | None:
        cfg = self.config
        body = request.body
        if cfg.allowed_models is not None:
            model = request.model or str(body.get("model") or "")
            if not matches_any(model, cfg.allowed_models):
                return self._deny_with(403, f"model '{model}' is not allowed")
        if self._deny:
            for text in request.texts():
                if any(p.search(text) for p in self._deny):
                    return self._deny_with(400, "the request contains denied content")
        if cfg.max_tokens is not None:
            cap = cfg.max_tokens
            over: dict[str, int] = {}
            for key in request.dialect.max_tokens_fields:
                value = body.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                    over[key] = value
            if over and cfg.max_tokens_mode == "reject":
                key, value = next(iter(over.items()))
                return self._deny_with(400, f"{key} {value} exceeds the limit of {cap}")
            if over:
                request.replace_body({**body, **dict.fromkeys(over, cap)})
        return None
