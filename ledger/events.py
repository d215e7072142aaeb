"""Inbound events (HR and Jira webhooks, Extend clicks): each acted on once, by (source, id).

Senders retry: the HR system re-delivers an event when our answer is slow or lost. The first
delivery *claims* the id (a unique row); every later one finds the row and is answered with the
run the first one started. A row remembers a digest of what the event said, so the same id
with a different content is told apart from a retry.

Life of a row::

    claim (effective now)    → started (run_ref "" until the launcher answers, then set)
    claim (effective later)  → scheduled → started (by the sweep, once) | cancelled

A delivery that starts nothing (a Jira update of a ticket whose run is still going) is kept
``noted``: recorded, answered with the run that handles it, never started by the sweep.

Runs keyed by what they are about (one run at a time per Jira ticket or per grant:
intake/keyed.py) are rows named ``<key>#<n>``; ``latest_keyed`` finds a key's newest one.

Starting is a compare-and-set (``mark_started``), so two sweeps (two intake processes, or the
watchdog and a manual sweep) never start the same event twice. A claim whose launch never
reported a run (the process died in between) is picked up again by the sweep after
``STRANDED_AFTER``: a termination must not be lost because of a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB

SCHEDULED = "scheduled"
STARTED = "started"
CANCELLED = "cancelled"
NOTED = "noted"  # recorded and answered; nothing of its own to start

# Longer than any launcher takes to answer (a thread start, or a run_deployment call), so a
# claim still being launched is never mistaken for a stranded one.
STRANDED_AFTER = timedelta(minutes=5)


class InboundEvent(LedgerBase):
    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_inbound_source_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64), default="")
    payload_digest: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    received_at: Mapped[datetime]
    scheduled_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    run_ref: Mapped[str] = mapped_column(String(200), default="")


@dataclass(frozen=True)
class EventRecord:
    """One inbound event as stored."""

    source: str
    event_id: str
    kind: str
    payload_digest: str
    params: dict[str, Any]
    status: str
    received_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    run_ref: str
    seq: int = 0  # the row: the order in which the ledger received the events


def _record(row: InboundEvent) -> EventRecord:
    return EventRecord(
        source=row.source,
        event_id=row.event_id,
        kind=row.kind,
        payload_digest=row.payload_digest,
        params=dict(row.params or {}),
        status=row.status,
        received_at=row.received_at,
        scheduled_at=row.scheduled_at,
        started_at=row.started_at,
        run_ref=row.run_ref,
        seq=row.id,
    )


def _where(source: str, event_id: str) -> Any:
    return and_(InboundEvent.source == source, InboundEvent.event_id == event_id)


def claim_event(
    db: LedgerDB,
    source: str,
    event_id: str,
    *,
    payload_digest: str,
    now: datetime,
    kind: str = "",
    params: dict[str, Any] | None = None,
    scheduled_at: datetime | None = None,
    noted: bool = False,
) -> tuple[EventRecord, bool]:
    """Claim ``(source, event_id)``; (the stored event, True if this call created it).

    Args:
        db: the ledger.
        source: who sends the event (``"hr"``).
        event_id: the sender's id of the event.
        payload_digest: a digest of what the event says, to tell a retry (same digest) from a
            conflicting re-use of the id (another digest); compared by the caller.
        now: the time of receipt.
        kind: the event's type, for the record.
        params: what starting its run takes (kept for a scheduled start).
        scheduled_at: when to start it; None: now (the row is ``started`` at once, its run
            reference set by ``set_event_run`` when the launcher answers).
        noted: only record it (``noted``): it starts nothing, and no sweep ever starts it.

    Returns:
        The stored event and whether it is new. When it is not, nothing was changed.
    """
    row = InboundEvent(
        source=source,
        event_id=event_id,
        kind=kind,
        payload_digest=payload_digest,
        params=params or {},
        status=NOTED if noted else SCHEDULED if scheduled_at is not None else STARTED,
        received_at=now,
        scheduled_at=scheduled_at,
        started_at=None if scheduled_at is not None or noted else now,
        run_ref="",
    )
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            return _record(row), True
    except IntegrityError:
        # The unique (source, event_id) is the arbiter: two concurrent deliveries of the
        # same event cannot both get here with True.
        found = get_event(db, source, event_id)
        if found is None:  # released between our insert and this read; the sender retries
            raise
        return found, False


def get_event(db: LedgerDB, source: str, event_id: str) -> EventRecord | None:
    """The stored event, or None."""
    with db.sessions() as s:
        row = s.scalar(select(InboundEvent).where(_where(source, event_id)))
        return _record(row) if row is not None else None


def list_events(db: LedgerDB, source: str | None = None) -> list[EventRecord]:
    """Every stored event (of ``source``), oldest first."""
    with db.sessions() as s:
        q = select(InboundEvent).order_by(InboundEvent.id)
        if source is not None:
            q = q.where(InboundEvent.source == source)
        return [_record(r) for r in s.scalars(q)]


def started_between(
    db: LedgerDB, source: str, since: datetime, until: datetime
) -> list[EventRecord]:
    """The events of ``source`` started in ``[since, until]`` (the safety valves count them:
    ``domain.valves``), in the order they were started."""
    with db.sessions() as s:
        q = (
            select(InboundEvent)
            .where(
                InboundEvent.source == source,
                InboundEvent.status == STARTED,
                InboundEvent.started_at >= since,
                InboundEvent.started_at <= until,
            )
            .order_by(InboundEvent.started_at, InboundEvent.id)
        )
        return [_record(r) for r in s.scalars(q)]


def set_event_run(db: LedgerDB, source: str, event_id: str, run_ref: str) -> None:
    """Remember the run this event started (what a retried delivery is answered with)."""
    with db.session() as s:
        s.execute(
            update(InboundEvent)
            .where(_where(source, event_id))
            .values(run_ref=run_ref, status=STARTED)
            .execution_options(synchronize_session=False)
        )


def note_event_run(db: LedgerDB, source: str, event_id: str, run_ref: str) -> None:
    """Remember which run answered a noted event (its status stays ``noted``)."""
    with db.session() as s:
        s.execute(
            update(InboundEvent)
            .where(_where(source, event_id))
            .values(run_ref=run_ref)
            .execution_options(synchronize_session=False)
        )


def latest_keyed(db: LedgerDB, source: str, key: str) -> EventRecord | None:
    """The newest run of ``key`` (the row named ``<key>#<n>`` with the highest ``n``), or None."""
    prefix = f"{key}#"
    with db.sessions() as s:
        rows = s.scalars(
            select(InboundEvent).where(
                InboundEvent.source == source,
                # autoescape: a Jira key may hold "_", a LIKE wildcard.
                InboundEvent.event_id.startswith(prefix, autoescape=True),
            )
        )
        numbered = [
            (int(tail), r)
            for r in rows
            if (tail := r.event_id[len(prefix) :]).isdigit() and not tail.startswith("0")
        ]
        return _record(max(numbered, key=lambda t: t[0])[1]) if numbered else None


def due_events(db: LedgerDB, now: datetime) -> list[EventRecord]:
    """Events to start now: scheduled ones whose time has come, and stranded claims.

    A stranded claim is ``started`` without a run reference for longer than
    ``STRANDED_AFTER``: its launch died with its process.
    """
    with db.sessions() as s:
        q = (
            select(InboundEvent)
            .where(_due(now))
            .order_by(InboundEvent.scheduled_at, InboundEvent.id)
        )
        return [_record(r) for r in s.scalars(q)]


def _due(now: datetime) -> Any:
    return or_(
        and_(InboundEvent.status == SCHEDULED, InboundEvent.scheduled_at <= now),
        and_(
            InboundEvent.status == STARTED,
            InboundEvent.run_ref == "",
            InboundEvent.started_at <= now - STRANDED_AFTER,
        ),
    )


def mark_started(db: LedgerDB, source: str, event_id: str, *, now: datetime) -> bool:
    """Take a due event for starting; True for exactly one caller, False for the others.

    A compare-and-set on the row: only a still-due event moves to ``started`` (run reference
    empty until ``set_event_run``), so concurrent sweeps start each event once.
    """
    with db.session() as s:
        result = s.execute(
            update(InboundEvent)
            .where(_where(source, event_id), _due(now))
            .values(status=STARTED, started_at=now, run_ref="")
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def release_event(db: LedgerDB, source: str, event_id: str, *, forget: bool = False) -> None:
    """Undo the start of an event whose launch failed, so that it can be started again.

    A scheduled event goes back to ``scheduled`` (the next sweep retries). An immediate one is
    deleted with ``forget`` (the intake answered the sender with an error: its retry claims
    the event afresh); otherwise it stays a claim without a run, which the sweep takes again
    after ``STRANDED_AFTER``.
    """
    with db.session() as s:
        row = s.scalar(select(InboundEvent).where(_where(source, event_id)))
        if row is None or row.run_ref:
            return  # gone, or it did start after all: keep what happened
        if row.scheduled_at is not None:
            row.status = SCHEDULED
            row.started_at = None
        elif forget:
            s.execute(delete(InboundEvent).where(InboundEvent.id == row.id))


def cancel_event(db: LedgerDB, source: str, event_id: str) -> bool:
    """Cancel a scheduled event before it starts; False when it is not (or no longer) scheduled."""
    with db.session() as s:
        result = s.execute(
            update(InboundEvent)
            .where(_where(source, event_id), InboundEvent.status == SCHEDULED)
            .values(status=CANCELLED)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)
