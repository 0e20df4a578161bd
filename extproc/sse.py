"""Incremental Server-Sent Events framer.

Bytes go in as they arrive from Envoy, in chunks split anywhere (inside a UTF-8
sequence, between ``\\r`` and ``\\n``, inside a field name). Complete frames come out,
each carrying the exact bytes it was made of, so a frame that no policy touches can be
forwarded byte for byte. Parsing follows the WHATWG event-stream rules: LF, CRLF and CR
line endings, ``:`` comment lines, multi-line ``data:``, one optional space after the
colon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A bare "\r" at the very end of the buffer may be the first half of "\r\n": the
# framer waits for the next byte before deciding, except at end of stream.
_EOL = re.compile(rb"\r\n|\r|\n")

DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class FrameTooLarge(Exception):
    """One SSE frame is larger than the configured bound, complete or not.

    `frames` holds the complete frames that came before it in the same feed, so the
    caller can still deliver them. The framer is unusable afterwards.
    """

    def __init__(self, size: int, limit: int, frames: list[Frame] | None = None) -> None:
        super().__init__(f"SSE frame exceeds {limit} bytes ({size} bytes)")
        self.size = size
        self.limit = limit
        self.frames = frames or []


@dataclass(slots=True)
class Frame:
    """One SSE event as it appeared on the wire."""

    raw: bytes
    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    # False only for a last frame that ended with the stream, not with a blank line.
    terminated: bool = True

    @property
    def has_data(self) -> bool:
        return self.data is not None


class _Fields:
    """Field values of the frame being read; reset after every frame."""

    __slots__ = ("comments", "data", "event", "id", "retry", "seen")

    def __init__(self) -> None:
        self.event: str | None = None
        self.data: list[str] | None = None
        self.id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []
        self.seen = False

    def add_line(self, line: bytes) -> None:
        self.seen = True
        if line[:1] == b":":
            self.comments.append(line[1:].decode("utf-8", "replace"))
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            if self.data is None:
                self.data = [text]
            else:
                self.data.append(text)
        elif name == b"event":
            self.event = text
        elif name == b"id":
            self.id = text
        elif name == b"retry" and text.isascii() and text.isdigit():
            self.retry = int(text)
        # Unknown field names are ignored, as the spec says; their bytes stay in `raw`.

    def to_frame(self, raw: bytes, terminated: bool = True) -> Frame:
        return Frame(
            raw=raw,
            event=self.event,
            data=None if self.data is None else "\n".join(self.data),
            id=self.id,
            retry=self.retry,
            comments=self.comments,
            terminated=terminated,
        )


def _parse_lf_frame(piece: bytes, raw: bytes) -> Frame | None:
    """One frame's lines (LF only, without its blank line); None if it holds none."""
    # The shapes providers write, `event: <name>\ndata: <json>` and `data: <json>`,
    # without the per-line loop: same result as the general one below.
    if piece.startswith(b"data: "):
        if b"\n" not in piece:
            return Frame(raw, None, piece[6:].decode("utf-8", "replace"))
    elif piece.startswith(b"event: "):
        nl = piece.find(b"\n")
        if nl > 0 and piece.startswith(b"data: ", nl + 1) and piece.find(b"\n", nl + 1) < 0:
            return Frame(
                raw,
                piece[7:nl].decode("utf-8", "replace"),
                piece[nl + 7 :].decode("utf-8", "replace"),
            )
    fields = _Fields()
    for line in piece.split(b"\n"):
        if line:
            fields.add_line(line)
    return fields.to_frame(raw) if fields.seen else None


class SSEFramer:
    """Turns a byte stream into complete `Frame`s; holds back only the incomplete tail."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0  # start of the first line not yet parsed
        # Where to resume looking for a line end: bytes before it hold none, so a long
        # line arriving in small chunks is scanned once, not once per chunk.
        self._scan = 0
        self._fields = _Fields()
        self._flushed = False
        self._first_line = True
        # At a frame boundary the buffer holds a CR only if the general parser stopped on
        # a lone CR at the end (it may be half of CRLF).
        self._cr_wait = False

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def framed_elsewhere(self) -> None:
        """Whole frames of this stream went by, framed by another framer (at a frame
        boundary, nothing held): what comes next is not the stream's first line."""
        if self._buf or self._pos or self._fields.seen:
            raise RuntimeError("framed_elsewhere() with part of a frame held")
        self._first_line = False

    def feed(self, data: bytes) -> list[Frame]:
        if self._flushed:
            raise RuntimeError("feed() after flush()")
        if not data:
            return []
        if self._pos == 0 and not self._fields.seen and not self._cr_wait and b"\r" not in data:
            frames = self._parse_lf(data)
        else:
            self._buf += data
            frames = self._parse(final=False)
        if len(self._buf) > self._max:
            raise FrameTooLarge(len(self._buf), self._max, frames)
        return frames

    def _parse_lf(self, data: bytes) -> list[Frame]:
        """The common case, at C speed: LF line endings, at a frame boundary. Frames are
        cut at blank lines with bytes.split; lines parsed only for complete frames."""
        buf = self._buf
        held = len(buf)
        if buf:
            buf += data
            # A blank line that ends a frame can only begin at the last byte held (what
            # is held was cut already), so a long frame in small chunks is scanned once.
            if buf.find(b"\n\n", held - 1) < 0:
                self._held_lines(data, held)
                return []
            whole = bytes(buf)
        elif b"\n\n" not in data:
            buf += data
            self._held_lines(data, 0)
            return []
        else:
            whole = data  # nothing held back: the chunk itself, not a copy
        parts = whole.split(b"\n\n")
        tail = parts.pop()  # after the last blank line: an incomplete frame, or nothing
        if self._first_line:
            # A frame ends, so the stream's first line is complete: as the general parser
            # does, a leading byte order mark is not part of its field name.
            if parts[0].startswith(_BOM):
                parts[0] = parts[0][len(_BOM) :]
                prefix = _BOM
            else:
                prefix = b""
        else:
            prefix = b""
        frames: list[Frame] = []
        for piece in parts:
            raw = prefix + piece + b"\n\n"
            frame = _parse_lf_frame(piece, raw)
            if frame is None:
                prefix = raw  # only blank lines: kept as the next frame's prefix
                continue
            if len(raw) > self._max:
                self._flushed = True
                raise FrameTooLarge(len(raw), self._max, frames)
            prefix = b""
            frames.append(frame)
        if frames:
            # What is held no longer starts the stream. (Held blank lines alone still do:
            # whoever parses them next strips the mark again.)
            self._first_line = False
        if prefix or tail:
            buf[:] = prefix + tail
            nl = buf.find(b"\n")
            self._scan = nl if nl >= 0 else len(buf)
        else:
            buf.clear()
            self._scan = 0
        return frames

    def _held_lines(self, data: bytes, held: int) -> None:
        """Keep the general parser's `_scan` (no line end before it) right for what is
        held, should a CR send the next chunk there: its first LF, else its end."""
        if self._scan >= held:
            nl = data.find(b"\n")
            self._scan = held + nl if nl >= 0 else held + len(data)

    def flush(self) -> list[Frame]:
        """End of stream: returns the remaining frames, a last unterminated one included."""
        if self._flushed:
            return []
        self._flushed = True
        frames = self._parse(final=True)
        if self._buf:
            tail = bytes(self._buf)
            if self._pos < len(self._buf):
                start = self._pos
                if self._first_line and tail.startswith(_BOM, start):
                    start += len(_BOM)
                self._fields.add_line(tail[start:])
            frames.append(self._fields.to_frame(tail, terminated=False))
            self._buf.clear()
            self._pos = 0
            self._fields = _Fields()
        return frames

    def _parse(self, final: bool) -> list[Frame]:
        self._cr_wait = False
        buf = self._buf
        pos = self._pos
        frame_start = 0
        frames: list[Frame] = []
        fields = self._fields
        end = len(buf)
        search = _EOL.search
        scan = max(self._scan, pos)
        while True:
            m = search(buf, scan)
            if m is None:
                scan = end
                break
            eol_end = m.end()
            if not final and eol_end == end and buf[m.start()] == 0x0D and eol_end - m.start() == 1:
                scan = m.start()  # lone "\r" at the end: wait to see whether "\n" follows
                self._cr_wait = True
                break
            line_start, pos = pos, eol_end
            scan = pos
            if self._first_line:
                self._first_line = False
                if buf.startswith(_BOM, line_start):
                    # A leading byte order mark is not part of the first field name; it
                    # stays in the frame's raw bytes.
                    line_start += len(_BOM)
            if m.start() == line_start:
                # Blank line: dispatch. Stray blank lines before any field are kept as
                # the prefix of the next frame's bytes rather than dispatched on their own.
                if fields.seen:
                    if pos - frame_start > self._max:
                        # The same verdict whether the frame came whole or in pieces.
                        self._flushed = True
                        raise FrameTooLarge(pos - frame_start, self._max, frames)
                    frames.append(fields.to_frame(bytes(buf[frame_start:pos])))
                    fields = _Fields()
                    frame_start = pos
                continue
            fields.add_line(bytes(buf[line_start : m.start()]))
        if frame_start:
            del buf[:frame_start]
            pos -= frame_start
            scan -= frame_start
        self._pos = pos
        self._scan = scan
        self._fields = fields
        return frames
