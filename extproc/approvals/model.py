"""What a pending approval is, and the states it goes through.

An approval is created `pending` by the process holding the stream. Exactly one
transition leaves `pending` (the table below), whoever makes it: a person answers
(`approved`, `denied`), the holder's clock runs out (`timed_out`) or its client goes away
(`cancelled`). The store makes each transition conditional on the row still being
pending, so a late answer and a timeout cannot both win.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


# Status -> the statuses it may become. Every status but pending is final.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.DENIED, Status.TIMED_OUT, Status.CANCELLED}),
    Status.APPROVED: frozenset(),
    Status.DENIED: frozenset(),
    Status.TIMED_OUT: frozenset(),
    Status.CANCELLED: frozenset(),
}
# Where the admin API serves approvals (`{APPROVALS_PATH}/{id}` answers one).
APPROVALS_PATH = "/api/approvals"
# What a person may answer (the API's `decision` values).
ANSWERS = {"approve": Status.APPROVED, "deny": Status.DENIED}

# A pending row its holder has not refreshed for this long belongs to a process that is
# gone (crashed, restarted): it leaves the listing and can no longer be answered.
STALE_AFTER_S = 10.0
MAX_REASON_CHARS = 1000


def can_become(current: Status, new: Status) -> bool:
    return new in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """One tool call waiting for a person, as the holder writes it (texts already
    redacted and bounded)."""

    id: str
    holder: str  # host:pid:token of the process holding the stream
    caller: str | None
    api: str
    model: str
    request_id: str
    policy: str
    tool: str
    arguments: str  # the call's arguments as JSON text
    preceding_text: str  # what the model wrote before the call, in this response
    why: str  # the rule that matched, or the judge's verdict
    timeout_s: float
    created_at: float = field(default_factory=time.time)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.timeout_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": Status.PENDING.value,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "holder": self.holder,
            "caller": self.caller,
            "api": self.api,
            "model": self.model,
            "request_id": self.request_id,
            "policy": self.policy,
            "tool": self.tool,
            "arguments": self.arguments,
            "preceding_text": self.preceding_text,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """How an approval ended."""

    status: Status
    by: str | None = None  # the approver's name (an admin key's)
    reason: str | None = None
    seconds: float = 0.0  # how long the call waited

    @property
    def allowed(self) -> bool:
        return self.status is Status.APPROVED
