"""The client's sequence numbers and output indices (extproc/dialects/responses/numbering.py)."""

from __future__ import annotations

import orjson

from extproc.dialects.responses.numbering import (
    Numbering,
    last_sequence,
    new_event,
    upstream_index,
)
from extproc.events import StreamEvent
from extproc.sse import SSEFramer


def upstream(payload: dict[str, object]) -> StreamEvent:
    """An event as the provider sent it (parsed from bytes)."""
    raw = b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload)
    (frame,) = SSEFramer().feed(raw + b"\n\n")
    return StreamEvent.from_frame(frame)


def seq_of(raw: bytes) -> object:
    return orjson.loads(raw.split(b"data: ", 1)[1])["sequence_number"]


def test_untouched_numbering_passes_as_it_came_garbage_included() -> None:
    numbers = Numbering()
    events = [upstream({"type": "x", "sequence_number": n}) for n in (3, 7, 7, -1)]
    assert [numbers.numbered(e) for e in events] == [e.raw for e in events]


def test_after_a_change_numbers_follow_on_from_the_last_sent() -> None:
    numbers = Numbering()
    assert seq_of(numbers.numbered(upstream({"type": "a", "sequence_number": 5}))) == 5
    made = numbers.numbered(new_event({"type": "b", "sequence_number": 0}))
    assert seq_of(made) == 6
    # The provider's next event (7) follows ours, and the ones after it keep their step.
    for upstream_seq, expected in ((6, 7), (7, 8), (9, 10)):
        event = upstream({"type": "c", "sequence_number": upstream_seq, "text": "same"})
        out = numbers.numbered(event)
        assert seq_of(out) == expected
        assert out.replace(str(expected).encode(), str(upstream_seq).encode(), 1) == event.raw


def test_merged_events_close_up() -> None:
    numbers = Numbering()
    numbers.numbered(upstream({"type": "a", "sequence_number": 0}))
    numbers.changed()  # event 1 was merged into another and never sent
    assert seq_of(numbers.numbered(upstream({"type": "a", "sequence_number": 2}))) == 1


def test_a_dropped_item_closes_up_the_output_indices() -> None:
    numbers = Numbering()
    added = "response.output_item.added"
    first = upstream({"type": added, "sequence_number": 0, "output_index": 0, "item": {}})
    assert numbers.numbered(first) == first.raw
    numbers.drop_item(1)  # held, then dropped: never added for the client
    third = upstream({"type": added, "sequence_number": 9, "output_index": 2, "item": {}})
    delta = upstream({"type": "d", "sequence_number": 10, "output_index": 2})
    out = [orjson.loads(numbers.numbered(e).split(b"data: ", 1)[1]) for e in (third, delta)]
    assert [(p["sequence_number"], p["output_index"]) for p in out] == [(1, 1), (2, 1)]


def test_events_without_a_number_are_not_counted() -> None:
    numbers = Numbering()
    bare = upstream({"type": "x"})
    assert numbers.numbered(bare) == bare.raw
    assert seq_of(numbers.numbered(new_event({"type": "y", "sequence_number": 0}))) == 0


def test_last_sequence_and_upstream_index() -> None:
    data = b'data: {"sequence_number":4}\n\ndata: {"sequence_number": 12,"x":1}\n\n'
    assert last_sequence(data) == 12
    assert last_sequence(b"data: {}\n\n") is None
    assert upstream_index(upstream({"type": "x", "output_index": 3})) == 3
    assert upstream_index(new_event({"type": "x", "output_index": 2})) == 2
    assert upstream_index(upstream({"type": "x"})) is None
