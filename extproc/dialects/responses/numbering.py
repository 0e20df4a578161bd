"""The numbers a Responses stream's client checks, kept valid whatever the engine adds,
drops or merges: `sequence_number` (strictly increasing by one) and `output_index`
(contiguous from 0).

Untouched numbering passes as it came, the provider's garbage included; once events were
added, dropped or merged (`changed`), the next provider event is anchored to follow the
last number sent. Numbers are patched in the event's bytes, so nothing else of it
changes. The top-level fields are written near the start, and nothing nested carries
these names.
"""

from __future__ import annotations

import re

import orjson

from extproc.events import StreamEvent

ITEM_ADDED = "response.output_item.added"
_SEQ = re.compile(rb'"sequence_number"\s*:\s*(-?\d+)')
_INDEX = re.compile(rb'"output_index"\s*:\s*(\d+)')


def new_event(payload: dict[str, object]) -> StreamEvent:
    """An event as the Responses API writes it: named by its type."""
    name = str(payload.get("type", ""))
    raw = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
    return StreamEvent.made(raw, payload, name)


def _replace(raw: bytes, found: re.Match[bytes], value: int) -> bytes:
    return raw[: found.start(1)] + str(value).encode() + raw[found.end(1) :]


def last_sequence(data: bytes) -> int | None:
    """The sequence number of the last event in `data`, if it has one."""
    at = data.rfind(b'"sequence_number"')
    found = _SEQ.match(data, at) if at >= 0 else None
    return int(found.group(1)) if found else None


def upstream_index(event: StreamEvent) -> int | None:
    """The event's output_index as the provider numbered it."""
    if event.frame is None:
        value = event.payload.get("output_index")
        return value if isinstance(value, int) else None
    found = _INDEX.search(event.raw)
    return int(found.group(1)) if found else None


class Numbering:
    __slots__ = ("_changed", "_index_map", "_last_seq", "_next_index", "_offset", "_shifted")

    def __init__(self) -> None:
        self._offset = 0  # added to the provider's sequence numbers
        self._changed = False
        self._last_seq: int | None = None  # the last number the client got
        self._index_map: dict[int, int] = {}  # provider's output_index -> the client's
        self._next_index = 0
        self._shifted = False  # some output_index differs from the provider's

    def changed(self) -> None:
        """Events were added, dropped or merged: the numbers close up after them."""
        self._changed = True

    def drop_item(self, index: int) -> None:
        """An item that never reaches the client: later items close up."""
        self._shifted = self._changed = True
        self._index_map.pop(index, None)

    def numbered(self, event: StreamEvent) -> bytes:
        """The event's bytes as the client gets them."""
        name = event.name
        if name is None and isinstance(event.payload, dict):
            name = str(event.payload.get("type"))  # an event without its `event:` line
        index = None
        if name == ITEM_ADDED or self._shifted:
            index = upstream_index(event)
        if index is not None and name == ITEM_ADDED:
            self._index_map[index] = self._next_index
            self._next_index += 1
            self._shifted = self._shifted or self._index_map[index] != index
        if event.frame is None:  # the gateway's own: numbered here
            payload = dict(event.payload)
            seq = 0 if self._last_seq is None else self._last_seq + 1
            payload["sequence_number"] = self._last_seq = seq
            self._changed = True
            if index is not None:
                payload["output_index"] = self._index_map.get(index, index)
            return new_event(payload).raw
        raw = event.raw
        found = _SEQ.search(raw)
        if found is not None:
            upstream = int(found.group(1))
            if self._changed and self._last_seq is not None:
                self._offset = self._last_seq + 1 - upstream
                self._changed = False
            seq = upstream + self._offset
            if self._offset:
                raw = _replace(raw, found, seq)
            self._last_seq = seq
        if index is not None and self._index_map.get(index, index) != index:
            found_index = _INDEX.search(raw)
            if found_index is not None:
                raw = _replace(raw, found_index, self._index_map[index])
        return raw
