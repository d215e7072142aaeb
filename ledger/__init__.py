"""The orchestrator's own durable state: the hash-chained audit log, temporary grants and
approval records (SQLAlchemy; SQLite by default, PostgreSQL through HANDOVER_LEDGER_URL)."""

from ledger.db import LedgerDB


def open_ledger(url: str) -> LedgerDB:
    """Open (and create the tables of) a ledger."""
    db = LedgerDB(url)
    db.create_all()
    return db


__all__ = ["LedgerDB", "open_ledger"]
