"""What the approval desk and the admin API need of a store. The audit stores implement
it (`observe/store/approvals_sql.py`): pending calls live beside the records, shared by
every process and replica on one database, so a call is answered wherever the admin
API runs. Every method may raise `core.storage.StoreError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from extproc.approvals.model import PendingApproval, Status


class ApprovalStore(Protocol):
    def add_approval(self, pending: PendingApproval) -> None: ...

    def approval(self, approval_id: str) -> dict[str, Any] | None: ...

    def pending_approvals(self, now: float) -> list[dict[str, Any]]:
        """Pending calls whose holder is alive and whose time has not run out."""
        ...

    def answer_approval(
        self, approval_id: str, status: Status, by: str, reason: str | None, now: float
    ) -> dict[str, Any] | None:
        """A person's answer; the row afterwards (None: no such row)."""
        ...

    def end_approval(self, approval_id: str, status: Status, now: float) -> bool:
        """The holder ends its own row; False when an answer came first."""
        ...

    def approval_updates(self, holder: str, ids: Iterable[str], now: float) -> list[dict[str, Any]]:
        """The holder's heartbeat, and which of `ids` have ended."""
        ...

    def close(self) -> None: ...
