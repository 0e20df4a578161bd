"""The Responses stream grammar checker (extproc/dialects/responses/validator.py)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.dialects.responses.validator import StreamValidator
from extproc.sse import SSEFramer
from tests.helpers.dialects import Event, splice
from tests.helpers.responses_streams import (
    SHAPES,
    Call,
    Reasoning,
    Refusal,
    Text,
    WebSearch,
    ev,
    renumber,
    responses_events,
    responses_sse,
    shape_events,
)
from tests.helpers.streams import frames


def violations(events: list[Event]) -> list[str]:
    validator = StreamValidator()
    for kind, payload in events:
        validator.feed_event(kind, payload)
    return validator.finish()


def frame_violations(raw: bytes) -> list[str]:
    """The same check fed SSE frames, as `validate_streams` feeds it."""
    validator = StreamValidator()
    for frame in frames(raw):
        validator.feed(frame)
    return validator.finish()


def chunked_violations(raw: bytes, cuts: list[int]) -> list[str]:
    framer = SSEFramer()
    validator = StreamValidator()
    edges = [0, *sorted(cuts), len(raw)]
    for start, end in itertools.pairwise(edges):
        for frame in framer.feed(raw[start:end]):
            validator.feed(frame)
    for frame in framer.flush():
        validator.feed(frame)
    return validator.finish()


def text() -> list[Event]:
    """created, in_progress, added, part.added, 2 deltas, text.done, part.done, item.done,
    completed (sequence numbers 0..9)."""
    return responses_events([Text(["Hello", " world"])])


def calls() -> list[Event]:
    return shape_events("parallel calls")


def find(events: list[Event], kind: str, nth: int = 0) -> dict[str, Any]:
    return [p for k, p in events if k == kind][nth]


def at(events: list[Event], kind: str, nth: int = 0) -> int:
    return [i for i, (k, _) in enumerate(events) if k == kind][nth]


def edit(
    events: list[Event], kind: str, change: Callable[[dict[str, Any]], Any], nth: int = 0
) -> list[Event]:
    change(find(events, kind, nth))
    return events


def insert(events: list[Event], index: int, new: Event) -> list[Event]:
    return renumber(splice(events, index, new, drop=0))


def drop(events: list[Event], kind: str, nth: int = 0) -> list[Event]:
    return renumber(splice(events, at(events, kind, nth), drop=1))


def terminal_output(events: list[Event]) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = events[-1][1]["response"]["output"]
    return output


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = payload
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


# -- valid streams --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_recorded_shapes_are_valid(shape: str) -> None:
    events = shape_events(shape)
    assert violations(events) == []
    assert frame_violations(responses_sse(events)) == []


def test_tolerated_variations_are_valid() -> None:
    # Unknown event types pass, comments are ignored, the event line is optional.
    events = text()
    events = insert(events, 5, ev("response.future_feature.progress", item_id="x"))
    raw = b": keepalive\n\n" + responses_sse(events).replace(b"event: response.in_progress\n", b"")
    assert frame_violations(raw) == []
    # A stream may start from any sequence number (resumed with starting_after).
    assert violations(renumber(text(), 17)) == []
    # An error event may end the stream by itself.
    cut = text()[:5]
    assert violations([*cut, ev("error", sequence_number=5, error={"message": "x"})]) == []
    # A failure may drop the items produced so far.
    failed = shape_events("failed mid-stream")
    failed[-1][1]["response"]["output"] = []
    assert violations(failed) == []
    # Older streams: no logprobs or obfuscation.
    old = text()
    for _, payload in old:
        payload.pop("logprobs", None)
        payload.pop("obfuscation", None)
    assert violations(old) == []


@pytest.mark.parametrize("end", ["failed", "incomplete"])
def test_a_cut_item_may_be_listed_or_left_out_when_the_response_fails(end: Any) -> None:
    """The API lists a cut item with status "incomplete"; the mock (and maybe the API
    when it fails) leaves it out. The done items must be there either way (a failed
    response may also list none)."""
    events = responses_events([Call("f", ["{}"]), Text(["Half an ", "answer"])], end)
    partial = copy.deepcopy(find(events, "response.output_item.done", 1)["item"])
    partial["status"] = "incomplete"
    events = renumber(
        [
            (k, p)
            for k, p in events
            if not (
                k.endswith((".output_item.done", ".content_part.done")) and p["output_index"] == 1
            )
        ]
    )
    call = terminal_output(events)[0]
    for output in ([call, partial], [call]):
        events[-1][1]["response"]["output"] = output
        assert violations(events) == [], output
    events[-1][1]["response"]["output"] = []
    expected = [] if end == "failed" else ["output has 0 items, 1 were streamed"]
    assert [v.split(": ", 1)[1] for v in violations(events)] == expected
    events[-1][1]["response"]["output"] = [partial]
    assert [v.split(": ", 1)[1] for v in violations(events)] == [
        "output[0]: item type 'message', output_index 0 is 'function_call'"
    ]


def test_raw_reasoning_text_may_stream_without_a_content_part() -> None:
    events = responses_events([Reasoning(), Text(["ok"])])
    where = {"item_id": "rs_68d93000", "output_index": 0, "content_index": 0}
    raw = [
        ev("response.reasoning_text.delta", **where, delta="think"),
        ev("response.reasoning_text.delta", **where, delta="ing"),
        ev("response.reasoning_text.done", **where, text="thinking"),
    ]
    for n, new in enumerate(raw):
        events = splice(events, 3 + n, new, drop=0)
    content = [{"type": "reasoning_text", "text": "thinking"}]
    find(events, "response.output_item.done")["item"]["content"] = content
    terminal_output(events)[0]["content"] = copy.deepcopy(content)
    assert violations(renumber(events)) == []
    terminal_output(events)[0]["content"][0]["text"] = "thinkin"
    assert violations(events) == [
        "response.completed (seq 13): output[0]: content part 0 text 'thinkin' differs from "
        "the streamed 'thinking'"
    ]


TEXT_PART = {"item_id": "msg_68d93000", "output_index": 0, "content_index": 0}

# -- one broken invariant each --------------------------------------------------------------

BROKEN: dict[str, tuple[Callable[[], list[Event]], list[str]]] = {
    # framing and numbering
    "event name differs from type": (
        lambda: [
            (k if n != 4 else "response.output_text.done", p) for n, (k, p) in enumerate(text())
        ],
        ["event 'response.output_text.done' (seq 4) has data of type 'response.output_text.delta'"],
    ),
    "first event is not created": (
        lambda: renumber(text()[1:]),
        ["response.in_progress (seq 0) is the first event, expected response.created"],
    ),
    "duplicate created": (
        lambda: insert(text(), 1, copy.deepcopy(text()[0])),
        ["duplicate response.created (seq 1)"],
    ),
    "created with output": (
        lambda: edit(
            text(),
            "response.created",
            _set("response.output", [find(text(), "response.output_item.done")["item"]]),
        ),
        ["response.created (seq 0) already has 1 output items"],
    ),
    "missing sequence_number": (
        lambda: edit(text(), "response.output_text.delta", lambda p: p.pop("sequence_number")),
        ["response.output_text.delta (seq None) has no integer sequence_number"],
    ),
    "sequence_number gap": (
        lambda: renumber(text()[:5], 0) + renumber(text()[5:], 6),
        ["response.output_text.delta (seq 6): sequence_number 6, expected 5"],
    ),
    "sequence_number repeated": (
        lambda: renumber(text()[:5], 0) + renumber(text()[5:], 4),
        ["response.output_text.delta (seq 4): sequence_number 4, expected 5"],
    ),
    "malformed known event": (
        lambda: edit(text(), "response.in_progress", _set("response.created_at", "yesterday")),
        [
            "malformed response.in_progress (seq 1): response.created_at.int: Input should be a "
            "valid integer"
        ],
    ),
    # output items
    "output_index gap": (
        lambda: [
            (k, p | {"output_index": 2} if p.get("output_index") == 1 else p) for k, p in calls()
        ],
        ["response.output_item.added (seq 7): output_index 2, expected 1"],
    ),
    "output_index repeated": (
        lambda: insert(text(), 3, copy.deepcopy(text()[2])),
        ["response.output_item.added (seq 3): output_index 0 added twice"],
    ),
    "item never done": (
        lambda: drop(shape_events("function call"), "response.output_item.done"),
        ["response.completed (seq 7): output_index 0 was added but never done"],
    ),
    "item done twice": (
        lambda: insert(text(), 9, copy.deepcopy(text()[8])),
        ["response.output_item.done (seq 9): output_index 0 was already done"],
    ),
    "item done never added": (
        lambda: insert(
            text(),
            9,
            ev(
                "response.output_item.done",
                output_index=1,
                item=find(text(), "response.output_item.done")["item"],
            ),
        ),
        ["response.output_item.done (seq 9): output_index 1 was never added"],
    ),
    "done item changes id": (
        lambda: edit(text(), "response.output_item.done", _set("item.id", "msg_other")),
        [
            "response.output_item.done (seq 8): item id 'msg_other', output_index 0 is "
            "'msg_68d93000'"
        ],
    ),
    "done item changes call_id": (
        lambda: edit(
            shape_events("function call"),
            "response.output_item.done",
            _set("item.call_id", "call_other"),
        ),
        [
            "response.output_item.done (seq 7): call_id 'call_other', output_index 0 has "
            "'call_Qx00hT9vK3mW'"
        ],
    ),
    "done item changes type": (
        lambda: edit(text(), "response.output_item.done", _set("item.type", "shell_call")),
        ["response.output_item.done (seq 8): item type 'shell_call', output_index 0 is 'message'"],
    ),
    "event for an item never added": (
        lambda: insert(
            text(),
            5,
            ev(
                "response.output_text.delta",
                item_id="msg_68d93000",
                output_index=3,
                content_index=0,
                delta="x",
                logprobs=[],
            ),
        ),
        ["response.output_text.delta (seq 5) for output_index 3, which is never added"],
    ),
    "event for an item already done": (
        lambda: insert(
            shape_events("hosted tool"),
            7,
            ev("response.web_search_call.completed", item_id="ws_68d93000", output_index=0),
        ),
        ["response.web_search_call.completed (seq 7) for output_index 0, which is already done"],
    ),
    "item_id is another item's": (
        lambda: edit(text(), "response.output_text.delta", _set("item_id", "msg_other"), nth=1),
        [
            "response.output_text.delta (seq 5): item_id 'msg_other' is not output_index 0's "
            "'msg_68d93000'"
        ],
    ),
    # content parts
    "content_index gap": (
        lambda: [(k, p | {"content_index": 1} if "content_index" in p else p) for k, p in text()],
        [
            "response.content_part.added (seq 3): content_index 1, expected 0",
            "response.output_item.done (seq 8): the item has no content part 1",
            "response.completed (seq 9): output[0]: the item has no content part 1",
        ],
    ),
    "content part added twice": (
        lambda: insert(text(), 4, copy.deepcopy(text()[3])),
        ["response.content_part.added (seq 4): content part 0 added twice"],
    ),
    "content part never done": (
        lambda: drop(text(), "response.content_part.done"),
        ["response.output_item.done (seq 7): content part 0 of output_index 0 is open"],
    ),
    "content part done twice": (
        lambda: insert(text(), 8, copy.deepcopy(text()[7])),
        ["response.content_part.done (seq 8): content part 0 is not open"],
    ),
    "delta after its part is done": (
        lambda: insert(text(), 8, copy.deepcopy(text()[4])),
        ["response.output_text.delta (seq 8): content part 0 of output_index 0 is not open"],
    ),
    "delta before its part is added": (
        lambda: insert(text(), 3, copy.deepcopy(text()[4])),
        ["response.output_text.delta (seq 3): content part 0 of output_index 0 is not open"],
    ),
    "delta after its text is done": (
        lambda: insert(
            text(), 7, ev("response.output_text.delta", **TEXT_PART, delta="", logprobs=[])
        ),
        ["response.output_text.delta (seq 7) after its output_text .done event"],
    ),
    "no output_text.done": (
        lambda: drop(text(), "response.output_text.done"),
        ["response.content_part.done (seq 6): content part 0 had no output_text .done event"],
    ),
    "refusal delta into a text part": (
        lambda: insert(text(), 5, ev("response.refusal.delta", **TEXT_PART, delta="")),
        ["response.refusal.delta (seq 5): content part 0 is output_text, not refusal"],
    ),
    "part done with another type": (
        lambda: edit(
            text(),
            "response.content_part.done",
            _set("part", {"type": "refusal", "refusal": "Hello world"}),
        ),
        ["response.content_part.done (seq 7): part type 'refusal', was added as 'output_text'"],
    ),
    "message done with an extra part": (
        lambda: edit(
            text(),
            "response.output_item.done",
            lambda p: p["item"]["content"].append({"type": "refusal", "refusal": "no"}),
        ),
        ["response.output_item.done (seq 8): the message has 2 parts, 1 were streamed"],
    ),
    "summary part never done": (
        lambda: drop(shape_events("reasoning then text"), "response.reasoning_summary_part.done"),
        ["response.output_item.done (seq 7): summary part 0 of output_index 0 is open"],
    ),
    # every copy of the text
    "a delta differs from every copy": (
        lambda: edit(text(), "response.output_text.delta", _set("delta", "Hullo")),
        [
            "response.output_text.done (seq 6): text 'Hello world' differs from the streamed "
            "'Hullo world'",
            "response.content_part.done (seq 7): text 'Hello world' differs from the streamed "
            "'Hullo world'",
            "response.output_item.done (seq 8): content part 0 text 'Hello world' differs from "
            "the streamed 'Hullo world'",
            "response.completed (seq 9): output[0]: content part 0 text 'Hello world' differs "
            "from the streamed 'Hullo world'",
        ],
    ),
    "output_text.done text differs": (
        lambda: edit(text(), "response.output_text.done", _set("text", "Hello")),
        ["response.output_text.done (seq 6): text 'Hello' differs from the streamed 'Hello world'"],
    ),
    "content_part.done text differs": (
        lambda: edit(text(), "response.content_part.done", _set("part.text", "Hello")),
        [
            "response.content_part.done (seq 7): text 'Hello' differs from the streamed 'Hello "
            "world'"
        ],
    ),
    "output_item.done text differs": (
        lambda: edit(text(), "response.output_item.done", _set("item.content.0.text", "Hello")),
        [
            "response.output_item.done (seq 8): content part 0 text 'Hello' differs from the "
            "streamed 'Hello world'"
        ],
    ),
    "terminal text differs": (
        lambda: edit(
            text(), "response.completed", _set("response.output.0.content.0.text", "Hello")
        ),
        [
            "response.completed (seq 9): output[0]: content part 0 text 'Hello' differs from the "
            "streamed 'Hello world'"
        ],
    ),
    "refusal copy differs": (
        lambda: edit(shape_events("refusal"), "response.refusal.done", _set("refusal", "No.")),
        [
            "response.refusal.done (seq 6): text 'No.' differs from the streamed \"I'm sorry, I "
            "can't help with that.\""
        ],
    ),
    "summary copy differs": (
        lambda: edit(
            shape_events("reasoning then text"),
            "response.reasoning_summary_text.done",
            _set("text", "x"),
        ),
        [
            "response.reasoning_summary_text.done (seq 6): text 'x' differs from the streamed "
            "'**Planning** the answer'"
        ],
    ),
    # function call arguments
    "arguments.done differs": (
        lambda: edit(calls(), "response.function_call_arguments.done", _set("arguments", "{}")),
        [
            "response.function_call_arguments.done (seq 5): '{}' differs from the streamed "
            '\'{"city":"Paris"}\''
        ],
    ),
    "done item arguments differ": (
        lambda: edit(calls(), "response.output_item.done", _set("item.arguments", "{}"), nth=1),
        [
            "response.output_item.done (seq 10): function_call '{}' differs from the streamed "
            '\'{"city":"Tokyo"}\''
        ],
    ),
    "terminal arguments differ": (
        lambda: edit(calls(), "response.completed", _set("response.output.1.arguments", "{}")),
        [
            "response.completed (seq 11): output[1]: function_call '{}' differs from the "
            'streamed \'{"city":"Tokyo"}\''
        ],
    ),
    "no arguments.done": (
        lambda: drop(calls(), "response.function_call_arguments.done"),
        [
            "response.output_item.done (seq 5): output_index 0 had no function_call_arguments "
            ".done event"
        ],
    ),
    "arguments delta into a message": (
        lambda: insert(
            text(),
            5,
            ev(
                "response.function_call_arguments.delta",
                item_id="msg_68d93000",
                output_index=0,
                delta="{",
            ),
        ),
        [
            "response.function_call_arguments.delta (seq 5): output_index 0 is a message, not a "
            "function_call"
        ],
    ),
    # the terminal response
    "terminal lacks an item": (
        lambda: edit(calls(), "response.completed", lambda p: p["response"]["output"].pop()),
        ["response.completed (seq 11): output has 1 items, 2 were streamed"],
    ),
    "terminal has an extra item": (
        lambda: edit(
            calls(),
            "response.completed",
            lambda p: p["response"]["output"].append(p["response"]["output"][0]),
        ),
        ["response.completed (seq 11): output has 3 items, 2 were streamed"],
    ),
    "terminal items reordered": (
        lambda: edit(calls(), "response.completed", lambda p: p["response"]["output"].reverse()),
        [
            "response.completed (seq 11): output[0]: item id 'fc_68d93001', output_index 0 is "
            "'fc_68d93000'",
            "response.completed (seq 11): output[1]: item id 'fc_68d93000', output_index 1 is "
            "'fc_68d93001'",
        ],
    ),
    "terminal status differs": (
        lambda: edit(text(), "response.completed", _set("response.status", "in_progress")),
        ["response.completed (seq 9): response status 'in_progress'"],
    ),
    "response id changes": (
        lambda: edit(text(), "response.in_progress", _set("response.id", "resp_other")),
        ["response.in_progress (seq 1): response id 'resp_other', was 'resp_68d930a1b2c3d4e5'"],
    ),
    "no terminal event": (
        lambda: text()[:-1],
        [
            "stream ended without a terminal event (response.completed, response.incomplete or "
            "response.failed)"
        ],
    ),
    "two terminal events": (
        lambda: insert(text(), 10, copy.deepcopy(text()[-1])),
        ["response.completed (seq 10) after the terminal event response.completed"],
    ),
    "event after the terminal event": (
        lambda: insert(
            text(), 10, ev("response.web_search_call.completed", item_id="x", output_index=0)
        ),
        ["response.web_search_call.completed (seq 10) after the terminal event response.completed"],
    ),
    "event after an error other than failed": (
        lambda: insert(text(), 9, ev("error", code="server_error", message="boom")),
        ["response.completed (seq 10) after an error event (only response.failed may follow)"],
    ),
    "failed status on completed": (
        lambda: edit(
            shape_events("failed after an error"),
            "response.failed",
            _set("response.status", "completed"),
        ),
        ["response.failed (seq 3): response status 'completed'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validator_reports_exactly_the_broken_invariant(case: str) -> None:
    build, expected = BROKEN[case]
    found = violations(build())
    assert len(found) == len(expected), found
    for message, wanted in zip(found, expected, strict=True):
        assert message.startswith(wanted), (message, wanted)
    assert frame_violations(responses_sse(build())) == found


def test_frames_that_are_not_events() -> None:
    raw = responses_sse(text())
    # An event without data: the Python SDK fails on it (json.loads("")).
    ping = raw.replace(
        b"event: response.in_progress\n", b"event: ping\n\nevent: response.in_progress\n", 1
    )
    assert frame_violations(ping) == ["event 'ping' without data"]
    # Data that is not JSON, and a [DONE] the API never sends.
    assert frame_violations(raw + b"data: [DONE]\n\n") == [
        "event #11 (None): data is not JSON: '[DONE]'"
    ]
    broken = frame_violations(
        raw.replace(b'data: {"type":"response.in_progress"', b"data: [1,2", 1)
    )
    assert broken[0].startswith("event #2 (response.in_progress): data is not JSON: '[1,2,")
    assert broken[1:] == ["response.output_item.added (seq 2): sequence_number 2, expected 1"]
    validator = StreamValidator()
    validator.feed_event("response.created", [1])
    assert validator.finish()[0] == "event #1 (response.created): data is not a JSON object"


def test_empty_stream_is_a_violation() -> None:
    assert StreamValidator().finish() == ["empty stream"]
    assert frame_violations(b"") == ["empty stream"]
    assert frame_violations(b": just a comment\n\n") == ["empty stream"]


# -- property tests -------------------------------------------------------------------------

PIECE = st.text(st.characters(codec="utf-8"), max_size=6)
TEXTS = st.builds(lambda p: Text(p), st.lists(PIECE, min_size=1, max_size=4))
CALLS = st.builds(
    lambda name, p: Call(name, p),
    st.sampled_from(["get_weather", "bash"]),
    st.lists(PIECE, min_size=1, max_size=4),
)
OTHERS = st.sampled_from([Refusal(["no"]), Reasoning([["a", "b"]]), Reasoning(), WebSearch("q")])
ITEMS = st.lists(TEXTS | CALLS | OTHERS, max_size=4)


@settings(max_examples=60, deadline=None)
@given(ITEMS, st.sampled_from(["completed", "incomplete", "failed"]))
def test_any_rendered_stream_is_valid(items: list[Any], end: Any) -> None:
    assert violations(responses_events(items, end)) == []


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SHAPES)) | st.sampled_from(sorted(BROKEN)), st.data())
def test_any_chunking_gives_the_same_verdict(name: str, data: st.DataObject) -> None:
    events = shape_events(name) if name in SHAPES else BROKEN[name][0]()
    raw = responses_sse(events)
    if data.draw(st.booleans()):
        raw = raw.replace(b"\n", b"\r\n")
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert chunked_violations(raw, cuts) == violations(events)


def _text_copies(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every streamed text or arguments string in a payload, nested copies too."""
    if isinstance(value, dict):
        return [
            found
            for key, inner in value.items()
            for found in (
                [(*path, key)]
                if key in ("delta", "text", "refusal", "arguments") and isinstance(inner, str)
                else _text_copies(inner, (*path, key))
            )
        ]
    if isinstance(value, list):
        return [found for n, inner in enumerate(value) for found in _text_copies(inner, (*path, n))]
    return []


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(SHAPES)), st.data())
def test_changing_any_copy_of_a_text_is_caught(name: str, data: st.DataObject) -> None:
    """Whichever one copy of a streamed text or arguments a rewrite missed (a delta, a
    .done event, a part, an item, the terminal response), the stream is reported."""
    events = shape_events(name)
    targets = [(n, path) for n, (_, payload) in enumerate(events) for path in _text_copies(payload)]
    if not targets:
        return
    n, path = data.draw(st.sampled_from(targets))
    node: Any = events[n][1]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] += "X"
    assert violations(events) != [], (events[n][0], path)
