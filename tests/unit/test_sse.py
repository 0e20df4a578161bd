"""Tests for the incremental SSE framer (extproc/sse.py)."""

from __future__ import annotations

import itertools
import time
from typing import Literal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.sse import Frame, FrameTooLarge, SSEFramer

_ANTHROPIC_TEXT = ["Hello", " wörld 🌍", ", 你好", "! ✓"]
_ANTHROPIC_EVENTS = [
    (
        "message_start",
        '{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL",'
        '"type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],'
        '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
        '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    *(
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,'
            f'"delta":{{"type":"text_delta","text":"{t}"}}}}',
        )
        for t in _ANTHROPIC_TEXT
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"output_tokens":15}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]
ANTHROPIC_STREAM = "".join(f"event: {e}\ndata: {d}\n\n" for e, d in _ANTHROPIC_EVENTS).encode()

_OPENAI_TEXT = ["Bonjour", " le monde", " 🌍", " — 你好"]
_OAI = (
    '{"id":"chatcmpl-AbC123xyz","object":"chat.completion.chunk","created":1730000000,'
    '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1",'
)
_OAI_CHOICE = '"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}],"usage":null}'
_OAI_DELTAS = [
    ('{"role":"assistant","content":"","refusal":null}', "null"),
    *((f'{{"content":"{t}"}}', "null") for t in _OPENAI_TEXT),
    ("{}", '"stop"'),
]
OPENAI_STREAM = (
    "".join(f"data: {_OAI}{_OAI_CHOICE % d}\n\n" for d in _OAI_DELTAS)
    + f"data: {_OAI}"
    + '"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,'
    '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
    "data: [DONE]\n\n"
).encode()

RECORDED = {"anthropic": ANTHROPIC_STREAM, "openai": OPENAI_STREAM}
LINE_ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def run(chunks: list[bytes], max_frame_bytes: int = 1 << 20) -> list[Frame]:
    framer = SSEFramer(max_frame_bytes)
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames + framer.flush()


def key(frames: list[Frame]) -> list[tuple]:
    return [(f.event, f.data, f.id, f.retry, f.comments, f.terminated) for f in frames]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def convert(stream: bytes, eol: bytes) -> bytes:
    return stream.replace(b"\n", eol)


@pytest.mark.parametrize("eol", LINE_ENDINGS.values(), ids=LINE_ENDINGS.keys())
def test_line_endings(eol: bytes) -> None:
    stream = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    frames = run([stream])
    assert [(f.event, f.data) for f in frames] == [("a", "1"), (None, "2")]
    assert all(f.terminated for f in frames)
    assert b"".join(f.raw for f in frames) == stream


def test_mixed_line_endings() -> None:
    stream = b"event: a\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\r: c\n\n"
    frames = run([stream])
    assert key(frames) == [
        ("a", "1\n2", None, None, [], True),
        (None, "3", None, None, [], True),
        (None, None, None, None, [" c"], True),
    ]
    assert b"".join(f.raw for f in frames) == stream


def test_crlf_split_between_cr_and_lf() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == []
    assert framer.feed(b"\ndata: b\r") == []
    frames = framer.feed(b"\n\r")
    assert frames == []  # the "\r" might still be the start of "\r\n"
    frames = framer.feed(b"\ndata: c\r\n\r\n")
    assert [(f.data, f.raw) for f in frames] == [
        ("a\nb", b"data: a\r\ndata: b\r\n\r\n"),
        ("c", b"data: c\r\n\r\n"),
    ]
    assert framer.flush() == []


def test_lone_cr_at_end_of_stream_is_line_end() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: x\r\rdata: y\r") == [Frame(raw=b"data: x\r\r", data="x")]
    assert framer.buffered == len(b"data: y\r")
    assert framer.flush() == [Frame(raw=b"data: y\r", data="y", terminated=False)]
    framer = SSEFramer()  # a lone "\r" ending a blank line terminates the frame
    assert framer.feed(b"data: x\r\r"[:-1]) == []
    assert framer.feed(b"\r") == []
    assert framer.flush() == [Frame(raw=b"data: x\r\r", data="x", terminated=True)]


@pytest.mark.parametrize("text", ["🌍", "你好", "wörld 🌍 你好"])
def test_split_inside_multibyte_character(text: str) -> None:
    stream = f"data: <{text}>\n\n".encode()
    start = len(b"data: <")
    for cut in range(start + 1, start + len(text.encode())):
        frames = run([stream[:cut], stream[cut:]])
        assert [f.data for f in frames] == [f"<{text}>"]
    assert [f.data for f in run([bytes([b]) for b in stream])] == [f"<{text}>"]


def test_comment_frame() -> None:
    frames = run([b": ping\n\n"])
    assert frames == [Frame(raw=b": ping\n\n", comments=[" ping"])]
    assert frames[0].data is None and not frames[0].has_data
    (frame,) = run([b":a\ndata: x\n:\n: b\n\n"])
    assert frame.comments == ["a", "", " b"]
    assert frame.data == "x"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),
        (b"data: x ", "x "),
        (b"data:", ""),
        (b"data: ", ""),
        (b"data", ""),
        (b"data: a:b: c", "a:b: c"),
        (b"data: [DONE]", "[DONE]"),
        (b"data: one\ndata:two\ndata:\ndata:  four", "one\ntwo\n\n four"),
    ],
)
def test_data_values(line: bytes, expected: str) -> None:
    (frame,) = run([line + b"\n\n"])
    assert frame.data == expected


def test_event_id_retry_fields_last_wins_bad_retry_ignored() -> None:
    stream = b"event: message_delta\nid: 42\nretry: 3000\ndata: {}\n\n"
    assert run([stream]) == [
        Frame(raw=stream, event="message_delta", data="{}", id="42", retry=3000)
    ]
    (frame,) = run([b"retry: 10s\nevent: a\nevent: b\nid: 1\nid:\n\n"])
    assert (frame.retry, frame.event, frame.id, frame.data) == (None, "b", "", None)


def test_unknown_fields_ignored_but_kept_in_raw() -> None:
    stream = b"foo: bar\nDATA: no\ndata: yes\nx-custom\n\n"
    (frame,) = run([stream])
    assert frame.data == "yes"
    assert (frame.event, frame.id, frame.retry, frame.comments) == (None, None, None, [])
    assert frame.raw == stream
    assert run([b"foo: bar\n\n"]) == [Frame(raw=b"foo: bar\n\n")]


def test_last_frame_without_blank_line() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\n\nevent: e\ndata: b\n") == [Frame(raw=b"data: a\n\n", data="a")]
    assert framer.flush() == [
        Frame(raw=b"event: e\ndata: b\n", event="e", data="b", terminated=False)
    ]
    frames = run([b"data: a\n\ndata: b"])
    assert frames[-1] == Frame(raw=b"data: b", data="b", terminated=False)


def test_stray_blank_lines_are_kept() -> None:
    stream = b"\n\r\ndata: a\n\n\n\n: c\n\n\r\n\r"
    frames = run([stream])
    assert b"".join(f.raw for f in frames) == stream
    assert [f.data for f in frames if f.data is not None] == ["a"]
    assert [f.comments for f in frames if f.comments] == [[" c"]]
    assert frames[0].raw == b"\n\r\ndata: a\n\n"  # leading blank lines prefix the next frame
    # Trailing blank lines after the last frame come back from flush() as an empty frame.
    assert frames[-1] == Frame(raw=b"\r\n\r", terminated=False)


def test_empty_stream_and_empty_feed() -> None:
    framer = SSEFramer()
    assert framer.feed(b"") == []
    assert framer.feed(b"data: x\n") == []
    assert framer.feed(b"") == []
    assert framer.feed(b"\n") == [Frame(raw=b"data: x\n\n", data="x")]
    assert framer.flush() == []
    assert SSEFramer().flush() == []


def test_feed_after_flush_raises() -> None:
    framer = SSEFramer()
    framer.feed(b"data: x\n\n")
    framer.flush()
    assert framer.flush() == []
    with pytest.raises(RuntimeError):
        framer.feed(b"data: y\n\n")
    with pytest.raises(RuntimeError):
        framer.feed(b"")


def test_frame_too_large() -> None:
    framer = SSEFramer(max_frame_bytes=64)
    assert framer.feed(b"data: " + b"x" * 40) == []
    with pytest.raises(FrameTooLarge) as excinfo:
        framer.feed(b"x" * 40)
    assert excinfo.value.size == 86
    assert excinfo.value.limit == 64
    assert "64" in str(excinfo.value)
    framer = SSEFramer(max_frame_bytes=100)
    with pytest.raises(FrameTooLarge):
        for _ in range(20):
            framer.feed(b"data: 0123456789\n")


def test_many_small_frames_exceeding_bound_in_total() -> None:
    frame = b"data: 0123456789\n\n"
    stream = frame * 200
    assert len(stream) > 10 * 64
    for chunks in ([stream], [frame] * 200, split(stream, list(range(7, len(stream), 7)))):
        frames = run(chunks, max_frame_bytes=64)
        assert len(frames) == 200 and all(f.data == "0123456789" for f in frames)


@pytest.mark.parametrize("value", ["²", "١٢"])
def test_retry_non_ascii_digits_ignored(value: str) -> None:
    (frame,) = run([f"retry: {value}\ndata: x\n\n".encode()])
    assert (frame.retry, frame.data) == (None, "x")


def test_leading_bom_ignored() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\ndata: y"
    for chunks in ([stream], [stream[:1], stream[1:2], stream[2:]]):
        frames = run(chunks)
        assert [f.data for f in frames] == ["x", "y"]
        assert b"".join(f.raw for f in frames) == stream


def test_long_line_in_small_chunks_is_scanned_once() -> None:
    """A partial line is not rescanned from its start on every chunk (that was quadratic:
    18 s for a 2 MiB line in 1 KiB chunks). The framer resumes where it stopped looking."""
    framer = SSEFramer(max_frame_bytes=4 * 1024 * 1024)
    framer.feed(b"data: ")
    for _ in range(2048):
        assert framer.feed(b"x" * 1024) == []
        assert framer._scan == framer.buffered  # nothing before here needs a second look
    framer.feed(b"\r")
    assert framer._scan == framer.buffered - 1  # a lone CR waits for a possible LF
    (frame,) = framer.feed(b"\n\n")
    assert frame.data == "x" * (2048 * 1024)


def test_recorded_anthropic_stream() -> None:
    frames = run([ANTHROPIC_STREAM])
    assert [(f.event, f.data) for f in frames] == _ANTHROPIC_EVENTS
    payloads = [orjson.loads(f.data or "") for f in frames]
    assert all(p["type"] == f.event for p, f in zip(payloads, frames, strict=True))
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == "".join(_ANTHROPIC_TEXT)
    assert all(f.terminated for f in frames)
    assert b"".join(f.raw for f in frames) == ANTHROPIC_STREAM


def test_recorded_openai_stream() -> None:
    frames = run([OPENAI_STREAM])
    assert all(f.event is None for f in frames)
    assert frames[-1].data == "[DONE]"
    chunks = [orjson.loads(f.data or "") for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "".join(_OPENAI_TEXT)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 21
    assert b"".join(f.raw for f in frames) == OPENAI_STREAM


def check_chunking(stream: bytes, cuts: list[int]) -> list[Frame]:
    whole = run([stream])
    chunked = run(split(stream, cuts))
    assert key(chunked) == key(whole)
    assert b"".join(f.raw for f in chunked) == stream
    assert [f.raw for f in chunked] == [f.raw for f in whole]
    return chunked


@pytest.mark.parametrize("eol", LINE_ENDINGS.values(), ids=LINE_ENDINGS.keys())
@pytest.mark.parametrize("name", RECORDED)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_recorded_stream_any_chunking(name: str, eol: bytes, data: st.DataObject) -> None:
    stream = convert(RECORDED[name], eol)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    frames = check_chunking(stream, cuts)
    assert key(frames) == key(run([RECORDED[name]]))


# Surrogates cannot be encoded: any other character may appear.
_NO_SURROGATES: list[Literal["Cs"]] = ["Cs"]
_line_text = st.text(st.characters(exclude_categories=_NO_SURROGATES, exclude_characters="\r\n"))
_events = st.lists(
    st.fixed_dictionaries(
        {
            "stray": st.integers(0, 2),
            "comments": st.lists(_line_text, max_size=2),
            "event": st.none() | _line_text,
            "id": st.none() | _line_text,
            "retry": st.none() | st.integers(0, 10**6),
            "data": st.none()
            | st.text(st.characters(exclude_categories=_NO_SURROGATES, exclude_characters="\r")),
        }
    ).filter(
        lambda e: e["comments"] or any(e[k] is not None for k in ("event", "id", "retry", "data"))
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    events=_events,
    eol=st.sampled_from(list(LINE_ENDINGS.values())),
    ending=st.integers(0, 2),
    data=st.data(),
)
def test_generated_stream_any_chunking(
    events: list[dict], eol: bytes, ending: int, data: st.DataObject
) -> None:
    out = bytearray()
    expected = []
    for i, ev in enumerate(events):
        out += eol * ev["stray"]
        lines = [b":" + c.encode() for c in ev["comments"]]
        if ev["event"] is not None:
            lines.append(b"event: " + ev["event"].encode())
        if ev["id"] is not None:
            lines.append(b"id: " + ev["id"].encode())
        if ev["retry"] is not None:
            lines.append(b"retry: %d" % ev["retry"])
        if ev["data"] is not None:
            lines += [b"data: " + part.encode() for part in ev["data"].split("\n")]
        last = i == len(events) - 1
        # ending: 0 = blank line after the last frame, 1 = line end only, 2 = nothing.
        tail = eol + eol if not last or ending == 0 else (eol if ending == 1 else b"")
        out += eol.join(lines) + tail
        comments = list(ev["comments"])
        fields = (ev["event"], ev["data"], ev["id"], ev["retry"], comments)
        expected.append((*fields, not last or ending == 0))
    stream = bytes(out)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    frames = check_chunking(stream, cuts)
    assert key(frames) == expected


def test_complete_oversized_frame_raises_with_earlier_frames() -> None:
    small, big = b"data: a\n\n", b"data: " + b"x" * 100 + b"\n\n"
    framer = SSEFramer(max_frame_bytes=64)
    with pytest.raises(FrameTooLarge) as info:
        framer.feed(small + big + small)
    assert [f.data for f in info.value.frames] == ["a"]
    assert info.value.size == len(big) and info.value.limit == 64


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from(
            [
                b"data: a\n\n",
                b"data: b\r\n\r\n",
                b"event: e\ndata: c\r\n\n",
                b": x\r\r",
                b"data: d\n",
                b"\n",
                b"\r",
                b"data: ",
                b"\xf0\x9f",
                b"\x8c\x8d\n\n",
            ]
        ),
        min_size=1,
        max_size=30,
    ),
    data=st.data(),
)
def test_mixed_line_endings_switch_between_parsers(
    pieces: list[bytes], data: st.DataObject
) -> None:
    """LF-only chunks take the fast path, others the general one; mixing them in any
    order and chunking gives what one whole feed gives."""
    stream = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=20))
    whole = run([stream])
    chunked = run(split(stream, cuts))
    assert [(f.event, f.data, f.comments) for f in chunked] == [
        (f.event, f.data, f.comments) for f in whole
    ]
    assert b"".join(f.raw for f in chunked) == stream


def test_fast_path_long_line_is_scanned_once() -> None:
    framer = SSEFramer(max_frame_bytes=4 * 1024 * 1024)
    assert [f.data for f in framer.feed(b"data: first\n\n")] == ["first"]
    framer.feed(b"data: ")
    for _ in range(1024):
        assert framer.feed(b"y" * 1024) == []
        # No line end held: a CR chunk would send the general parser on from here.
        assert framer._scan == framer.buffered
    (frame,) = framer.feed(b"\n\n")
    assert frame.data == "y" * (1024 * 1024)


def test_fast_path_long_frame_of_many_lines_in_small_chunks_is_linear() -> None:
    """8 MiB of one frame's lines in 64-byte chunks: a search from the start of what is
    held on every chunk would take minutes."""
    framer = SSEFramer(max_frame_bytes=16 * 1024 * 1024)
    line = b"data: " + b"z" * 57 + b"\n"
    started = time.perf_counter()
    for _ in range(128 * 1024):
        assert framer.feed(line) == []
    assert time.perf_counter() - started < 10
    (frame,) = framer.feed(b"\n")
    assert frame.raw.count(b"\n") == 128 * 1024 + 1


def test_framed_elsewhere_means_the_first_line_went_by() -> None:
    framer = SSEFramer()
    framer.framed_elsewhere()
    # A byte order mark after the stream's first line is part of the field name.
    (frame,) = framer.feed(b"\xef\xbb\xbfdata: a\n\n")
    assert frame.data is None and frame.raw == b"\xef\xbb\xbfdata: a\n\n"
    (frame,) = SSEFramer().feed(b"\xef\xbb\xbfdata: a\n\n")
    assert frame.data == "a"
    framer.feed(b"data: b")
    with pytest.raises(RuntimeError):
        framer.framed_elsewhere()
