"""The audit log: append-only, hash-chained, keyed, and anchored outside its database.

Each event's ``hash`` is SHA-256 over the canonical JSON of all its fields, ``prev_hash``
included, so changing any byte of any stored event — or removing, inserting or reordering
one — breaks the chain from there on; :func:`verify` names the first bad ``seq``. That alone
proves only that the log agrees with itself (anyone can recompute a SHA-256), so each event
also carries ``mac``, an HMAC of its hash under the audit key, which the database does not
hold, and every appending transaction checkpoints the new head outside the database
(ledger/anchor.py): :func:`verify` checks the MACs and that the log reaches the latest
checkpoint.

Events written by an older Handover have no MAC (``mac`` is empty): they come first, are
counted as *unkeyed* by :func:`verify`, and are vouched for only by the first keyed event
(whose MAC covers its link to them). An unkeyed event after a keyed one fails.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from domain.escaping import csv_row
from domain.records import AuditEvent, AuditRecord
from ledger.anchor import Anchor, ChainCheckpoints, Checkpoint
from ledger.db import PENDING_CHECKPOINT, LedgerBase, LedgerDB

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
    # HMAC-SHA256 of ``hash`` under the audit key; "" on an older Handover's events.
    mac: Mapped[str] = mapped_column(String(64), default="", server_default=text("''"))


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


class AuditKeyMissing(RuntimeError):
    """The ledger was opened without its audit key: it can be read, not appended to."""


def append(db: LedgerDB, event: AuditEvent, *, now: datetime | None = None) -> AuditRecord:
    """Chain one event onto the log (safe with concurrent writers in other processes)."""
    with db.session() as s:
        return append_in(db, s, event, now=now)


def append_in(
    db: LedgerDB, s: Session, event: AuditEvent, *, now: datetime | None = None
) -> AuditRecord:
    """Append within an open transaction of ``db`` (so a record and its audit event commit
    together); the new head is checkpointed once the transaction commits.

    Raises:
        AuditKeyMissing: ``db`` was opened without its audit key.
    """
    if db.anchor is None:
        raise AuditKeyMissing(
            "audit: the ledger was opened without its audit key (HANDOVER_AUDIT_KEY)"
        )
    q = select(ChainHead).where(ChainHead.id == 1)
    head = s.scalar(q.with_for_update() if db.is_postgres else q)
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
    mac = db.anchor.event_mac(digest)
    s.add(AuditRow(**{k: fields[k] for k in FIELDS}, hash=digest, mac=mac))
    head.seq, head.hash = fields["seq"], digest
    s.flush()
    chain = digest if head.seq == 1 else _chain_id(db, s)
    s.info[PENDING_CHECKPOINT] = Checkpoint(chain, head.seq, digest, mac, fields["at"])
    return AuditRecord(
        **{**fields, "at": datetime.fromisoformat(fields["at"])}, hash=digest, mac=mac
    )


def _chain_id(db: LedgerDB, s: Session) -> str:
    """The hash of the log's first event: what names this log in the checkpoints."""
    if db.chain_id is None:
        db.chain_id = s.scalar(select(AuditRow.hash).where(AuditRow.seq == 1)) or GENESIS
    return db.chain_id


def authentic(anchor: Anchor, row: AuditRow) -> bool:
    """The stored event is one the key holder wrote: its content matches its hash, and its
    MAC that hash."""
    return event_hash(_fields(row)) == row.hash and anchor.authentic(row.hash, row.mac)


@dataclass
class Verification:
    """What :func:`verify` found. ``unkeyed``: events of an older Handover (no MAC);
    ``checkpoint_seq``: the latest checkpoint of this log; ``unanchored``: events after it."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str = ""
    unkeyed: int = 0
    checkpoint_seq: int | None = None
    unanchored: int = 0
    notes: list[str] = field(default_factory=list)
    # The end of the log as walked (up to the first fault) and the checkpoint compared with:
    # what a record of this verification names (the console's "Verify now").
    head_seq: int = 0
    head_hash: str = ""
    checkpoint: Checkpoint | None = None


@dataclass
class _Walk:
    """The chain as read: its id, its end, and the MAC of the event a checkpoint names."""

    n: int = 0
    chain: str = ""
    last_seq: int = 0
    last_hash: str = ""
    unkeyed: int = 0
    keyed: bool = False
    mac_at_checkpoint: str | None = None


def verify(db: LedgerDB) -> Verification:
    """Check the chain (links, hashes, MACs) and its end against the latest checkpoint; name
    the first bad ``seq`` and why."""
    if db.anchor is None:
        return Verification(False, 0, None, "no audit key: set HANDOVER_AUDIT_KEY")
    # The checkpoints first, the log second: a checkpoint is written after its commit, so
    # every one read now names an event the walk will see, even with appends going on.
    try:
        cps = db.anchor.read()
    except OSError as exc:
        where = db.anchor.sink.where
        return Verification(False, 0, None, f"the checkpoints in {where} cannot be read: {exc}")
    walk = _Walk()
    v = _walk(db, db.anchor, walk, cps.chains)
    if v is None:
        notes = (
            [f"{cps.unreadable} unreadable checkpoint line(s) ignored"] if cps.unreadable else []
        )
        if walk.n == 0:
            return _empty(db.anchor, cps.authenticated(), notes)
        v = _against(db.anchor, walk, cps.chains.get(walk.chain, ChainCheckpoints()))
        v.notes = notes + v.notes
    v.head_seq, v.head_hash = walk.last_seq, walk.last_hash
    v.checkpoint = cps.chains.get(walk.chain, ChainCheckpoints()).latest if walk.chain else None
    return v


def _walk(
    db: LedgerDB, anchor: Anchor, w: _Walk, chains: dict[str, ChainCheckpoints]
) -> Verification | None:
    """Walk the log in order; the first fault found (``None``: none)."""
    prev, target = GENESIS, None
    with db.sessions() as s:
        for row in s.scalars(select(AuditRow).order_by(AuditRow.seq)).yield_per(1000):
            w.n += 1
            if w.n == 1:
                w.chain = row.hash
                latest = chains.get(row.hash, ChainCheckpoints()).latest
                target = latest.seq if latest else None
            fault = _fault(row, w.n, prev, anchor, keyed=w.keyed)
            if fault:
                return Verification(False, w.n, w.n, fault)
            if row.mac:
                w.keyed = True
            else:
                w.unkeyed += 1
            if row.seq == target:
                w.mac_at_checkpoint = row.mac
            prev, w.last_seq, w.last_hash = row.hash, row.seq, row.hash
        head = s.get(ChainHead, 1)
    if head is not None and (head.seq != w.last_seq or head.hash != prev):
        return Verification(
            False,
            w.n,
            w.last_seq + 1,
            "the log ends before the chain head "
            f"(head seq {head.seq}): events were removed from the end",
        )
    return None


def _fault(row: AuditRow, expected_seq: int, prev: str, anchor: Anchor, *, keyed: bool) -> str:
    """Why ``row`` is not the next event of the log ("" when it is)."""
    if row.seq != expected_seq:
        return f"seq {expected_seq} is missing (found {row.seq} next)"
    if row.prev_hash != prev:
        return (
            "prev_hash does not match the event "
            "before it (an event was removed, inserted or altered)"
        )
    if event_hash(_fields(row)) != row.hash:
        return "content does not match its hash (the stored event was changed)"
    if not row.mac:
        if keyed:
            return (
                "the event has no MAC but follows keyed events: it was written (or "
                "re-chained) without the audit key"
            )
        return ""
    if not anchor.authentic(row.hash, row.mac):
        return (
            "the event's MAC does not verify with the audit key: it was changed and "
            "re-chained without the key (or HANDOVER_AUDIT_KEY is not the key it was "
            "written with)"
        )
    return ""


def _empty(anchor: Anchor, others: list[Checkpoint], notes: list[str]) -> Verification:
    """An empty log: fine, unless checkpoints written with this key say there was one."""
    if not others:
        return Verification(True, 0, notes=notes)
    top = max(cp.seq for cp in others)
    return Verification(
        False,
        0,
        1,
        f"the log is empty but {anchor.sink.where} holds checkpoints written with this key "
        f"(up to seq {top}): the whole log was deleted — or that checkpoint file is another "
        "ledger's (give each ledger its own HANDOVER_AUDIT_CHECKPOINT)",
        notes=notes,
    )


def _against(anchor: Anchor, w: _Walk, cps: ChainCheckpoints) -> Verification:
    """The walked log against its checkpoints."""
    latest = cps.latest
    at = latest.seq if latest else None

    def fail(reason: str, first_bad_seq: int | None = None) -> Verification:
        return Verification(False, w.n, first_bad_seq, reason, w.unkeyed, checkpoint_seq=at)

    if cps.forged:
        lines = ", ".join(map(str, cps.forged[:5]))
        return fail(
            f"checkpoint line(s) {lines} of this log in {anchor.sink.where} do not "
            "authenticate: written by someone without the audit key"
        )
    if latest is None:
        older = " (an older Handover's log is anchored by the next event recorded)"
        return fail(
            f"no checkpoint of this log in {anchor.sink.where}: the log has {w.n} events but "
            "nothing outside the database vouches for where it ends (the checkpoint file was "
            "deleted, or is not this ledger's)" + (older if not w.keyed else "")
        )
    if latest.seq > w.last_seq:
        return fail(
            f"the log ends at seq {w.last_seq} but the checkpoint says {latest.seq}: "
            "events were deleted from the end",
            w.last_seq + 1,
        )
    if w.mac_at_checkpoint not in cps.latest_macs:
        return fail(
            f"event {latest.seq} is not the one the checkpoint recorded: the log was "
            "rewritten from there",
            latest.seq,
        )
    return Verification(
        True, w.n, unkeyed=w.unkeyed, checkpoint_seq=at, unanchored=w.last_seq - latest.seq
    )


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
            yield AuditRecord(
                **{**f, "at": datetime.fromisoformat(f["at"])}, hash=row.hash, mac=row.mac
            )


def last_seq(db: LedgerDB) -> int:
    with db.sessions() as s:
        head = s.get(ChainHead, 1)
        return head.seq if head else 0


def export(db: LedgerDB, fmt: str = "jsonl", *, since: datetime | None = None) -> Iterator[str]:
    """The log as JSON lines or CSV (header first), oldest first; a CSV cell that a
    spreadsheet would run as a formula is written as text (``domain.escaping.csv_cell``)."""
    return format_records(records(db, since=since), fmt)


def format_records(recs: Iterable[AuditRecord], fmt: str = "jsonl") -> Iterator[str]:
    """``recs`` as JSON lines or CSV (header first), as :func:`export` writes them."""
    cols = [*FIELDS, "hash", "mac"]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        yield buf.getvalue()
    for r in recs:
        d = r.model_dump(mode="json")
        if fmt == "jsonl":
            yield json.dumps({c: d[c] for c in cols}, ensure_ascii=False) + "\n"
        else:
            buf = io.StringIO()
            csv.writer(buf).writerow(
                csv_row(json.dumps(d[c]) if isinstance(d[c], (dict, list)) else d[c] for c in cols)
            )
            yield buf.getvalue()
