"""The chunk grammar of one OpenAI chat completions stream, checked as the client
receives it (`validate_streams` and the tests)."""

from __future__ import annotations

import orjson

from extproc.dialects.openai.models import (
    ChunkChoice,
    StreamError,
    ToolCallDelta,
    parse_stream_payload,
)
from extproc.sse import Frame


class _ToolCallState:
    __slots__ = ("arguments", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.arguments: list[str] = []


class _ChoiceState:
    __slots__ = ("finished", "tool_calls")

    def __init__(self) -> None:
        self.finished = False
        self.tool_calls: dict[int, _ToolCallState] = {}


class StreamValidator:
    """Checks the chunk grammar of one chat completions stream; see :meth:`finish`."""

    def __init__(self, expect_usage: bool = False) -> None:
        self._expect_usage = expect_usage
        self._violations: list[str] = []
        self._choices: dict[int, _ChoiceState] = {}
        self._chunks = 0
        self._done = False
        self._error = False
        self._usage_chunks = 0

    def _fail(self, message: str) -> None:
        self._violations.append(message)

    def feed(self, frame: Frame) -> None:
        """Feed one SSE event as the client received it."""
        if frame.data is not None:
            self.feed_data(frame.data)

    def feed_data(self, data: str) -> None:
        """Feed the raw text of one ``data:`` field, ``[DONE]`` included."""
        if data.strip() == "[DONE]":
            if self._done:
                self._fail("duplicate [DONE]")
            self._done = True
            return
        if self._done:
            self._fail("data after [DONE]")
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._fail(f"data is not valid JSON: {exc}")
            return
        if self._error:
            self._fail("data after an in-stream error")
        try:
            parsed = parse_stream_payload(payload)
        except ValueError as exc:
            self._fail(str(exc))
            return
        if isinstance(parsed, StreamError):
            self._error = True
            return
        self._chunks += 1
        if not parsed.choices:
            if parsed.usage is not None:
                self._usage_chunks += 1
                if self._usage_chunks > 1:
                    self._fail("duplicate usage chunk")
            return
        if self._usage_chunks:
            self._fail("chunk with choices after the usage chunk")
        for choice in parsed.choices:
            self._on_choice(choice)

    def _on_choice(self, choice: ChunkChoice) -> None:
        state = self._choices.get(choice.index)
        if state is None:
            state = self._choices[choice.index] = _ChoiceState()
            if choice.delta.role != "assistant":
                self._fail(
                    f"choice {choice.index}: first delta has role {choice.delta.role!r}, "
                    "expected 'assistant'"
                )
        if state.finished:
            if choice.finish_reason is not None:
                self._fail(f"choice {choice.index}: second finish_reason")
            else:
                self._fail(f"choice {choice.index}: delta after finish_reason")
            return
        for call in choice.delta.tool_calls or ():
            self._on_tool_call(choice.index, state, call)
        if choice.finish_reason is not None:
            state.finished = True
            if choice.finish_reason == "tool_calls" and not state.tool_calls:
                self._fail(f"choice {choice.index}: finish_reason tool_calls without tool calls")

    def _on_tool_call(self, choice: int, state: _ChoiceState, call: ToolCallDelta) -> None:
        where = f"choice {choice}: tool call {call.index}"
        function = call.function
        tool = state.tool_calls.get(call.index)
        if tool is None:
            expected = len(state.tool_calls)
            if call.index != expected:
                self._fail(f"choice {choice}: tool call index {call.index}, expected {expected}")
            if call.id is None or function is None or function.name is None:
                self._fail(f"{where}: first delta lacks id or function.name")
            tool = state.tool_calls[call.index] = _ToolCallState(call.index)
        elif call.id is not None or call.type is not None or (function and function.name):
            self._fail(f"{where}: later delta repeats id, type or function.name")
        if function is not None and function.arguments is not None:
            tool.arguments.append(function.arguments)

    def finish(self) -> list[str]:
        """The violations found (empty list: the stream is valid)."""
        violations = list(self._violations)
        if not self._done:
            violations.append("stream ended without [DONE]")
        if self._error:
            return violations
        if self._chunks == 0:
            violations.append("stream has no chunks")
        for index, state in sorted(self._choices.items()):
            if not state.finished:
                violations.append(f"choice {index}: no finish_reason")
            for tool in state.tool_calls.values():
                text = "".join(tool.arguments)
                try:
                    orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    violations.append(
                        f"choice {index}: tool call {tool.index} arguments are not valid JSON "
                        f"({text[:60]!r}: {exc})"
                    )
        if self._expect_usage and self._usage_chunks == 0:
            violations.append("usage was requested but no usage chunk was sent")
        return violations
