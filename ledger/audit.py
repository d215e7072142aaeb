"""The audit log: append-only and hash-chained.

Each event's ``hash`` is SHA-256 over the canonical JSON of all its fields, ``prev_hash``
included, so changing any byte of any stored event — or removing, inserting or reordering
one — breaks the chain from there on; :func:`verify` names the first bad ``seq``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from domain.escaping import csv_row
from domain.records import AuditEvent, AuditRecord
from ledger.db import LedgerBase, LedgerDB

GENESIS = "0" * 64
FIELDS = (
    "seq",
    "at",
    "actor",
    "on_behalf_of",
    "action",
    "subject",
    "target",
    "before",
    "after",
    "effect",
    "flow_run_id",
    "ticket",
    "plan_hash",
    "prev_hash",
)


class AuditRow(LedgerBase):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    # The time is stored as the exact text that was hashed, so no database can alter it.
    at: Mapped[str] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    on_behalf_of: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(100), index=True)
    subject: Mapped[str] = mapped_column(String(320), index=True)
    target: Mapped[str] = mapped_column(String(500))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    effect: Mapped[str] = mapped_column(String(300))
    flow_run_id: Mapped[str] = mapped_column(String(64), index=True)
    ticket: Mapped[str] = mapped_column(String(64))
    plan_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ChainHead(LedgerBase):
    """One row: the last seq and hash. Locked by every append (PostgreSQL: FOR UPDATE)."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(Text)


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def event_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: fields[k] for k in FIELDS})).hexdigest()


def _fields(row: AuditRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in FIELDS}


def _now_text(now: datetime | None) -> str:
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return when.isoformat(timespec="microseconds")


def append(db: LedgerDB, event: AuditEvent, *, now: datetime | None = None) -> AuditRecord:
    """Chain one event onto the log (safe with concurrent writers in other processes)."""
    with db.session() as s:
        return append_in(s, event, now=now, postgres=db.is_postgres)


def append_in(
    s: Session, event: AuditEvent, *, now: datetime | None = None, postgres: bool = False
) -> AuditRecord:
    """Append within an open transaction (so a record and its audit event commit together)."""
    q = select(ChainHead).where(ChainHead.id == 1)
    head = s.scalar(q.with_for_update() if postgres else q)
    if head is None:
        head = ChainHead(id=1, seq=0, hash=GENESIS)
        s.add(head)
        s.flush()
    fields = {
        **event.model_dump(mode="json"),
        "seq": head.seq + 1,
        "at": _now_text(now),
        "prev_hash": head.hash,
    }
    digest = event_hash(fields)
    s.add(AuditRow(**{k: fields[k] for k in FIELDS}, hash=digest))
    head.seq, head.hash = fields["seq"], digest
    s.flush()
    return AuditRecord(**{**fields, "at": datetime.fromisoformat(fields["at"])}, hash=digest)


@dataclass
class Verification:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify(db: LedgerDB) -> Verification:
    """Recompute the chain; name the first event whose content, hash or link is wrong."""
    prev, expected_seq, n = GENESIS, 1, 0
    with db.sessions() as s:
        for row in s.scalars(select(AuditRow).order_by(AuditRow.seq)).yield_per(1000):
            n += 1
            if row.seq != expected_seq:
                return Verification(
                    False, n, expected_seq, f"seq {expected_seq} is missing (found {row.seq} next)"
                )
            if row.prev_hash != prev:
                return Verification(
                    False,
                    n,
                    row.seq,
                    "prev_hash does not match the event "
                    "before it (an event was removed, inserted or altered)",
                )
            if event_hash(_fields(row)) != row.hash:
                return Verification(
                    False,
                    n,
                    row.seq,
                    "content does not match its hash (the stored event was changed)",
                )
            prev, expected_seq = row.hash, expected_seq + 1
        head = s.get(ChainHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
        return Verification(
            False,
            n,
            expected_seq,
            "the log ends before the chain head "
            f"(head seq {head.seq}): events were removed from the end",
        )
    return Verification(True, n)


def records(
    db: LedgerDB,
    *,
    since: datetime | None = None,
    subject: str | None = None,
    flow_run_id: str | None = None,
) -> Iterator[AuditRecord]:
    with db.sessions() as s:
        q = select(AuditRow).order_by(AuditRow.seq)
        if since is not None:
            q = q.where(AuditRow.at >= _now_text(since))
        if subject is not None:
            q = q.where(AuditRow.subject == subject)
        if flow_run_id is not None:
            q = q.where(AuditRow.flow_run_id == flow_run_id)
        for row in s.scalars(q).yield_per(1000):
            f = _fields(row)
            yield AuditRecord(**{**f, "at": datetime.fromisoformat(f["at"])}, hash=row.hash)


def last_seq(db: LedgerDB) -> int:
    with db.sessions() as s:
        head = s.get(ChainHead, 1)
        return head.seq if head else 0


def export(db: LedgerDB, fmt: str = "jsonl", *, since: datetime | None = None) -> Iterator[str]:
    """The log as JSON lines or CSV (header first), oldest first; a CSV cell that a
    spreadsheet would run as a formula is written as text (``domain.escaping.csv_cell``)."""
    cols = [*FIELDS, "hash"]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        yield buf.getvalue()
    for r in records(db, since=since):
        d = r.model_dump(mode="json")
        if fmt == "jsonl":
            yield json.dumps({c: d[c] for c in cols}, ensure_ascii=False) + "\n"
        else:
            buf = io.StringIO()
            csv.writer(buf).writerow(
                csv_row(json.dumps(d[c]) if isinstance(d[c], (dict, list)) else d[c] for c in cols)
            )
            yield buf.getvalue()
