"""Holds on new runs: a system whose credentials were rejected (the org's SCIM key regenerated in
its console, seed 002) holds every new run until a person has replaced the key and resumed.

One row per system (``org``): ``since`` and ``reason`` while held, ``cleared_at`` and
``cleared_by`` once resumed. A hold is set once: a second rejection while held changes nothing
(one alert, not one per run).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB


class HoldRow(LedgerBase):
    __tablename__ = "run_holds"

    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
    since: Mapped[datetime]
    cleared_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cleared_by: Mapped[str] = mapped_column(String(320), default="")


class Hold(BaseModel):
    system: str
    reason: str
    since: datetime
    cleared_at: datetime | None = None
    cleared_by: str = ""

    @property
    def active(self) -> bool:
        return self.cleared_at is None


def _model(r: HoldRow) -> Hold:
    return Hold.model_validate(r, from_attributes=True)


def set_hold(db: LedgerDB, system: str, reason: str, *, now: datetime) -> bool:
    """Hold new runs on ``system``; False when it already was held (nothing changes)."""
    try:
        with db.session() as s:
            row = s.get(HoldRow, system, with_for_update=True)
            if row is None:
                s.add(HoldRow(system=system, reason=reason[:500], since=now))
                return True
            if row.cleared_at is None:
                return False
            row.reason, row.since, row.cleared_at, row.cleared_by = reason[:500], now, None, ""
            return True
    except IntegrityError:  # another process set it at the same moment
        return False


def active_hold(db: LedgerDB, system: str) -> Hold | None:
    """The hold on ``system``, while it holds."""
    with db.sessions() as s:
        row = s.get(HoldRow, system)
        return _model(row) if row is not None and row.cleared_at is None else None


def clear_hold(db: LedgerDB, system: str, *, by: str, now: datetime) -> Hold | None:
    """Lift the hold on ``system`` (``by``: who resumed); the hold lifted, None when there was
    none."""
    with db.session() as s:
        row = s.get(HoldRow, system, with_for_update=True)
        if row is None or row.cleared_at is not None:
            return None
        row.cleared_at, row.cleared_by = now, by
        s.flush()
        return _model(row)
