"""Policy engine for an OpenAI Responses stream.

Events flow through at once, as their original bytes, unless a policy needs them:
output_text parts go through the chain's rewriters (hold-back window), and the text the
client was sent then also replaces the upstream's in the part's `.done` events, its
`output_item.done` and the terminal event's `response.output` (SDKs return that object,
not the deltas). When a policy gates tool calls, a client tool call item
(`function_call`, `custom_tool_call`, `local_shell_call`) is held from its
`output_item.added` until its `output_item.done`, decided, and every later event waits
behind it; at the terminal event the held items are released in order, a blocked call
replaced by a message item in its place. The engine renumbers what it must so the
client's stream stays valid: `sequence_number`s run on by one from the upstream's
first, and `output_index`es stay contiguous from 0 when an item is dropped. Reasoning
items (encrypted content) and refusals are never changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import BlockResponse, BlockToolCall, ToolCall, ToolOutcome
from extproc.core.request import ApiRequest
from extproc.dialects.responses import items as itm
from extproc.dialects.responses.message_engine import rewritten_message
from extproc.dialects.responses.numbering import (
    ITEM_ADDED,
    Numbering,
    new_event,
    upstream_index,
)
from extproc.engine.text import FaithfulText, TextPipeline
from extproc.engine.tools import ToolGate, watch_calls
from extproc.events import StreamEvent
from extproc.sse import Frame

log = logging.getLogger("extproc.engine")

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
ITEM_DONE = "response.output_item.done"
PART_ADDED = "response.content_part.added"
PART_DONE = "response.content_part.done"
TEXT_DELTA = "response.output_text.delta"
TEXT_DONE = "response.output_text.done"
# Events that ride along inside a text part without text of their own.
TEXT_PASSENGERS = frozenset({"response.output_text.annotation.added"})
TEXT_EVENTS = frozenset({PART_ADDED, PART_DONE, TEXT_DELTA, TEXT_DONE, *TEXT_PASSENGERS})


@dataclass(slots=True)
class _Part:
    """An output_text part going through the rewriters: what the client was sent."""

    text: FaithfulText[tuple[StreamEvent, str]]
    where: dict[str, Any]  # item_id, output_index, content_index: for new deltas
    sent: list[str] = field(default_factory=list)
    original: list[str] = field(default_factory=list)
    # From the first rewrite on, the text leaves as new deltas, never the originals.
    rewritten: bool = False


@dataclass(slots=True)
class _Call:
    """A client tool call held from its `added` until decided."""

    index: int  # upstream output_index
    added: dict[str, Any]  # the item as its `added` showed it
    events: list[StreamEvent]
    item: dict[str, Any] | None = None  # the done item
    call: ToolCall | None = None


class ResponsesStreamEngine:
    def __init__(self, chain: ResponsePolicies, request: ApiRequest) -> None:
        self.chain = chain
        self.request = request
        self.gate = ToolGate(chain, request) if chain.gates_tool_calls else None
        self.numbers = Numbering()
        self.ended = False  # the terminal event went out: nothing follows it
        self.parts: dict[tuple[int, int], _Part] = {}
        self.calls: dict[int, _Call] = {}  # held, by upstream output_index
        self.queue: list[StreamEvent | _Call] = []  # what waits behind a held call
        self.holding = False
        self.finalized = False
        # Final texts of rewritten parts and blocked calls' replacements, by item key,
        # for the `.done` items and the terminal response object.
        self.texts: dict[str, dict[int, str]] = {}
        self.replaced: dict[str, dict[str, Any] | None] = {}
        self.tools_seen = 0
        self.refused: set[int] = set()  # call items that came too late to decide
        # Message items whose parts went through the rewriters (others are rewritten
        # whole where they appear: in their `.done` and in the final object).
        self.tracked: set[str] = set()

    # -- public -----------------------------------------------------------------------

    async def feed(self, frames: list[Frame]) -> bytes:
        out: list[bytes] = []
        for frame in frames:
            await self._on_event(StreamEvent.from_frame(frame), out)
        return b"".join(out)

    async def flush(self) -> bytes:
        """Upstream ended without its terminal event: release what can be (the response
        handler then ends the stream with an in-format error)."""
        out: list[bytes] = []
        await self._finalize(out)
        return b"".join(out)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.cancel()

    # -- events -------------------------------------------------------------------

    async def _on_event(self, event: StreamEvent, out: list[bytes]) -> None:
        payload = event.payload if event.name is None or self.chain.observes_events else None
        name = event.name
        if name is None and isinstance(payload, dict):
            name = str(payload.get("type"))
        if self.chain.observes_events:
            self.chain.observe(str(name), payload, self.request)
        if self.ended:
            log.warning("dropped a %s after the response's terminal event", name)
        elif name in TERMINAL_EVENTS:
            await self._finalize(out)
            self._emit(self._terminal(event), out)
            self.ended = True
        elif name == "error":
            # What came before the error was produced: it goes first.
            await self._finalize(out)
            self._emit(event, out)
        elif name == ITEM_ADDED:
            self._on_item_added(event, out)
        else:
            self._on_item_event(name, event, out)

    def _on_item_added(self, event: StreamEvent, out: list[bytes]) -> None:
        payload = event.payload
        item = payload.get("item") if isinstance(payload, dict) else None
        index = payload.get("output_index") if isinstance(payload, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in itm.GATED_ITEMS and self.gate is not None:
            if not isinstance(index, int):
                log.warning("dropped a %s item without an output_index: not decidable", kind)
                return
            if self.finalized:
                # After the calls were decided (an `error` came): fail closed.
                log.warning("dropped a %s item that came after the response's end", kind)
                self.refused.add(index)
                return
        if not isinstance(item, dict) or not isinstance(index, int):
            self._send_after_text(event, out)
            return
        if kind in itm.PROVIDER_RUN_ITEMS:
            # Already executed at the provider: too late to stop, so only said. The
            # request's tools are what governs them (tool_filter's server_tools).
            log.info("model=%s: the provider ran %s", self.request.model, kind)
        if kind in itm.GATED_ITEMS and self.gate is not None:
            # Items come one after another: text still held back belongs before it.
            for part in self.parts.values():
                self._send_text(part, part.text.flush(), out)
            call = self.calls[index] = _Call(index, item, [event])
            self.queue.append(call)
            self.holding = True
            return
        self._send_after_text(event, out)

    def _on_item_event(self, name: str | None, event: StreamEvent, out: list[bytes]) -> None:
        if self.calls:
            index = upstream_index(event)
            held = self.calls.get(index) if index is not None else None
            if held is not None:
                # Everything of a held call waits with it, even after its done.
                if held.call is None:
                    held.events.append(event)
                    if name == ITEM_DONE:
                        self._on_call_done(held, event)
                return
        if self.refused and upstream_index(event) in self.refused:
            return
        if name == ITEM_DONE:
            if self.gate is not None and self._undecided_call(event):
                return
            if self.chain.watches_tool_calls:
                self._watch(event)
            self._send_after_text(self._item_done(event), out)
        elif self.chain.rewrites_text and name in TEXT_EVENTS:
            index = upstream_index(event)
            if index is None:
                self._send_after_text(event, out)
            else:
                self._on_text_event(str(name), event, index, out)
        else:
            self._send_after_text(event, out)

    def _undecided_call(self, event: StreamEvent) -> bool:
        """A finished client call that was never held (its `added` came without a usable
        output_index, or never came): it cannot be decided, so it is not sent."""
        payload = event.payload
        item = payload.get("item") if isinstance(payload, dict) else None
        if isinstance(item, dict) and item.get("type") in itm.GATED_ITEMS:
            log.warning("dropped a %s that was never held for a decision", item.get("type"))
            return True
        return False

    def _on_call_done(self, call: _Call, event: StreamEvent) -> None:
        payload = event.payload
        item = payload.get("item") if isinstance(payload, dict) else None
        found = itm.tool_call(item, self.tools_seen) if isinstance(item, dict) else None
        if found is None or self.gate is None:
            return  # an incomplete call: never reaches the client
        assert isinstance(item, dict)
        call.item, call.call = item, found
        self.tools_seen += 1
        self.gate.submit(found)
        watch_calls(self.chain, self.request, [found])

    def _watch(self, event: StreamEvent) -> None:
        """A finished client call of an ungated stream, shown to the shadow policies."""
        payload = event.payload
        item = payload.get("item") if isinstance(payload, dict) else None
        if isinstance(item, dict) and item.get("type") in itm.GATED_ITEMS:
            found = itm.tool_call(item, self.tools_seen)
            if found is not None:
                self.tools_seen += 1
                watch_calls(self.chain, self.request, [found])

    # -- text -----------------------------------------------------------------------

    def _on_text_event(self, name: str, event: StreamEvent, index: int, out: list[bytes]) -> None:
        payload = event.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("content_index"), int):
            self._send(event, out)
            return
        key = (index, payload["content_index"])
        part = self.parts.get(key)
        if name == PART_ADDED:
            self._send_after_text(event, out)
            added = payload.get("part")
            if isinstance(added, dict) and added.get("type") == "output_text":
                self.tracked.add(str(payload.get("item_id", "")))
                rewriters = self.chain.text_rewriters(self.request)
                where = {k: payload.get(k) for k in ("item_id", "output_index", "content_index")}
                self.parts[key] = _Part(FaithfulText(TextPipeline(rewriters)), where)
        elif part is None:
            self._send_after_text(event, out)
        elif name == TEXT_DELTA:
            delta = payload.get("delta")
            text = delta if isinstance(delta, str) else ""
            part.original.append(text)
            self._send_text(part, part.text.feed((event, text), text), out)
            if part.rewritten:
                self.numbers.changed()  # this original is not sent: numbers close up
        elif name in TEXT_PASSENGERS:
            self._send_text(part, part.text.feed((event, ""), ""), out)
        elif name == TEXT_DONE:
            sent = self._close_part(key, part, out)
            if sent == payload.get("text"):
                self._send(event, out)
            else:
                self._send(new_event({**payload, "text": sent, "logprobs": []}), out)
        elif name == PART_DONE:
            self._close_part(key, part, out)  # a part whose .done never came
            del self.parts[key]
            texts = self.texts.get(str(part.where.get("item_id", "")), {})
            done = payload.get("part")
            if key[1] in texts and isinstance(done, dict):
                new_part = {**done, "text": texts[key[1]], "logprobs": []}
                self._send(new_event({**payload, "part": new_part}), out)
            else:
                self._send(event, out)
        else:
            self._send_text(part, part.text.feed((event, ""), ""), out)

    def _close_part(self, key: tuple[int, int], part: _Part, out: list[bytes]) -> str:
        """Send what the part still holds; the text the client got, recorded for the
        `.done` copies and the final object whenever it differs from the upstream's."""
        self._send_text(part, part.text.flush(), out)
        sent = "".join(part.sent)
        if sent != "".join(part.original):
            self.texts.setdefault(str(part.where.get("item_id", "")), {})[key[1]] = sent
        return sent

    def _send_text(
        self, part: _Part, pieces: list[tuple[StreamEvent, str] | str], out: list[bytes]
    ) -> None:
        for piece in pieces:
            if isinstance(piece, str):
                part.rewritten = True
                self.numbers.changed()
                if piece:
                    part.sent.append(piece)
                    self._send(new_event(self._delta(part.where, piece)), out)
            else:
                event, text = piece
                part.sent.append(text)
                if part.rewritten:
                    # An original released after rewritten text (a passenger or a
                    # held delta) follows the last number sent, whatever was merged.
                    self.numbers.changed()
                self._send(event, out)

    @staticmethod
    def _delta(where: dict[str, Any], text: str) -> dict[str, Any]:
        # sequence_number is set when sent.
        return {"type": TEXT_DELTA, "sequence_number": 0, **where, "delta": text, "logprobs": []}

    def _item_done(self, event: StreamEvent) -> StreamEvent:
        """A finished item, carrying the text its parts were sent with."""
        if not self.chain.rewrites_text:
            return event
        payload = event.payload
        item = payload.get("item") if isinstance(payload, dict) else None
        if not isinstance(item, dict):
            return event
        self._rewrite_untracked(item)
        texts = self.texts.get(itm.item_key(item))
        if not texts:
            return event
        assert isinstance(payload, dict)
        return new_event({**payload, "item": itm.with_texts(item, texts)})

    def _rewrite_untracked(self, item: dict[str, Any]) -> None:
        """A message whose text never streamed as parts (it first shows whole, in its
        `.done` or the final object): rewritten whole, and recorded for every copy."""
        key = itm.item_key(item)
        if item.get("type") != "message" or key in self.tracked or key in self.texts:
            return
        new = rewritten_message(item, self.chain, self.request)
        if new is item:
            # Nothing changed (or a shadow rewrite): remembered all the same, so the
            # copy in the final object is not rewritten, and counted, a second time.
            self.texts[key] = {}
            return
        old_parts, new_parts = item.get("content"), new.get("content")
        assert isinstance(old_parts, list) and isinstance(new_parts, list)
        self.texts[key] = {
            n: part["text"]
            for n, (part, was) in enumerate(zip(new_parts, old_parts, strict=True))
            if part is not was
        }

    # -- the end ----------------------------------------------------------------------

    async def _finalize(self, out: list[bytes]) -> None:
        """Decide the held calls and release everything held, in upstream order."""
        if self.finalized:
            return
        self.finalized = True
        for at, part in list(self.parts.items()):  # text the upstream never finished
            self._close_part(at, part, out)
        self.parts.clear()
        self.holding = False
        decisions: list[ToolOutcome] = await self.gate.results() if self.gate else []
        stop_all = next((d for d in decisions if isinstance(d, BlockResponse)), None)
        queue, self.queue = self.queue, []
        said = False
        for entry in queue:
            self.numbers.changed()  # what waited may have been overtaken: re-anchor
            if not isinstance(entry, _Call):
                self._emit(entry, out)
            elif entry.call is None or entry.item is None:
                # The upstream never finished it: it never reaches the client.
                self._replace(entry, None)
            elif stop_all is not None:
                # The first held call's place says why; the others go.
                self._replace(entry, None if said else stop_all.message, out)
                said = True
            elif (decision := decisions[entry.call.index]) is None:
                for event in entry.events:
                    self._emit(event, out)
            else:
                assert isinstance(decision, BlockToolCall)
                self._replace(entry, decision.message, out)
        self.numbers.changed()
        self.calls.clear()

    def _replace(self, entry: _Call, message: str | None, out: list[bytes] | None = None) -> None:
        """A held call that never reaches the client: a message item saying `message`
        in its place, or (None) nothing, later items closing up."""
        self._drop(entry.index)
        keys = itm.item_keys(entry.added, entry.item or {})
        if message is None or out is None:
            self.replaced.update(dict.fromkeys(keys))
            return
        done = self._emit_block(entry.index, itm.item_key(entry.added), message, out)
        self.replaced.update(dict.fromkeys(keys, done))

    def _emit_block(self, index: int, key: str, message: str, out: list[bytes]) -> dict[str, Any]:
        """A message item, in full, at a blocked call's place; the done item."""
        started = itm.message_item(key, "", status="in_progress")
        done = itm.message_item(key, message)
        at = {"output_index": index}
        where = {"item_id": done["id"], **at, "content_index": 0}
        for payload in (
            {"type": ITEM_ADDED, **at, "item": started},
            {"type": PART_ADDED, **where, "part": itm.text_part("")},
            {"type": TEXT_DELTA, **where, "delta": message, "logprobs": []},
            {"type": TEXT_DONE, **where, "text": message, "logprobs": []},
            {"type": PART_DONE, **where, "part": itm.text_part(message)},
            {"type": ITEM_DONE, **at, "item": done},
        ):
            self._emit(
                new_event({"type": payload.pop("type"), "sequence_number": 0, **payload}), out
            )
        return done

    def _drop(self, index: int) -> None:
        self.numbers.drop_item(index)

    def _terminal(self, event: StreamEvent) -> StreamEvent:
        """The terminal event, its `response.output` made to match what was sent."""
        if not self.replaced and not self.texts and not self.chain.rewrites_text:
            return event
        payload = event.payload
        response = payload.get("response") if isinstance(payload, dict) else None
        output = response.get("output") if isinstance(response, dict) else None
        if not isinstance(output, list):
            return event
        if self.chain.rewrites_text:
            for item in output:
                if isinstance(item, dict):
                    self._rewrite_untracked(item)
        new = itm.rewrite_output(output, self.replaced, self.texts)
        if new is None:
            return event
        assert isinstance(payload, dict) and isinstance(response, dict)
        return new_event({**payload, "response": {**response, "output": new}})

    # -- sending ----------------------------------------------------------------------

    def _send_after_text(self, event: StreamEvent, out: list[bytes]) -> None:
        """An event outside the text being rewritten: it waits behind text still held
        back, so it never overtakes (and outnumbers) what came before it."""
        if self.parts:
            part = next(reversed(self.parts.values()))
            self._send_text(part, part.text.feed((event, ""), ""), out)
        else:
            self._send(event, out)

    def _send(self, event: StreamEvent, out: list[bytes]) -> None:
        if self.holding:
            self.queue.append(event)
        else:
            self._emit(event, out)

    def _emit(self, event: StreamEvent, out: list[bytes]) -> None:
        out.append(self.numbers.numbered(event))
