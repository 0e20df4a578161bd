"""What every audit store does: write batches, answer the admin API's queries, forget
old records. SQLite (`sqlite.py`, the embedded default) and PostgreSQL (`postgres.py`,
for several replicas) implement it; `open_store` picks one from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from extproc.approvals.store import ApprovalStore
from extproc.observe.records import DecisionRecord, RequestRecord


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    caller: str | None = None
    policy: str | None = None
    action: str | None = None
    model: str | None = None
    request_id: str | None = None
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive
    limit: int = 100
    # Rows with an id below this one (the previous page's `next_cursor`): newest first.
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class DecisionPage:
    rows: list[dict[str, Any]]  # DecisionRecord.to_dict() plus "id"
    next_cursor: int | None  # pass as before_id for the next page; None: no more


class AuditStore(ApprovalStore, Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema to SCHEMA_VERSION (idempotent)."""
        ...

    def write(self, requests: list[RequestRecord], decisions: list[DecisionRecord]) -> None:
        """One batch, in one transaction. Raises StoreError."""
        ...

    def decisions(self, query: DecisionQuery) -> DecisionPage: ...

    def decisions_after(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """Decisions with an id above `after_id`, oldest first (the live stream)."""
        ...

    def last_decision_id(self) -> int: ...

    def request(self, request_id: str) -> dict[str, Any] | None:
        """{"request": summary or None, "decisions": [...]} or None when neither exists."""
        ...

    def stats(self, since: float, until: float, bucket_s: int) -> dict[str, Any]: ...

    def purge(self, before: float) -> int:
        """Delete records older than `before`; how many went."""
        ...

    def close(self) -> None: ...
