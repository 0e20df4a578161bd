"""Placeholder until the stream validator lands."""

from extproc.sse import Frame


class StreamValidator:
    def feed(self, frame: Frame) -> None:
        pass

    def finish(self) -> list[str]:
        return []
