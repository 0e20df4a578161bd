"""The approval's states (extproc/approvals/model.py): one transition leaves `pending`,
and every other state is final."""

from __future__ import annotations

import pytest

from extproc.approvals.model import (
    ANSWERS,
    TRANSITIONS,
    Answer,
    PendingApproval,
    Status,
    can_become,
)

FINAL = [s for s in Status if s is not Status.PENDING]


def test_the_table_names_every_status() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert {s.value for s in Status} == {"pending", "approved", "denied", "timed_out", "cancelled"}


@pytest.mark.parametrize("final", FINAL)
def test_pending_may_become_each_final_state(final: Status) -> None:
    assert can_become(Status.PENDING, final)


def test_pending_does_not_stay_pending() -> None:
    assert not can_become(Status.PENDING, Status.PENDING)
    assert TRANSITIONS[Status.PENDING] == frozenset(FINAL)


@pytest.mark.parametrize("final", FINAL)
def test_final_states_go_nowhere(final: Status) -> None:
    assert TRANSITIONS[final] == frozenset()
    assert not any(can_become(final, other) for other in Status)


def test_people_answer_approve_or_deny() -> None:
    assert ANSWERS == {"approve": Status.APPROVED, "deny": Status.DENIED}
    assert all(can_become(Status.PENDING, s) for s in ANSWERS.values())


def test_only_an_approval_allows() -> None:
    assert Answer(Status.APPROVED, "alice").allowed
    assert not any(Answer(s).allowed for s in Status if s is not Status.APPROVED)


def test_a_pending_approval_as_a_row() -> None:
    pending = PendingApproval(
        id="a1", holder="h:1:x", caller=None, api="openai", model="gpt-x", request_id="r1",
        policy="p", tool="bash", arguments="{}", preceding_text="", why="rule", timeout_s=30.0,
        created_at=1000.0,
    )  # fmt: skip
    assert pending.expires_at == 1030.0
    row = pending.to_dict()
    assert row["status"] == "pending" and row["expires_at"] == 1030.0
    assert row["created_at"] == 1000.0 and row["caller"] is None
