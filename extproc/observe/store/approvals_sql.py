"""The approvals table's queries, written once for SQLite and PostgreSQL (mixed into
`SqlStore`, whose connections they use).

Every change of status is one conditional UPDATE (`WHERE status = 'pending'`), so of a
person's answer, the holder's timeout and its client's disconnect exactly one wins,
whichever process makes it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from extproc.approvals.model import STALE_AFTER_S, PendingApproval, Status

_COLUMNS = (
    "id", "created_at", "expires_at", "seen_at", "holder", "status", "caller", "api",
    "model", "request_id", "policy", "tool", "arguments", "preceding_text", "why",
    "decided_by", "decided_at", "decision_reason",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM approvals"
_PENDING = Status.PENDING.value


class _Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


def approval_dict(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_COLUMNS, row, strict=True))


class ApprovalQueries:
    """What the approval desk (in the holding process) and the admin API ask of the
    store."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[_Cursor]: ...

    @abstractmethod
    def _reading(self) -> AbstractContextManager[_Cursor]: ...

    @abstractmethod
    def _ready(self) -> None: ...

    def add_approval(self, pending: PendingApproval) -> None:
        self._ready()
        row = pending.to_dict()
        values = {**row, "seen_at": pending.created_at}
        names = [c for c in _COLUMNS if c in values]
        with self._writing() as cur:
            cur.execute(
                f"INSERT INTO approvals ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [values[n] for n in names],
            )

    def approval(self, approval_id: str) -> dict[str, Any] | None:
        self._ready()
        with self._reading() as cur:
            cur.execute(f"{_SELECT} WHERE id = ?", [approval_id])
            row = cur.fetchone()
        return approval_dict(row) if row is not None else None

    def pending_approvals(self, now: float) -> list[dict[str, Any]]:
        """Pending calls whose holder is alive and whose time has not run out, oldest
        first."""
        self._ready()
        with self._reading() as cur:
            cur.execute(
                f"{_SELECT} WHERE status = ? AND expires_at > ? AND seen_at > ? "
                "ORDER BY created_at ASC LIMIT 500",
                [_PENDING, now, now - STALE_AFTER_S],
            )
            return [approval_dict(r) for r in cur.fetchall()]

    def answer_approval(
        self, approval_id: str, status: Status, by: str, reason: str | None, now: float
    ) -> dict[str, Any] | None:
        """A person's answer. The row afterwards (its status says whether this answer
        won: a row already ended keeps its status), or None when there is no such row."""
        self._ready()
        with self._writing() as cur:
            cur.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, "
                "decision_reason = ? WHERE id = ? AND status = ? AND expires_at > ? "
                "AND seen_at > ?",
                [status.value, by, now, reason, approval_id, _PENDING, now,
                 now - STALE_AFTER_S],
            )  # fmt: skip
        return self.approval(approval_id)

    def end_approval(self, approval_id: str, status: Status, now: float) -> bool:
        """The holder ends its own pending row (timed out, cancelled); False when a
        person's answer came first."""
        self._ready()
        with self._writing() as cur:
            cur.execute(
                "UPDATE approvals SET status = ?, decided_at = ? WHERE id = ? AND status = ?",
                [status.value, now, approval_id, _PENDING],
            )
            return cur.rowcount == 1

    def approval_updates(self, holder: str, ids: Iterable[str], now: float) -> list[dict[str, Any]]:
        """The holder's heartbeat: the rows among `ids` still pending are marked alive
        (only those: a row the holder no longer waits on must age out), and the rows among
        them that have ended are returned."""
        wanted = list(ids)
        if not wanted:
            return []
        self._ready()
        marks = ", ".join("?" * len(wanted))
        with self._writing() as cur:
            cur.execute(
                f"UPDATE approvals SET seen_at = ? WHERE holder = ? AND status = ? "
                f"AND id IN ({marks})",
                [now, holder, _PENDING, *wanted],
            )
            cur.execute(f"{_SELECT} WHERE id IN ({marks}) AND status != ?", [*wanted, _PENDING])
            return [approval_dict(r) for r in cur.fetchall()]
