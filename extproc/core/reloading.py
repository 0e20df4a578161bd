"""What a configuration reload reports, to whoever asked for it (a signal, a changed
file, the admin API)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    # One line: what is now served, or the file, entry and field that kept the old one.
    message: str
    # How many configurations this process has served (1: the one it started with);
    # None where it is not known (the admin server asks the supervisor to reload).
    generation: int | None = None
