"""The audit tables: their migrations, and how a record becomes a row and a row a dict.

Shared by the SQLite and PostgreSQL stores; the few column types they spell
differently are the `Dialect`'s. The queries over these tables are in `sql.py`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from extproc.observe.records import SCHEMA_VERSION, DecisionRecord, RequestRecord

# One list entry per schema version, applied in order and never edited once released:
# version N+1 is appended as a new entry. `{id}`, `{real}`... are the column types of
# the dialect (`Dialect.types`).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE requests (
            id {id},
            time {real} NOT NULL,
            request_id TEXT NOT NULL,
            caller TEXT,
            api TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            status INTEGER NOT NULL,
            stream {bool},
            outcome TEXT NOT NULL,
            input_tokens {int},
            output_tokens {int},
            cache_read_tokens {int},
            cache_write_tokens {int},
            ttfb_ms {real},
            duration_ms {real} NOT NULL,
            events INTEGER NOT NULL,
            policies_acted {json} NOT NULL,
            trace_id TEXT
        )""",
        "CREATE INDEX requests_time ON requests (time)",
        "CREATE INDEX requests_request_id ON requests (request_id)",
        """CREATE TABLE decisions (
            id {id},
            time {real} NOT NULL,
            request_id TEXT NOT NULL,
            caller TEXT,
            api TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            policy TEXT NOT NULL,
            policy_type TEXT NOT NULL,
            action TEXT NOT NULL,
            mode TEXT NOT NULL,
            target {json} NOT NULL,
            message TEXT,
            probability {real},
            explanation TEXT,
            judge_ms {real}
        )""",
        "CREATE INDEX decisions_time ON decisions (time)",
        "CREATE INDEX decisions_request_id ON decisions (request_id)",
        # With the id so a filtered page, newest first, is read straight off the index.
        "CREATE INDEX decisions_policy ON decisions (policy, id)",
        "CREATE INDEX decisions_caller ON decisions (caller, id)",
        "CREATE INDEX decisions_action ON decisions (action, id)",
    ),
    (
        # Tool calls waiting for a person (extproc/approvals/): the process holding the
        # stream writes and refreshes its rows; the admin API answers them.
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            created_at {real} NOT NULL,
            expires_at {real} NOT NULL,
            seen_at {real} NOT NULL,
            holder TEXT NOT NULL,
            status TEXT NOT NULL,
            caller TEXT,
            api TEXT NOT NULL,
            model TEXT,
            request_id TEXT NOT NULL,
            policy TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            preceding_text TEXT NOT NULL,
            why TEXT NOT NULL,
            decided_by TEXT,
            decided_at {real},
            decision_reason TEXT
        )""",
        "CREATE INDEX approvals_status ON approvals (status, created_at)",
    ),
]
assert len(MIGRATIONS) == SCHEMA_VERSION, "one migration per schema version"

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)"
)

DECISION_FIELDS = tuple(f.name for f in fields(DecisionRecord))
REQUEST_FIELDS = tuple(f.name for f in fields(RequestRecord))
_JSON_FIELDS = frozenset({"target", "policies_acted"})
DECISION_COLUMNS = ", ".join(DECISION_FIELDS)
REQUEST_COLUMNS = ", ".join(REQUEST_FIELDS)


@dataclass(frozen=True, slots=True)
class Dialect:
    types: dict[str, str]  # the column types the migrations name
    # The index of the `bucket_s`-wide bucket a row's time falls in, one `?` for
    # bucket_s: the two databases round floats to integers differently.
    bucket: str


def _clean(value: Any) -> Any:
    """What both databases store the same way: PostgreSQL refuses NUL in text and JSON
    and NaN in JSON, and SQLite turns a NaN into NULL, so neither gets to see them;
    values JSON cannot hold become their text."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(_clean(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return _clean(str(value))


def _cell(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(_clean(value), ensure_ascii=False, separators=(",", ":"))
    return _clean(value)


def _uncell(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        # PostgreSQL's driver decodes JSONB itself; SQLite hands back the text.
        return json.loads(value) if isinstance(value, str | bytes) else value
    if name == "stream":
        return None if value is None else bool(value)
    return value


def decision_row(record: DecisionRecord) -> tuple[Any, ...]:
    return tuple(_cell(name, getattr(record, name)) for name in DECISION_FIELDS)


def request_row(record: RequestRecord) -> tuple[Any, ...]:
    return tuple(_cell(name, getattr(record, name)) for name in REQUEST_FIELDS)


def decision_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A row of `SELECT id, <DECISION_FIELDS>`."""
    out: dict[str, Any] = {"id": int(row[0])}
    for name, value in zip(DECISION_FIELDS, row[1:], strict=True):
        out[name] = _uncell(name, value)
    return out


def request_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A row of `SELECT <REQUEST_FIELDS>`."""
    return {name: _uncell(name, v) for name, v in zip(REQUEST_FIELDS, row, strict=True)}
