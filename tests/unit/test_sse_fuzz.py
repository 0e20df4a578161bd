"""Property tests of the SSE framer (extproc/sse.py) on arbitrary bytes.

What its docstrings promise, for any input (valid SSE or not) cut anywhere: the frames
are those of one whole feed; each carries the exact bytes it was made of, so the frames'
bytes (the unterminated tail from `flush()` included) are the input; only the
incomplete tail is held back; and the only exception is `FrameTooLarge`, raised for the
same input whatever the chunking, after the same frames.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.sse import Frame, FrameTooLarge, SSEFramer
from tests.helpers.engine import chunked
from tests.helpers.fuzz import FUZZ
from tests.helpers.streams import frames

# Pieces that make the framer's decisions: field names with and without their space,
# every line ending (a CR may be half of a CRLF), a byte order mark, a UTF-8 sequence
# whole and cut, bytes that are never UTF-8.
_TOKENS = st.sampled_from(
    [
        b"data:",
        b"data: ",
        b"event: ",
        b"id: ",
        b"retry: 100",
        b"retry: x",
        b":",
        b" ",
        b"x",
        b'{"a": 1}',
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\xef\xbb\xbf",
        b"\xf0\x9f\x8c\x8d",
        b"\xf0\x9f",
        b"\xff\x00",
    ]
)
STREAMS = st.lists(_TOKENS, max_size=40).map(b"".join) | st.binary(max_size=200)
CUTS = st.lists(st.integers(0, 300), max_size=20)


def feed_all(chunks: list[bytes], max_frame_bytes: int = 1 << 30) -> list[Frame]:
    framer = SSEFramer(max_frame_bytes)
    out: list[Frame] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out + framer.flush()


def delivered(chunks: list[bytes], max_frame_bytes: int) -> tuple[list[Frame], bool]:
    """The frames a caller gets (those a FrameTooLarge carries included), and whether
    one was raised; any other exception escapes."""
    framer = SSEFramer(max_frame_bytes)
    out: list[Frame] = []
    try:
        for chunk in chunks:
            out += framer.feed(chunk)
        out += framer.flush()
    except FrameTooLarge as exc:
        assert exc.limit == max_frame_bytes and exc.size > max_frame_bytes
        return out + exc.frames, True
    return out, False


@settings(FUZZ, max_examples=400)
@given(stream=STREAMS, cuts=CUTS)
def test_any_chunking_gives_the_frames_of_one_feed_and_the_input_back(
    stream: bytes, cuts: list[int]
) -> None:
    whole = frames(stream)
    assert feed_all(chunked(stream, cuts)) == whole
    assert b"".join(f.raw for f in whole) == stream
    # Only the last frame, from flush(), may lack its blank line.
    assert all(f.terminated for f in whole[:-1])


@settings(FUZZ, max_examples=300)
@given(stream=STREAMS, cuts=CUTS)
def test_only_the_incomplete_tail_is_held_back(stream: bytes, cuts: list[int]) -> None:
    framer = SSEFramer(1 << 30)
    fed = sent = 0
    for chunk in chunked(stream, cuts):
        got = framer.feed(chunk)
        assert all(f.terminated for f in got)
        fed += len(chunk)
        sent += sum(len(f.raw) for f in got)
        assert sent + framer.buffered == fed
    sent += sum(len(f.raw) for f in framer.flush())
    assert (sent, framer.buffered) == (len(stream), 0)


@settings(FUZZ, max_examples=400)
@given(stream=STREAMS, cuts=CUTS, max_frame_bytes=st.integers(1, 48))
def test_the_frame_bound_gives_the_same_verdict_whatever_the_chunking(
    stream: bytes, cuts: list[int], max_frame_bytes: int
) -> None:
    whole, whole_raised = delivered([stream], max_frame_bytes)
    pieces, pieces_raised = delivered(chunked(stream, cuts), max_frame_bytes)
    assert (pieces, pieces_raised) == (whole, whole_raised)
    if not whole_raised:
        assert all(len(f.raw) <= max_frame_bytes for f in whole)
        assert b"".join(f.raw for f in whole) == stream


class _GeneralOnly(SSEFramer):
    """The framer without its LF fast path: every byte through the general parser."""

    def feed(self, data: bytes) -> list[Frame]:
        if not data:
            return []
        self._buf += data
        frames = self._parse(final=False)
        if len(self._buf) > self._max:
            raise FrameTooLarge(len(self._buf), self._max, frames)
        return frames


# Streams the fast path takes whole (no CR): lines in the shapes it special-cases and
# around them, frames ended by zero to three LFs, after a byte order mark or not.
_LINE = st.tuples(
    st.sampled_from([b"data: ", b"data:", b"event: ", b"event:", b"id: ", b": ", b"x: ", b""]),
    st.sampled_from([b"", b"a", b'{"a": 1}', b"data: x", b"\xf0\x9f", b"\xff"]),
).map(b"".join)
_FRAME = st.tuples(
    st.lists(_LINE, max_size=4).map(b"\n".join), st.sampled_from([b"\n\n", b"\n\n\n", b"\n", b""])
).map(b"".join)
LF_STREAMS = st.tuples(
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n", b"\n"]),
    st.lists(_FRAME, max_size=8),
).map(lambda t: t[0] + b"".join(t[1]))


@settings(FUZZ, max_examples=800)
@given(
    stream=LF_STREAMS | STREAMS, cuts=CUTS, max_frame_bytes=st.integers(1, 64) | st.just(1 << 30)
)
# The special-cased shapes with one line more; a blank line split across two chunks;
# a byte order mark before blank lines only, and cut.
@example(stream=b"x\n\nevent: e\ndata: a\ndata: b\n\n", cuts=[], max_frame_bytes=1 << 30)
@example(stream=b"data: a\ndata: b\n\nevent: e\ndata: c\n\n", cuts=[], max_frame_bytes=1 << 30)
@example(stream=b"event: e\ndata: a\n: c\n\ndata: a\nid: 1\n\n", cuts=[], max_frame_bytes=1 << 30)
@example(stream=b"data: a\n\ndata: b\n\n", cuts=[8, 17], max_frame_bytes=1 << 30)
@example(stream=b"\xef\xbb\xbf\n\n", cuts=[], max_frame_bytes=1 << 30)
@example(stream=b"\xef\xbb\xbfdata: a\n\n", cuts=[1], max_frame_bytes=1 << 30)
def test_fast_path_gives_what_the_general_parser_gives(
    stream: bytes, cuts: list[int], max_frame_bytes: int
) -> None:
    def run(framer: SSEFramer) -> tuple[list[Frame], bool]:
        out: list[Frame] = []
        try:
            for chunk in chunked(stream, cuts):
                out += framer.feed(chunk)
            out += framer.flush()
        except FrameTooLarge as exc:
            return out + exc.frames, True
        return out, False

    assert run(SSEFramer(max_frame_bytes)) == run(_GeneralOnly(max_frame_bytes))
