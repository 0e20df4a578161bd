"""The one error every store of the gateway raises (audit records, pending approvals)."""

from __future__ import annotations


class StoreError(Exception):
    """The database failed (unreachable, locked, full); the message has no secrets."""
