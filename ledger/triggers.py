"""Emergency declarations: a signed-in person's "lock this person out now", recorded before the run.

An emergency offboarding skips the pre-approval, so the flow does not take ``emergency=true``
from its parameters on trust (anyone who reaches the Prefect API can set them): it needs a
trigger recorded here, in the ledger. HR's trigger is its signed event (``ledger.events``); a
person's is a declaration, written by ``handover offboard --emergency`` once it has established
who is at the terminal (``cli.identity``: the signed-in person, ``--as``/``--requester`` in
sandbox mode only). The flow then checks the declaration names this subject and this requester,
that the policy lets that person declare one, and that it is recent (``tasks.triggers``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB


class DeclarationRow(LedgerBase):
    __tablename__ = "emergency_declarations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(320), index=True)
    declared_by: Mapped[str] = mapped_column(String(320))
    verified: Mapped[str] = mapped_column(String(64), default="")  # how: oidc-device, …
    declared_at: Mapped[datetime]


@dataclass(frozen=True)
class Declaration:
    """One recorded emergency declaration."""

    id: str
    subject: str
    declared_by: str
    verified: str
    declared_at: datetime


def declare_emergency(
    db: LedgerDB, *, subject: str, declared_by: str, verified: str, now: datetime
) -> Declaration:
    """Record that ``declared_by`` (established ``verified``-ly) declares ``subject``'s
    emergency offboarding now; the declaration (its id is the flow's ``declaration``)."""
    row = DeclarationRow(
        id=f"emg-{uuid.uuid4().hex[:16]}",
        subject=subject.lower(),
        declared_by=declared_by.lower(),
        verified=verified[:64],
        declared_at=now,
    )
    with db.session() as s:
        s.add(row)
        s.flush()
        return _declaration(row)


def get_declaration(db: LedgerDB, declaration_id: str) -> Declaration | None:
    """The declaration, or None."""
    with db.sessions() as s:
        row = s.get(DeclarationRow, declaration_id)
        return _declaration(row) if row is not None else None


def _declaration(row: DeclarationRow) -> Declaration:
    return Declaration(
        id=row.id,
        subject=row.subject,
        declared_by=row.declared_by,
        verified=row.verified,
        declared_at=row.declared_at,
    )
