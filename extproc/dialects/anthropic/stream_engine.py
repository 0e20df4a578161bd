"""Policy engine for an Anthropic Messages stream.

Events flow through at once, as their original bytes, unless a policy needs them:
text blocks go through the chain's rewriters; when a policy gates tool calls, a
`tool_use` block is held until complete and decided, and every block after it waits
with it, so the final order is always [other blocks] [block messages] [allowed tools].
Output block indices are assigned here, contiguous from 0, whatever was dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import BlockResponse, BlockToolCall, ToolCall, ToolOutcome
from extproc.core.request import ApiRequest
from extproc.engine.text import FaithfulText, TextPipeline
from extproc.engine.tools import ToolGate, parse_arguments, watch_calls
from extproc.events import StreamEvent
from extproc.sse import Frame

log = logging.getLogger("extproc.engine")
# Anthropic writes "index" right after "type": a look at the first bytes finds it.
_INDEX = re.compile(r'"index"\s*:\s*(\d+)')


# Tool calls the provider runs itself; they stream as blocks of these types.
_PROVIDER_RUN = frozenset({"server_tool_use", "mcp_tool_use"})


def peek_index(data: str | None) -> int | None:
    match = _INDEX.search(data, 0, 80) if data else None
    return int(match.group(1)) if match else None


def new_event(payload: dict[str, Any]) -> StreamEvent:
    """An event as the Messages API writes it: named by its type."""
    name = str(payload.get("type", "message"))
    raw = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
    return StreamEvent.made(raw, payload, name)


def _text_block(index: int, text: str) -> list[bytes]:
    return [
        new_event(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        ).raw,
        new_event(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            }
        ).raw,
        new_event({"type": "content_block_stop", "index": index}).raw,
    ]


def _with_index(event: StreamEvent, index: int) -> bytes:
    """The event's own bytes when its index is already right, else re-serialized."""
    payload = event.payload
    if not isinstance(payload, dict):
        return event.raw  # not a JSON object: nothing to renumber, passed as it came
    if event.frame is not None and payload.get("index") == index:
        return event.raw
    return new_event({**payload, "index": index}).raw


@dataclass(slots=True)
class _Block:
    upstream_index: int
    kind: str  # content block type: text, thinking, tool_use, ...
    out_index: int | None = None  # set when emitted (at once, or when released)
    text: FaithfulText[StreamEvent] | None = None
    held: bool = False
    # A tool_use shown to shadow policies once complete: its JSON is gathered on the way.
    watched: bool = False
    events: list[StreamEvent] = field(default_factory=list)  # held events, in order
    json_parts: list[str] = field(default_factory=list)
    start_payload: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
    call: ToolCall | None = None


class AnthropicStreamEngine:
    def __init__(self, chain: ResponsePolicies, request: ApiRequest) -> None:
        self.chain = chain
        self.request = request
        self.gate = ToolGate(chain, request) if chain.gates_tool_calls else None
        self.blocks: dict[int, _Block] = {}
        self.order: list[_Block] = []  # every block, in upstream order
        self.next_index = 0
        self.holding = False  # a gated tool_use started: later blocks wait for decisions
        self.started = False
        self.finalized = False
        self.ended = False  # message_stop or error sent: nothing more
        self.tools_seen = 0
        self.tool_use_sent = 0  # tool_use blocks that reached the client

    # -- public -----------------------------------------------------------------------

    async def feed(self, frames: list[Frame]) -> bytes:
        out: list[bytes] = []
        for frame in frames:
            await self._on_event(StreamEvent.from_frame(frame), out)
        return b"".join(out)

    async def flush(self) -> bytes:
        """Upstream ended: release what can be released (the response handler adds a
        terminator if the upstream's own never came)."""
        out: list[bytes] = []
        if not self.ended:
            await self._finalize(out)
        return b"".join(out)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.cancel()

    # -- events -------------------------------------------------------------------

    async def _on_event(self, event: StreamEvent, out: list[bytes]) -> None:
        if self._forward_delta(event, out):
            return
        payload = event.payload
        etype = event.name or (payload.get("type") if isinstance(payload, dict) else None)
        if self.chain.observes_events:
            self.chain.observe(str(etype), payload, self.request)
        if self.ended:
            return  # nothing may follow message_stop or error
        if not isinstance(payload, dict):
            self._pass(event, out)  # comments, garbage: untouched
            return
        if etype == "message_start":
            if self.started:
                log.warning("dropped a second message_start from upstream")
                return
            self.started = True
            out.append(event.raw)
        elif etype == "content_block_start":
            self._on_block_start(event, payload, out)
        elif etype == "content_block_delta":
            self._on_block_delta(event, payload, out)
        elif etype == "content_block_stop":
            self._on_block_stop(event, payload, out)
        elif etype == "message_delta":
            await self._finalize(out)
            out.append(self._message_delta(event, payload))
        elif etype == "message_stop":
            await self._finalize(out)
            self.ended = True
            out.append(event.raw)
        elif etype == "error":
            # Text still held back was produced before the error: it goes first.
            for block in self.order:
                if block.text is not None and not block.closed and not block.held:
                    self._send_text(block, block.text.flush(), out)
            self.ended = True
            out.append(event.raw)
        else:
            self._pass(event, out)  # ping and event types we do not know

    def _pass(self, event: StreamEvent, out: list[bytes]) -> None:
        """An event outside any block: it waits behind text still held back, if any."""
        block = self.order[-1] if self.order else None
        if block is not None and block.text is not None and not block.closed and not block.held:
            self._send_text(block, block.text.feed(event, ""), out)
        else:
            out.append(event.raw)

    def _send_text(self, block: _Block, items: list[StreamEvent | str], out: list[bytes]) -> None:
        for item in items:
            if isinstance(item, str):
                if item:
                    self._send(block, self._text_delta({"index": block.upstream_index}, item), out)
            elif item.name == "content_block_delta":
                self._send(block, item, out)
            else:
                out.append(item.raw)  # a passenger: ping, comment...

    def _forward_delta(self, event: StreamEvent, out: list[bytes]) -> bool:
        """The hot path: a delta of an open, unheld, unrenumbered block when no policy
        reads text goes out as its bytes, without parsing its JSON."""
        if (
            event.name != "content_block_delta"
            or self.chain.rewrites_text
            or self.chain.observes_events
        ):
            return False
        index = peek_index(event.data)
        block = self.blocks.get(index) if index is not None else None
        if block is None or block.held or block.watched or block.closed or block.out_index != index:
            return False
        out.append(event.raw)
        return True

    def _on_block_start(
        self, event: StreamEvent, payload: dict[str, Any], out: list[bytes]
    ) -> None:
        index = payload.get("index")
        block_payload = payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block_payload, dict):
            out.append(event.raw)
            return
        kind = str(block_payload.get("type"))
        if kind in _PROVIDER_RUN:
            # Already executed at the provider: too late to stop, so only said. The
            # request's tools are what governs them (tool_filter's server_tools).
            log.info(
                "model=%s: the provider ran %s %r", self.request.model, kind,
                block_payload.get("name"),
            )  # fmt: skip
        block = _Block(index, kind, start_payload=block_payload)
        self.blocks[index] = block
        self.order.append(block)
        if kind == "tool_use" and self.gate is not None:
            self.holding = True
        block.watched = kind == "tool_use" and self.chain.watches_tool_calls
        if kind == "text" and self.chain.rewrites_text:
            block.text = FaithfulText(TextPipeline(self.chain.text_rewriters(self.request)))
        if self.holding or self.finalized:
            block.held = True
            block.events.append(event)
            return
        block.out_index = self._take_index()
        if kind == "tool_use":
            self.tool_use_sent += 1
        out.append(_with_index(event, block.out_index))

    def _on_block_delta(
        self, event: StreamEvent, payload: dict[str, Any], out: list[bytes]
    ) -> None:
        block = self._block(payload)
        if block is None or block.closed:
            log.warning("dropped a delta for a block that is not open")
            return
        delta = payload.get("delta")
        if block.kind == "tool_use" and (block.held or block.watched) and isinstance(delta, dict):
            block.json_parts.append(str(delta.get("partial_json", "")))
            if block.held:
                block.events.append(event)
                return
        if block.text is not None and isinstance(delta, dict):
            text = str(delta.get("text", "")) if delta.get("type") == "text_delta" else ""
            # Other deltas of a text block (citations) wait behind its held-back text.
            self._send_text(block, block.text.feed(event, text), out)
            return
        self._send(block, event, out)

    def _on_block_stop(self, event: StreamEvent, payload: dict[str, Any], out: list[bytes]) -> None:
        block = self._block(payload)
        if block is None or block.closed:
            log.warning("dropped a stop for a block that is not open")
            return
        if block.text is not None:
            self._send_text(block, block.text.flush(), out)
        block.closed = True
        self._send(block, event, out)
        gated = block.held and self.gate is not None
        if block.kind == "tool_use" and (gated or block.watched):
            raw = "".join(block.json_parts)
            block.call = ToolCall(
                id=str(block.start_payload.get("id", "")),
                name=str(block.start_payload.get("name", "")),
                arguments=parse_arguments(raw),
                raw_arguments=raw,
                index=self.tools_seen,
            )
            self.tools_seen += 1
            if gated and self.gate is not None:
                self.gate.submit(block.call)
            watch_calls(self.chain, self.request, [block.call])

    # -- helpers ------------------------------------------------------------------

    def _block(self, payload: dict[str, Any]) -> _Block | None:
        index = payload.get("index")
        return self.blocks.get(index) if isinstance(index, int) else None

    def _take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    @staticmethod
    def _text_delta(payload: dict[str, Any], text: str) -> StreamEvent:
        return new_event(
            {
                "type": "content_block_delta",
                "index": payload.get("index"),
                "delta": {"type": "text_delta", "text": text},
            }
        )

    def _send(self, block: _Block, event: StreamEvent, out: list[bytes]) -> None:
        if block.held:
            block.events.append(event)
        else:
            assert block.out_index is not None
            out.append(_with_index(event, block.out_index))

    async def _finalize(self, out: list[bytes]) -> None:
        """End of content: decide held tool calls and release held blocks in a valid order."""
        if self.finalized:
            return
        self.finalized = True
        for block in self.order:  # an upstream that never closed a block: close it
            if block.closed or (block.kind == "tool_use" and block.held):
                continue
            if block.text is not None:
                self._send_text(block, block.text.flush(), out)
            if block.held:
                block.events.append(new_event({"type": "content_block_stop", "index": 0}))
            else:
                assert block.out_index is not None
                out.append(new_event({"type": "content_block_stop", "index": block.out_index}).raw)
            block.closed = True
        held = [b for b in self.order if b.held]
        if not held:
            return
        decisions: list[ToolOutcome] = await self.gate.results() if self.gate is not None else []
        stop_all = next((d for d in decisions if isinstance(d, BlockResponse)), None)
        messages = [d.message for d in decisions if isinstance(d, BlockToolCall)]
        allowed: list[_Block] = []
        for block in held:
            if block.kind == "tool_use":
                if block.call is not None and decisions[block.call.index] is None and not stop_all:
                    allowed.append(block)
                continue  # incomplete, blocked, or stopped: never reaches the client
            if block.closed:
                self._release(block, out)
        if stop_all is not None:
            messages = [stop_all.message]
        for message in messages:
            out.extend(_text_block(self._take_index(), message))
        for block in allowed:
            self._release(block, out)
        self.tool_use_sent += len(allowed)

    def _release(self, block: _Block, out: list[bytes]) -> None:
        block.out_index = self._take_index()
        block.held = False
        out.extend(_with_index(e, block.out_index) for e in block.events)
        block.events.clear()

    def _message_delta(self, event: StreamEvent, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        if (
            isinstance(delta, dict)
            and delta.get("stop_reason") == "tool_use"
            and self.tool_use_sent == 0
        ):
            # Every tool call was blocked: Claude Code and SDKs expect end_turn then.
            return new_event({**payload, "delta": {**delta, "stop_reason": "end_turn"}}).raw
        return event.raw
