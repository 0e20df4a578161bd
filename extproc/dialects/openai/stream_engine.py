"""Policy engine for an OpenAI chat.completion.chunk stream.

Chunks flow through as their original bytes unless a policy changes them. Content
deltas go through the chain's rewriters; when a policy gates tool calls, `tool_calls`
deltas are collected until the choice's `finish_reason`, then decided together
(concurrently), and re-emitted with contiguous indices. A blocked call becomes content
text; `finish_reason` becomes `stop` when no call is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.engine.text import FaithfulText, TextPipeline
from extproc.engine.tools import ToolGate, parse_arguments, split_decisions, watch_calls
from extproc.events import StreamEvent
from extproc.sse import Frame

DONE = "[DONE]"


@dataclass(slots=True)
class _Tool:
    index: int
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Choice:
    index: int
    text: FaithfulText[bytes] | None
    tools: dict[int, _Tool] = field(default_factory=dict)
    sent_content: bool = False
    finished: bool = False
    # The original chunks that carried only this choice's tool calls, held until the
    # calls are decided: when every call is allowed they go out as they came.
    held: list[bytes] = field(default_factory=list)
    # False once a tool call arrived in a chunk that carried more (it was split).
    faithful: bool = True
    # What a held chunk carried besides its tool calls (the role that opens the
    # message): sent first if the calls are re-written.
    opening: dict[str, Any] = field(default_factory=dict)


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class OpenAIStreamEngine:
    def __init__(self, chain: ResponsePolicies, request: ApiRequest) -> None:
        self.chain = chain
        self.request = request
        self.gated = bool(chain.gates_tool_calls)
        # Shadow policies see the calls of an ungated stream, which passes untouched.
        self.watched: dict[int, dict[int, _Tool]] | None = (
            {} if chain.watches_tool_calls and not self.gated else None
        )
        self.choices: dict[int, _Choice] = {}
        self.template: dict[str, Any] = {}  # top-level fields of the latest chunk
        self.usage: Any = None
        self.ended = False
        self.gates: list[ToolGate] = []

    async def feed(self, frames: list[Frame]) -> bytes:
        out: list[bytes] = []
        for frame in frames:
            await self._on_event(StreamEvent.from_frame(frame), out)
        return b"".join(out)

    async def flush(self) -> bytes:
        out: list[bytes] = []
        await self._finish_all(out)
        return b"".join(out)

    def close(self) -> None:
        for gate in self.gates:
            gate.cancel()

    # -- events -------------------------------------------------------------------

    async def _on_event(self, event: StreamEvent, out: list[bytes]) -> None:
        payload = event.payload
        is_done = event.data == DONE
        if self.chain.observes_events:
            kind = "done" if is_done else "chunk" if isinstance(payload, dict) else "other"
            self.chain.observe(kind, payload, self.request)
        if self.ended:
            return  # nothing may follow [DONE]
        if is_done:
            await self._finish_all(out)
            self.ended = True
            out.append(event.raw)
            return
        if not isinstance(payload, dict):
            self._pass(event.raw, out)
            return
        choices = payload.get("choices")
        if not isinstance(choices, list) or "error" in payload:
            self._pass(event.raw, out)  # in-stream errors and shapes we do not know
            return
        if not choices:
            await self._finish_all(out)  # the usage chunk comes after every finish
            out.append(event.raw)
            return
        if self.watched is not None:
            self._watch(choices)
        self.template = {k: v for k, v in payload.items() if k != "choices"}
        # Usage riding on a chunk belongs to that chunk only, not to ones we synthesize.
        self.usage = self.template.pop("usage", None)
        if "usage" in payload:
            self.template["usage"] = None
        if self.gated and len(choices) == 1 and self._tool_calls_only(choices[0]):
            state = self._state(choices[0]["index"])
            delta = choices[0]["delta"]
            self._text_before_calls(state, out)
            self._collect(state, delta["tool_calls"])
            state.opening.update((k, v) for k, v in delta.items() if k == "role")
            state.held.append(event.raw)
            return
        if len(choices) == 1 and self._content_only(choices[0]):
            # The common chunk: text only. Its bytes go out as they are unless rewritten.
            state = self._state(choices[0]["index"])
            content = choices[0]["delta"].get("content") or ""
            if content:
                self._break_hold(state, out)
                state.sent_content = True
            if state.text is None:
                out.append(event.raw)
                return
            self._emit_text(state, state.text.feed(event.raw, content), out)
            return
        pieces: list[bytes] = []
        changed = False
        for choice in choices:
            piece, same = await self._on_choice(choice)
            pieces.extend(piece)
            changed = changed or not same
        out.extend(pieces)
        if not changed:
            self._pass(event.raw, out)

    def _pass(self, raw: bytes, out: list[bytes]) -> None:
        """A chunk sent as it is: it waits behind content still held back, if any."""
        for state in self.choices.values():
            if state.text is not None and not state.finished:
                self._emit_text(state, state.text.feed(raw, ""), out)
                return
        out.append(raw)

    async def _on_choice(self, choice: Any) -> tuple[list[bytes], bool]:
        """The chunks this choice becomes, and whether that is the original unchanged."""
        if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
            return [], True
        state = self._state(choice["index"])
        raw_delta = choice.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        new_delta = dict(delta)
        same = True
        out: list[bytes] = []
        if not self._empty(delta):
            self._break_hold(state, out)
        content = delta.get("content")
        if "role" in delta and isinstance(content, str) and content and state.text is not None:
            # The role opens the message: it goes out before any (rewritten) text.
            role_delta = {k: v for k, v in delta.items() if k not in ("content", "tool_calls")}
            out.append(self._chunk(choice, role_delta, None))
            new_delta = {k: v for k, v in new_delta.items() if k not in role_delta}
        if isinstance(content, str) and content:
            state.sent_content = True
            if state.text is not None:
                # Text travels on its own chunk so it keeps its place in the text order.
                chunk = self._raw_chunk(state.index, {"content": content}, None)
                self._emit_text(state, state.text.feed(chunk, content), out)
                del new_delta["content"]
                same = False
        if self.gated and isinstance(delta.get("tool_calls"), list):
            self._text_before_calls(state, out)
            self._collect(state, delta["tool_calls"])
            state.faithful = False
            del new_delta["tool_calls"]
            same = False
        finish = choice.get("finish_reason")
        if not same and not self._empty(new_delta):
            out.append(self._chunk(choice, new_delta, None))
        if finish:
            before, new_finish, end_same = await self._finish_choice(state, str(finish))
            out.extend(before)
            if same and end_same:
                return out, True  # `out` only holds originals released ahead of this chunk
            out.append(self._chunk(choice, new_delta if same else {}, new_finish, self.usage))
            return out, False
        return out, same

    async def _finish_choice(self, state: _Choice, finish: str) -> tuple[list[bytes], str, bool]:
        """Chunks to send before the choice's finish chunk, its finish_reason, and whether
        the finish chunk can go out as it came."""
        if state.finished:
            # A second finish for the choice (some proxies repeat it): its calls were
            # decided and sent with the first.
            return [], finish, True
        state.finished = True
        before: list[bytes] = []
        same = True
        if state.text is not None:
            self._emit_text(state, state.text.flush(), before)
        if state.tools:
            same = False
            gate = ToolGate(self.chain, self.request)
            self.gates.append(gate)
            tools = [state.tools[i] for i in sorted(state.tools)]
            decided = self._calls(tools)
            for one in decided:
                gate.submit(one)
            watch_calls(self.chain, self.request, decided)
            messages, allowed = split_decisions(tools, await gate.results())
            if state.faithful and len(allowed) == len(tools):
                # Nothing blocked: the provider's own chunks, byte for byte.
                before.extend(state.held)
                return before, finish, True
            if state.opening:
                before.append(self._raw_chunk(state.index, state.opening, None))
            if messages:
                before.append(self._content_chunk(state, "\n\n".join(messages), separate=True))
            for n, tool in enumerate(allowed):
                call = {
                    "index": n,
                    "id": tool.id,
                    "type": "function",
                    "function": {"name": tool.name, "arguments": "".join(tool.parts)},
                }
                before.append(self._raw_chunk(state.index, {"tool_calls": [call]}, None))
            if finish == "tool_calls" and not allowed:
                finish = "stop"
        return before, finish, same

    # -- helpers ------------------------------------------------------------------

    def _state(self, index: int) -> _Choice:
        state = self.choices.get(index)
        if state is None:
            rewriters = self.chain.text_rewriters(self.request)
            state = _Choice(index, FaithfulText(TextPipeline(rewriters)) if rewriters else None)
            self.choices[index] = state
        return state

    @classmethod
    def _collect(cls, state: _Choice, deltas: list[Any]) -> None:
        cls._collect_into(state.tools, deltas)

    @staticmethod
    def _collect_into(tools: dict[int, _Tool], deltas: list[Any]) -> None:
        for item in deltas:
            if not isinstance(item, dict) or not isinstance(item.get("index"), int):
                continue
            tool = tools.setdefault(item["index"], _Tool(item["index"]))
            tool.id = str(item.get("id") or tool.id)
            raw_function = item.get("function")
            function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
            tool.name = str(function.get("name") or tool.name)
            if isinstance(function.get("arguments"), str):
                tool.parts.append(function["arguments"])

    def _emit_text(self, state: _Choice, items: list[bytes | str], out: list[bytes]) -> None:
        for item in items:
            if isinstance(item, str):
                if item:
                    out.append(self._raw_chunk(state.index, {"content": item}, None))
            else:
                out.append(item)

    @staticmethod
    def _content_only(choice: Any) -> bool:
        if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
            return False
        delta = choice.get("delta")
        return (
            isinstance(delta, dict)
            and isinstance(delta.get("content", ""), str)
            and set(delta) <= {"content", "role"}
            and not ("role" in delta and delta.get("content"))
            and not choice.get("finish_reason")
            and set(choice) <= {"index", "delta", "finish_reason", "logprobs"}
            and choice.get("logprobs") is None
        )

    @staticmethod
    def _tool_calls_only(choice: Any) -> bool:
        """A chunk of nothing but one choice's tool-call deltas (the role may open it)."""
        if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
            return False
        delta = choice.get("delta")
        return (
            isinstance(delta, dict)
            and isinstance(delta.get("tool_calls"), list)
            and set(delta) <= {"tool_calls", "role", "content", "refusal"}
            and not delta.get("content")
            and not delta.get("refusal")
            and not choice.get("finish_reason")
            and set(choice) <= {"index", "delta", "finish_reason", "logprobs"}
            and choice.get("logprobs") is None
        )

    @staticmethod
    def _empty(delta: dict[str, Any]) -> bool:
        return not delta or (set(delta) == {"content"} and not delta["content"])

    def _content_chunk(self, state: _Choice, text: str, separate: bool = False) -> bytes:
        if separate and state.sent_content:
            text = "\n\n" + text  # a block message is a paragraph of its own
        state.sent_content = True
        return self._raw_chunk(state.index, {"content": text}, None)

    def _raw_chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        return self._chunk({"index": index}, delta, finish)

    def _chunk(
        self,
        choice: dict[str, Any],
        delta: dict[str, Any],
        finish: str | None,
        usage: Any = None,
    ) -> bytes:
        new_choice = {**choice, "delta": delta, "finish_reason": finish}
        chunk = {**self.template, "choices": [new_choice]}
        if usage is not None:
            chunk["usage"] = usage
        return _data(chunk)

    def _break_hold(self, state: _Choice, out: list[bytes]) -> None:
        """Something else of this choice goes out while its tool-call chunks are held:
        they can no longer leave as they came, so the role they opened with goes now
        (the calls follow, re-written, once decided)."""
        if state.held and state.faithful:
            state.faithful = False
            if state.opening:
                out.append(self._raw_chunk(state.index, state.opening, None))
                state.opening = {}

    def _text_before_calls(self, state: _Choice, out: list[bytes]) -> None:
        """The first tool call of a choice: the text held back before it goes now (no
        match spans a call), so it reaches the client while the call waits for its
        decision, which may take a person minutes."""
        if state.text is not None and not state.tools:
            self._emit_text(state, state.text.flush(), out)

    def _watch(self, choices: list[Any]) -> None:
        """Gather the tool calls of an ungated stream; each choice's calls go to the
        shadow policies when it finishes."""
        assert self.watched is not None
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
                tools = self.watched.setdefault(choice["index"], {})
                self._collect_into(tools, delta["tool_calls"])
            if choice.get("finish_reason"):
                self._show_watched(choice["index"])

    def _show_watched(self, index: int) -> None:
        tools = self.watched.pop(index, None) if self.watched is not None else None
        if tools:
            watch_calls(self.chain, self.request, self._calls([tools[i] for i in sorted(tools)]))

    @staticmethod
    def _calls(tools: list[_Tool]) -> list[ToolCall]:
        calls = []
        for n, tool in enumerate(tools):
            raw = "".join(tool.parts)
            calls.append(ToolCall(tool.id, tool.name, parse_arguments(raw), raw, index=n))
        return calls

    async def _finish_all(self, out: list[bytes]) -> None:
        """Choices the upstream never finished: release what they hold (the pipeline adds
        an error and [DONE] if the upstream's own end never came)."""
        for index in list(self.watched or ()):
            self._show_watched(index)  # delivered, so shown even though unfinished
        for state in self.choices.values():
            if state.finished:
                continue
            state.finished = True
            # Its held tool calls never completed: they go, but not the role they opened.
            self._break_hold(state, out)
            if state.text is not None:
                self._emit_text(state, state.text.flush(), out)
