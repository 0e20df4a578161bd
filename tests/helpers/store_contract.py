"""What every audit store must do, written once: a test module subclasses
`StoreContract` and provides a `store` fixture (a fresh, empty store per test), so
SQLite and PostgreSQL are held to the very same tests."""

from __future__ import annotations

import math
from typing import Any

import pytest

from extproc.approvals.model import STALE_AFTER_S, PendingApproval, Status
from extproc.core.storage import StoreError
from extproc.observe.records import SCHEMA_VERSION, DecisionRecord
from extproc.observe.store import schema
from extproc.observe.store.base import DecisionQuery
from extproc.observe.store.sql import SqlStore
from tests.helpers.records import decision, request_record

T0 = 1_699_999_200.0  # a multiple of an hour: buckets start on it
CALLERS = ["alice", "bob", None]
POLICIES = ["pii", "tools"]
ACTIONS = ["redact", "allow", "block_tool_call", "reject_request"]
MODELS = ["m1", "m2", "m3", None, "m5"]


def mixed(n: int = 60) -> list[DecisionRecord]:
    """Decisions one second apart whose fields vary independently of each other."""
    return [
        decision(
            time=T0 + i,
            request_id=f"req-{i % 7}",
            caller=CALLERS[i % 3],
            policy=POLICIES[i % 2],
            action=ACTIONS[i % 4],
            model=MODELS[i % 5],
            mode="shadow" if i % 6 == 0 else "enforce",
        )
        for i in range(n)
    ]


def times(rows: list[dict[str, Any]]) -> list[float]:
    return [row["time"] for row in rows]


def all_rows(store: SqlStore, **filters: Any) -> list[dict[str, Any]]:
    return store.decisions(DecisionQuery(limit=1000, **filters)).rows


class StoreContract:
    def test_migrations_are_idempotent_and_versioned(self, store: SqlStore) -> None:
        assert store.schema_version() == 0
        store.migrate()
        store.migrate()
        assert store.schema_version() == SCHEMA_VERSION
        store.write([request_record()], [decision()])
        store.migrate()  # a second gateway starting must not touch the data
        assert store.last_decision_id() > 0

    def test_a_later_migration_applies_on_top(
        self, store: SqlStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.migrate()
        store.write([], [decision()])
        later = [*schema.MIGRATIONS, ("ALTER TABLE decisions ADD COLUMN extra_v2 TEXT",)]
        monkeypatch.setattr(schema, "MIGRATIONS", later)
        store.migrate()
        store.migrate()
        assert store.schema_version() == len(later)
        assert len(all_rows(store)) == 1  # the rows written before are still there

    def test_queries_before_migrate_create_the_tables(self, store: SqlStore) -> None:
        assert store.last_decision_id() == 0
        assert store.schema_version() == SCHEMA_VERSION

    def test_every_field_round_trips(self, store: SqlStore) -> None:
        req, dec = request_record(), decision()
        store.write([req], [dec])
        [row] = store.decisions(DecisionQuery()).rows
        assert row == {**dec.to_dict(), "id": row["id"]}
        assert isinstance(row["id"], int)
        found = store.request(req.request_id)
        assert found is not None
        assert found["request"] == req.to_dict()
        assert found["decisions"] == [row]

    def test_nullable_fields_round_trip_as_none(self, store: SqlStore) -> None:
        req = request_record(
            caller=None, model=None, stream=None, input_tokens=None, ttfb_ms=None, trace_id=None
        )
        dec = decision(caller=None, message=None, probability=None, judge_ms=None, target={})
        store.write([req], [dec])
        [row] = store.decisions(DecisionQuery()).rows
        assert row == {**dec.to_dict(), "id": row["id"]}
        found = store.request("req-1")
        assert found is not None and found["request"] == req.to_dict()
        store.write([request_record(request_id="r2", stream=False)], [])
        again = store.request("r2")
        assert again is not None and again["request"]["stream"] is False

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("caller", "alice"),
            ("caller", "bob"),
            ("policy", "tools"),
            ("action", "block_tool_call"),
            ("model", "m3"),
            ("request_id", "req-4"),
        ],
    )
    def test_each_filter_is_an_exact_match(self, store: SqlStore, name: str, value: str) -> None:
        records = mixed()
        store.write([], records)
        expected = [r.time for r in reversed(records) if getattr(r, name) == value]
        assert 0 < len(expected) < len(records)
        assert times(all_rows(store, **{name: value})) == expected
        assert all_rows(store, **{name: "nobody"}) == []

    def test_filters_combine(self, store: SqlStore) -> None:
        records = mixed()
        store.write([], records)
        got = all_rows(store, caller="alice", policy="pii", since=T0 + 10, until=T0 + 40)
        expected = [
            r.time
            for r in reversed(records)
            if r.caller == "alice" and r.policy == "pii" and T0 + 10 <= r.time < T0 + 40
        ]
        assert times(got) == expected and expected

    def test_since_is_inclusive_and_until_exclusive(self, store: SqlStore) -> None:
        store.write([], mixed(10))
        assert times(all_rows(store, since=T0 + 3, until=T0 + 6)) == [T0 + 5, T0 + 4, T0 + 3]
        assert times(all_rows(store, since=T0 + 8)) == [T0 + 9, T0 + 8]
        assert times(all_rows(store, until=T0 + 1)) == [T0]
        assert all_rows(store, since=T0 + 5, until=T0 + 5) == []

    @pytest.mark.parametrize(("count", "limit"), [(25, 7), (21, 7), (3, 10)])
    def test_cursor_walks_every_row_once(self, store: SqlStore, count: int, limit: int) -> None:
        store.write([], mixed(count))
        seen: list[int] = []
        pages, cursor = 0, None
        while True:
            page = store.decisions(DecisionQuery(limit=limit, before_id=cursor))
            pages += 1
            assert len(page.rows) <= limit
            seen += [row["id"] for row in page.rows]
            if page.next_cursor is None:
                break
            assert page.next_cursor == page.rows[-1]["id"]
            cursor = page.next_cursor
        every = [row["id"] for row in all_rows(store)]
        assert seen == every == sorted(every, reverse=True)
        assert len(set(seen)) == count
        # A full last page cannot know it was the last: one empty page follows it.
        assert pages == count // limit + 1

    def test_cursor_with_filters(self, store: SqlStore) -> None:
        store.write([], mixed())
        first = store.decisions(DecisionQuery(policy="pii", limit=4))
        second = store.decisions(DecisionQuery(policy="pii", limit=4, before_id=first.next_cursor))
        assert times(first.rows + second.rows) == times(all_rows(store, policy="pii"))[:8]

    def test_limit_is_clamped(self, store: SqlStore) -> None:
        store.write([], [decision(time=T0 + i) for i in range(1005)])
        assert len(store.decisions(DecisionQuery(limit=0)).rows) == 1
        assert len(store.decisions(DecisionQuery(limit=-5)).rows) == 1
        big = store.decisions(DecisionQuery(limit=5000))
        assert len(big.rows) == 1000 and big.next_cursor == big.rows[-1]["id"]

    def test_decisions_after_is_oldest_first(self, store: SqlStore) -> None:
        store.write([], mixed(10))
        ids = [row["id"] for row in reversed(all_rows(store))]
        assert [r["id"] for r in store.decisions_after(0)] == ids
        assert [r["id"] for r in store.decisions_after(ids[3], limit=4)] == ids[4:8]
        assert store.decisions_after(ids[-1]) == []
        assert store.decisions_after(ids[3])[0]["target"] == mixed(1)[0].target

    def test_last_decision_id(self, store: SqlStore) -> None:
        assert store.last_decision_id() == 0
        store.write([request_record()], [])
        assert store.last_decision_id() == 0
        store.write([], mixed(3))
        assert store.last_decision_id() == max(r["id"] for r in all_rows(store))

    def test_request_gathers_its_decisions_oldest_first(self, store: SqlStore) -> None:
        store.write(
            [request_record(request_id="a"), request_record(request_id="b")],
            [
                decision(request_id="a", time=T0 + 2, policy="second"),
                decision(request_id="b", time=T0),
                decision(request_id="a", time=T0 + 1, policy="first"),
            ],
        )
        found = store.request("a")
        assert found is not None and found["request"]["request_id"] == "a"
        assert [d["policy"] for d in found["decisions"]] == ["second", "first"]  # by id
        assert store.request("unknown") is None

    def test_request_with_only_one_kind(self, store: SqlStore) -> None:
        store.write([request_record(request_id="quiet")], [decision(request_id="orphan")])
        assert store.request("quiet") == {
            "request": request_record(request_id="quiet").to_dict(),
            "decisions": [],
        }
        orphan = store.request("orphan")
        assert orphan is not None and orphan["request"] is None
        assert len(orphan["decisions"]) == 1

    def test_stats_counts_groups_and_buckets(self, store: SqlStore) -> None:
        store.write(
            [
                request_record(time=T0 + 1, caller="alice", status=200),
                request_record(time=T0 + 2, caller="alice", status=200),
                request_record(time=T0 + 25, caller=None, status=403),
                request_record(time=T0 + 500, caller="alice"),  # after `until`
            ],
            [
                decision(time=T0 + 1, caller="alice", action="redact"),
                decision(time=T0 + 3, caller="alice", action="redact"),
                decision(time=T0 + 4, caller=None, action="allow", mode="shadow"),
                decision(time=T0 + 21, caller="bob", action="redact"),
                decision(time=T0 - 1, caller="bob"),  # before `since`
            ],
        )
        stats = store.stats(T0, T0 + 40, 10)
        assert (stats["since"], stats["until"], stats["bucket_s"]) == (T0, T0 + 40, 10)
        assert stats["decisions"] == [
            {"policy": "pii", "action": "redact", "mode": "enforce", "caller": "alice", "count": 2},
            # Equal counts: by the fields, in order.
            {"policy": "pii", "action": "allow", "mode": "shadow", "caller": None, "count": 1},
            {"policy": "pii", "action": "redact", "mode": "enforce", "caller": "bob", "count": 1},
        ]
        assert stats["requests"] == [
            {"caller": "alice", "api": "anthropic.messages", "status": 200, "count": 2},
            {"caller": None, "api": "anthropic.messages", "status": 403, "count": 1},
        ]
        assert stats["series"] == [
            {"t": T0, "decisions": 3, "requests": 2},
            {"t": T0 + 10, "decisions": 0, "requests": 0},
            {"t": T0 + 20, "decisions": 1, "requests": 1},
            {"t": T0 + 30, "decisions": 0, "requests": 0},
        ]

    def test_stats_buckets_are_multiples_of_their_width(self, store: SqlStore) -> None:
        # T0 + 2 is in the first bucket but before `since`: not counted.
        store.write([], [decision(time=T0 + 2), decision(time=T0 + 7), decision(time=T0 + 64)])
        stats = store.stats(T0 + 5, T0 + 65, 60)
        assert [s["t"] for s in stats["series"]] == [T0, T0 + 60]
        assert all(math.fmod(s["t"], 60) == 0 for s in stats["series"])
        assert [s["decisions"] for s in stats["series"]] == [1, 1]
        assert all(isinstance(s["t"], float) for s in stats["series"])

    def test_stats_empty_and_limits(self, store: SqlStore) -> None:
        empty = store.stats(T0, T0 + 3600, 60)
        assert empty["decisions"] == [] and empty["requests"] == []
        assert len(empty["series"]) == 60
        assert all(s["decisions"] == s["requests"] == 0 for s in empty["series"])
        assert len(store.stats(0, 2000, 1)["series"]) == 2000
        assert store.stats(T0, T0, 60)["series"] == []
        with pytest.raises(ValueError):
            store.stats(0, 2001, 1)
        with pytest.raises(ValueError):
            store.stats(T0, T0 + 60, 0)
        with pytest.raises(ValueError):
            store.stats(T0 + 60, T0, 10)

    def test_purge_deletes_both_kinds_before_the_cutoff(self, store: SqlStore) -> None:
        store.write(
            [request_record(time=T0 + i, request_id=f"r{i}") for i in range(4)],
            [decision(time=T0 + i, request_id=f"r{i}") for i in range(6)],
        )
        assert store.purge(T0 + 2) == 4  # two of each kind
        assert times(all_rows(store)) == [T0 + 5, T0 + 4, T0 + 3, T0 + 2]
        assert store.request("r1") is None
        found = store.request("r2")
        assert found is not None and found["request"] is not None
        assert store.purge(T0 + 2) == 0

    def test_purge_in_slices(self, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("extproc.observe.store.sql.PURGE_SLICE", 3)
        store.write([request_record(time=T0)] * 4, [decision(time=T0 + i) for i in range(7)])
        assert store.purge(T0 + 100) == 11
        assert all_rows(store) == [] and store.request("req-1") is None

    def test_unicode_and_big_json_targets(self, store: SqlStore) -> None:
        words = ["naïve", "日本語", "🙂🚀", "Ωmega", "tab\tnew\nline", 'quote"\\back']
        target = {
            "tool": "search",
            "arguments": {w: [w] * 3 for w in words},
            "blob": "x" * 300_000,
            "nested": {"a": [{"b": [1, 2.5, True, None]}] * 200},
        }
        dec = decision(target=target, message="🙂 " + "ü" * 1000, caller="kéy-ñame")
        store.write([request_record(caller="kéy-ñame")], [dec])
        [row] = all_rows(store, caller="kéy-ñame")
        assert row["target"] == target and row["message"] == dec.message

    def test_values_databases_refuse_are_stored_alike(self, store: SqlStore) -> None:
        # PostgreSQL refuses NUL in text and NaN in JSON; neither may cost a batch.
        dec = decision(
            message="a\x00b",
            target={"k\x00": "v\x00", "nan": math.nan, "inf": -math.inf, "set": {1}},
            probability=math.nan,
        )
        store.write([request_record(trace_id="t\x00")], [dec])
        [row] = all_rows(store)
        assert row["message"] == "a\ufffdb"
        assert row["target"] == {"k\ufffd": "v\ufffd", "nan": None, "inf": None, "set": "{1}"}
        assert row["probability"] is None

    def test_a_failed_batch_writes_nothing(self, store: SqlStore) -> None:
        store.write([], [decision()])
        broken = decision(policy=None)  # NOT NULL
        with pytest.raises(StoreError):
            store.write([request_record(request_id="lost")], [decision(), broken])
        assert store.request("lost") is None and len(all_rows(store)) == 1
        store.write([], [decision()])  # the store still works
        assert len(all_rows(store)) == 2

    def test_empty_write_and_close_twice(self, store: SqlStore) -> None:
        store.write([], [])
        assert store.last_decision_id() == 0
        store.close()
        store.close()

    # -- approvals ---------------------------------------------------------------------
    # Tool calls waiting for a person (extproc/approvals/, observe/store/approvals_sql.py):
    # every change of status is conditional on the row still being pending.

    def test_an_approval_round_trips(self, store: SqlStore) -> None:
        text = 'naïve 日本語 🙂 tab\tnew\nline "quote" \\back'
        added = approval(caller=None, arguments=f'{{"q": "{text}"}}', preceding_text=text)
        store.add_approval(added)
        assert store.approval(added.id) == {
            **added.to_dict(),
            "seen_at": added.created_at,
            "decided_by": None,
            "decided_at": None,
            "decision_reason": None,
        }
        assert store.approval("unknown") is None

    def test_pending_approvals_oldest_first_and_only_live_ones(self, store: SqlStore) -> None:
        now = T0 + 5
        for added in (
            approval("newer", created_at=T0 + 2),
            approval("oldest", created_at=T0),
            approval("middle", created_at=T0 + 1),
            # Its time ran out (expires_at <= now), even though its holder is alive.
            approval("expired", created_at=T0 + 0.5, timeout_s=4.5),
            # Its holder stopped refreshing it STALE_AFTER_S ago: the process is gone.
            approval("stale", created_at=now - STALE_AFTER_S, timeout_s=300.0),
            approval("answered", created_at=T0),
            approval("timed-out", created_at=T0),
            approval("cancelled", created_at=T0),
        ):
            store.add_approval(added)
        store.answer_approval("answered", Status.DENIED, "alice", None, now)
        assert store.end_approval("timed-out", Status.TIMED_OUT, now)
        assert store.end_approval("cancelled", Status.CANCELLED, now)
        rows = store.pending_approvals(now)
        assert [r["id"] for r in rows] == ["oldest", "middle", "newer"]
        assert all(r["status"] == Status.PENDING for r in rows)
        # A moment earlier, the stale row's holder was still alive and `expired` had
        # time left: the bounds are exact.
        earlier = [r["id"] for r in store.pending_approvals(now - 0.5)]
        assert earlier == ["stale", "oldest", "expired", "middle", "newer"]

    def test_an_answer_wins_once(self, store: SqlStore) -> None:
        store.add_approval(approval("a1"))
        row = store.answer_approval("a1", Status.APPROVED, "alice", "looks fine", T0 + 1)
        assert row is not None
        assert (row["status"], row["decided_by"], row["decided_at"], row["decision_reason"]) == (
            Status.APPROVED, "alice", T0 + 1, "looks fine",
        )  # fmt: skip
        # A second answer, and the holder's timeout after it, change nothing.
        assert store.answer_approval("a1", Status.DENIED, "bob", "no", T0 + 2) == row
        assert store.end_approval("a1", Status.TIMED_OUT, T0 + 3) is False
        assert store.approval("a1") == row
        assert store.answer_approval("unknown", Status.APPROVED, "alice", None, T0) is None

    def test_an_answer_after_the_end_changes_nothing(self, store: SqlStore) -> None:
        store.add_approval(approval("a1"))
        assert store.end_approval("a1", Status.CANCELLED, T0 + 1) is True
        ended = store.approval("a1")
        assert ended is not None and ended["status"] == Status.CANCELLED
        assert ended["decided_at"] == T0 + 1 and ended["decided_by"] is None
        assert store.answer_approval("a1", Status.APPROVED, "alice", "ok", T0 + 2) == ended
        assert store.end_approval("a1", Status.TIMED_OUT, T0 + 3) is False
        assert store.approval("a1") == ended
        assert store.end_approval("unknown", Status.TIMED_OUT, T0) is False

    def test_no_answer_once_expired_or_its_holder_is_gone(self, store: SqlStore) -> None:
        store.add_approval(approval("short", timeout_s=5.0))
        store.add_approval(approval("long", timeout_s=300.0))
        late = store.answer_approval("short", Status.APPROVED, "alice", None, T0 + 5)
        assert late is not None and late["status"] == Status.PENDING
        assert late["decided_by"] is None
        gone = store.answer_approval("long", Status.APPROVED, "alice", None, T0 + STALE_AFTER_S)
        assert gone is not None and gone["status"] == Status.PENDING
        # The holder itself may still end them.
        assert store.end_approval("short", Status.TIMED_OUT, T0 + 5)
        assert store.end_approval("long", Status.CANCELLED, T0 + 30)

    def test_approval_updates_is_the_holders_heartbeat(self, store: SqlStore) -> None:
        for added in (
            approval("mine-1", holder="h1"),
            approval("mine-2", holder="h1"),
            approval("mine-answered", holder="h1"),
            approval("mine-ended", holder="h1"),
            approval("theirs", holder="h2"),
        ):
            store.add_approval(added)
        store.answer_approval("mine-answered", Status.DENIED, "bob", "nope", T0 + 1)
        store.end_approval("mine-ended", Status.TIMED_OUT, T0 + 1)
        ended = store.approval_updates(
            "h1", ["mine-1", "mine-answered", "mine-ended", "theirs", "unknown"], T0 + 8
        )
        assert sorted(r["id"] for r in ended) == ["mine-answered", "mine-ended"]
        answered = next(r for r in ended if r["id"] == "mine-answered")
        assert (answered["status"], answered["decided_by"], answered["decision_reason"]) == (
            Status.DENIED, "bob", "nope",
        )  # fmt: skip
        seen = {i: (store.approval(i) or {})["seen_at"] for i in _APPROVAL_IDS}
        # Only the named rows the holder still waits on are refreshed: a row it no
        # longer waits on (its client went while it was written) ages out.
        assert seen == {
            "mine-1": T0 + 8,
            "mine-2": T0,
            "mine-answered": T0,
            "mine-ended": T0,
            "theirs": T0,
        }
        # Refreshed, the holder's rows outlive STALE_AFTER_S; the other holder's do not.
        live = [r["id"] for r in store.pending_approvals(T0 + STALE_AFTER_S + 1)]
        assert live == ["mine-1"]
        assert store.approval_updates("h1", [], T0 + 9) == []

    def test_purge_removes_old_approvals(self, store: SqlStore) -> None:
        for i in range(4):
            store.add_approval(approval(f"a{i}", created_at=T0 + i))
        store.end_approval("a0", Status.TIMED_OUT, T0 + 10)
        assert store.purge(T0 + 2) == 2
        assert store.approval("a0") is None and store.approval("a1") is None
        assert store.approval("a2") is not None and store.approval("a3") is not None
        assert [r["id"] for r in store.pending_approvals(T0 + 3)] == ["a2", "a3"]


_APPROVAL_IDS = ("mine-1", "mine-2", "mine-answered", "mine-ended", "theirs")


def approval(
    approval_id: str = "a1",
    *,
    holder: str = "host:1:abc",
    created_at: float = T0,
    timeout_s: float = 300.0,
    **fields: Any,
) -> PendingApproval:
    """A pending Bash call, written by `holder` at `created_at`."""
    values: dict[str, Any] = {
        "caller": "alice",
        "api": "anthropic",
        "model": "claude-sonnet-4-6",
        "request_id": "req-1",
        "policy": "approve-deploys",
        "tool": "Bash",
        "arguments": '{"command": "kubectl apply -f prod.yaml"}',
        "preceding_text": "I will deploy now.",
        "why": "rule: tools Bash",
        **fields,
    }
    return PendingApproval(
        id=approval_id, holder=holder, timeout_s=timeout_s, created_at=created_at, **values
    )
