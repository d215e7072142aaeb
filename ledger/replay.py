"""Replay protection for signed inbound requests: a signature is accepted once.

Signatures are valid for five minutes (Slack's window, and ours for HR webhooks), so a row
older than ten minutes can never match again and is purged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB


class SeenRequest(LedgerBase):
    __tablename__ = "seen_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)


def first_time(db: LedgerDB, *parts: str, now: datetime) -> bool:
    """True the first time these parts (e.g. timestamp and signature) are seen; else False."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    try:
        with db.session() as s:
            s.execute(delete(SeenRequest).where(SeenRequest.seen_at < now - timedelta(minutes=10)))
            s.add(SeenRequest(digest=digest, seen_at=now))
        return True
    except IntegrityError:
        return False
