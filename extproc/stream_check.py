"""Run-time stream validation (`validate_streams`): checks what the client receives.

For debugging policies and providers: every violation of the stream invariants is
logged with the request's path and model. It costs a second parse of the output.
"""

from __future__ import annotations

import logging

import orjson

from extproc.apis import anthropic as anthropic_api
from extproc.apis import openai as openai_api
from extproc.apis.kind import ApiKind
from extproc.policies.base import ApiRequest
from extproc.sse import SSEFramer

log = logging.getLogger("extproc.validate")


class OutputValidator:
    def __init__(self, request: ApiRequest) -> None:
        self.request = request
        self.framer = SSEFramer(max_frame_bytes=1 << 30)
        self.count = 0
        self.violations: list[str] = []
        if request.api is ApiKind.ANTHROPIC:
            self._anthropic: anthropic_api.StreamValidator | None = anthropic_api.StreamValidator()
            self._openai: openai_api.StreamValidator | None = None
        else:
            options = request.body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            self._anthropic = None
            self._openai = openai_api.StreamValidator(expect_usage=usage)

    def feed(self, data: bytes, end_of_stream: bool) -> None:
        frames = self.framer.feed(data) if data else []
        if end_of_stream:
            frames += self.framer.finish()
        for frame in frames:
            if frame.data is None:
                continue
            if self._openai is not None:
                self._openai.feed(frame.data)
            elif self._anthropic is not None:
                try:
                    payload = orjson.loads(frame.data)
                except orjson.JSONDecodeError:
                    payload = None
                self._anthropic.feed(frame.event or "", payload)
        if end_of_stream:
            validator = self._openai or self._anthropic
            assert validator is not None
            self.violations = validator.finish()
            self.count = len(self.violations)
            for violation in self.violations:
                log.warning(
                    "stream violation %s model=%s: %s",
                    self.request.path,
                    self.request.model,
                    violation,
                )
