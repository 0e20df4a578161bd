"""Fixtures every unit test may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.observe.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A migrated SQLite audit store of the test's own (records and approvals)."""
    s = SqliteStore(tmp_path / "audit.db")
    s.migrate()
    yield s
    s.close()
