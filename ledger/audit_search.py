"""Reading the audit log as people look for things in it: a search (by action prefix, subject,
actor, any text, time and seq ranges), newest first and a page at a time, its export, and the
last recorded verification of the log (``audit.verified``).

Read only, but for :func:`record_verification`, which appends one event like any other: the
record of a verification is itself in the keyed, anchored log, so it cannot be edited quietly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, func, or_, select

from domain.records import AuditEvent, AuditRecord
from ledger.audit import AuditRow, Verification, append, authentic, format_records
from ledger.db import LedgerDB

VERIFIED = "audit.verified"


@dataclass(frozen=True)
class AuditQuery:
    """What to look for; an empty field matches everything. ``since``/``until``: times (until
    excluded); ``seq_from``/``seq_to``: both included."""

    action: str = ""  # a prefix: "approval." or "offboard.remove_member"
    subject: str = ""  # part of the subject's address
    actor: str = ""  # part of the actor's or the on-behalf-of person's address
    text: str = ""  # part of any field, before/after included
    since: datetime | None = None
    until: datetime | None = None
    seq_from: int | None = None
    seq_to: int | None = None


def _at(when: datetime) -> str:
    """A time as the log stores it (the text that was hashed, which sorts as time)."""
    return (
        (when if when.tzinfo else when.replace(tzinfo=UTC))
        .astimezone(UTC)
        .isoformat(timespec="microseconds")
    )


def _where(q: AuditQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if q.action:
        conds.append(AuditRow.action.startswith(q.action, autoescape=True))
    if q.subject:
        conds.append(AuditRow.subject.icontains(q.subject, autoescape=True))
    if q.actor:
        conds.append(
            or_(
                AuditRow.actor.icontains(q.actor, autoescape=True),
                AuditRow.on_behalf_of.icontains(q.actor, autoescape=True),
            )
        )
    if q.text:
        cols = [
            AuditRow.action,
            AuditRow.subject,
            AuditRow.target,
            AuditRow.actor,
            AuditRow.on_behalf_of,
            AuditRow.effect,
            AuditRow.flow_run_id,
            AuditRow.ticket,
            AuditRow.plan_hash,
            cast(AuditRow.before, String),
            cast(AuditRow.after, String),
        ]
        conds.append(or_(*(c.icontains(q.text, autoescape=True) for c in cols)))
    if q.since is not None:
        conds.append(AuditRow.at >= _at(q.since))
    if q.until is not None:
        conds.append(AuditRow.at < _at(q.until))
    if q.seq_from is not None:
        conds.append(AuditRow.seq >= q.seq_from)
    if q.seq_to is not None:
        conds.append(AuditRow.seq <= q.seq_to)
    return conds


def _record(row: AuditRow) -> AuditRecord:
    f: dict[str, Any] = {c: getattr(row, c) for c in AuditRecord.model_fields if c != "at"}
    return AuditRecord(**f, at=datetime.fromisoformat(row.at))


def search(
    db: LedgerDB, q: AuditQuery, *, offset: int = 0, limit: int = 50
) -> tuple[list[AuditRecord], int]:
    """One page of the events matching ``q``, newest first, and how many match in all."""
    conds = _where(q)
    with db.sessions() as s:
        total = s.scalar(select(func.count()).select_from(AuditRow).where(*conds)) or 0
        rows = s.scalars(
            select(AuditRow).where(*conds).order_by(AuditRow.seq.desc()).offset(offset).limit(limit)
        )
        return [_record(r) for r in rows], total


def matching(db: LedgerDB, q: AuditQuery) -> Iterator[AuditRecord]:
    """Every event matching ``q``, oldest first (as an export lists them)."""
    stmt: Select[tuple[AuditRow]] = select(AuditRow).where(*_where(q)).order_by(AuditRow.seq)
    with db.sessions() as s:
        for row in s.scalars(stmt).yield_per(1000):
            yield _record(row)


def export_search(db: LedgerDB, q: AuditQuery, fmt: str) -> Iterator[str]:
    """The events matching ``q`` as ``handover audit export`` writes the whole log (JSON lines,
    or CSV with every cell a spreadsheet would run as a formula written as text)."""
    return format_records(matching(db, q), fmt)


def events_where(db: LedgerDB, *conds: ColumnElement[bool]) -> list[AuditRecord]:
    """The events meeting every one of ``conds``, oldest first (for readers in the ledger)."""
    with db.sessions() as s:
        return [
            _record(r) for r in s.scalars(select(AuditRow).where(*conds).order_by(AuditRow.seq))
        ]


def record_verification(
    db: LedgerDB, v: Verification, *, by: str, details: dict[str, str], now: datetime
) -> AuditRecord:
    """Append what a verification found, by whom (``details``: how they were authenticated and
    on which channel), as an ``audit.verified`` event."""
    cp = v.checkpoint
    effect = "ok" if v.ok else f"failed({v.reason})"
    return append(
        db,
        AuditEvent(
            action=VERIFIED,
            target="audit log",
            on_behalf_of=by,
            effect=effect[:300],
            after={
                "ok": v.ok,
                "events": v.events,
                "first_bad_seq": v.first_bad_seq,
                "reason": v.reason,
                "unkeyed": v.unkeyed,
                "unanchored": v.unanchored,
                "notes": v.notes,
                "head_seq": v.head_seq,
                "head_hash": v.head_hash,
                "checkpoint": (
                    {"seq": cp.seq, "hash": cp.hash, "at": cp.at} if cp is not None else None
                ),
                **details,
            },
        ),
        now=now,
    )


@dataclass(frozen=True)
class LastVerification:
    """The newest ``audit.verified`` event, and whether it is one the key holder wrote."""

    event: AuditRecord
    authentic: bool


def last_verification(db: LedgerDB) -> LastVerification | None:
    """The newest recorded verification (None: the log was never verified from the console)."""
    with db.sessions() as s:
        row = s.scalars(
            select(AuditRow).where(AuditRow.action == VERIFIED).order_by(AuditRow.seq.desc())
        ).first()
        if row is None:
            return None
        ok = db.anchor is not None and authentic(db.anchor, row)
        return LastVerification(_record(row), ok)
