"""When a crashed ext_proc worker is started again, and when the supervisor gives up.

A worker that dies is restarted after a backoff that grows with each crash in the
window (0.5 s, 1 s, 2 s, ... up to 8 s); more than `limit` crashes within `window_s`
is a crash loop: restarting again would only hide it, so the gateway stops, non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# The exit status of a worker whose configuration files are refused at start (sysexits'
# EX_CONFIG): the files are wrong, not the worker, so it is no crash; it is tried again
# at the longest backoff, until the files are fixed.
EXIT_CONFIG = 78
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0


@dataclass
class RestartPolicy:
    limit: int = CRASH_LIMIT
    window_s: float = CRASH_WINDOW_S
    backoff_s: tuple[float, ...] = BACKOFF_S
    # Crash times per worker name, within the window.
    crashes: dict[str, list[float]] = field(default_factory=dict)
    total: int = 0

    def crashed(self, name: str, now: float) -> float | None:
        """Seconds to wait before starting `name` again, or None: a crash loop."""
        recent = [t for t in self.crashes.get(name, []) if now - t < self.window_s]
        recent.append(now)
        self.crashes[name] = recent
        if len(recent) > self.limit:
            return None
        self.total += 1
        return self.backoff_s[min(len(recent), len(self.backoff_s)) - 1]
