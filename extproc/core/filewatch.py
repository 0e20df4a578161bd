"""Notice that configuration files changed, by polling their status: no inotify, so it
works the same for an editor's save, a `mv`, and a Kubernetes ConfigMap's symlink swap
(the path is followed, so a new target counts as a change).

A change is reported once the files have stayed the same for `settle_s`: an editor
writing a file in several steps triggers one reload, not one per step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

Stamp = tuple[int, int, int] | None  # (inode, size, mtime_ns); None: absent


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatch:
    def __init__(self, paths: Iterable[str], settle_s: float = 0.5) -> None:
        self.paths = tuple(dict.fromkeys(p for p in paths if p))
        self.settle_s = settle_s
        self._seen = self._stamps()
        # The stamps of a change not yet reported, and when they were first seen.
        self._pending: tuple[tuple[Stamp, ...], float] | None = None

    def _stamps(self) -> tuple[Stamp, ...]:
        return tuple(_stamp(p) for p in self.paths)

    def differs(self) -> bool:
        """Whether the files differ from the last picture, settled or not."""
        return self._stamps() != self._seen

    def changed(self, now: float) -> bool:
        """Whether the files changed and have since settled; call it every poll."""
        current = self._stamps()
        if current == self._seen:
            self._pending = None
            return False
        if self._pending is None or self._pending[0] != current:
            self._pending = (current, now)
            return False
        if now - self._pending[1] < self.settle_s:
            return False
        self._seen, self._pending = current, None
        return True
