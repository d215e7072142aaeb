"""The orchestrator's own durable state: the hash-chained audit log, temporary grants and
approval records (SQLAlchemy; SQLite by default, PostgreSQL through HANDOVER_LEDGER_URL)."""

from ledger.anchor import Anchor, FileCheckpoints
from ledger.db import LedgerDB


def open_ledger(url: str, *, anchor: Anchor | None = None) -> LedgerDB:
    """Open (and create the tables of) a ledger; ``anchor``: the audit key and checkpoint sink,
    without which it can be read but not appended to (ledger/anchor.py)."""
    db = LedgerDB(url, anchor=anchor)
    db.create_all()
    return db


__all__ = ["Anchor", "FileCheckpoints", "LedgerDB", "open_ledger"]
