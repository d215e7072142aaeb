"""The audit chain: append-only, hash-chained, verifiable, fork-free under concurrency."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from domain.records import AuditEvent
from ledger import LedgerDB, open_ledger
from ledger.audit import append, export, last_seq, records, verify
from tests.anchors import anchor_in


def _events(db: LedgerDB, n: int) -> None:
    for i in range(n):
        append(
            db,
            AuditEvent(
                action="org.remove_member",
                subject=f"p{i}@acme.com",
                target="Production",
                before={"role": "viewer", "i": i},
                after=None,
                effect="deleted",
                ticket="IT-1",
                plan_hash="ab" * 32,
                on_behalf_of="sec.lead@acme.com",
            ),
        )


def test_a_fresh_log_verifies(ledger: LedgerDB) -> None:
    assert verify(ledger).ok
    _events(ledger, 5)
    v = verify(ledger)
    assert v.ok and v.events == 5
    recs = list(records(ledger))
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(recs))
    assert last_seq(ledger) == 5


# Each column, and a value that differs by a single character from what was stored.
TAMPER = [
    ("actor", "'handoveR'"),
    ("on_behalf_of", "'sec.lead@acme.con'"),
    ("action", "'org.remove_membe'"),
    ("subject", "'p2@acme.con'"),
    ("target", "'Productio'"),
    ("effect", "'deletes'"),
    ("ticket", "'IT-2'"),
    ("plan_hash", "'ac" + "ab" * 31 + "'"),
    ("before", '\'{"role": "admin", "i": 2}\''),
    ("at", None),
]


@pytest.mark.parametrize(("column", "value"), TAMPER, ids=[c for c, _ in TAMPER])
def test_changing_any_stored_field_is_detected_at_its_seq(
    ledger: LedgerDB, column: str, value: str | None
) -> None:
    _events(ledger, 5)
    with ledger.engine.begin() as c:
        if column == "at":
            at = c.execute(text("SELECT at FROM audit_events WHERE seq = 3")).scalar_one()
            value = "'" + at[:-1] + ("1" if at[-1] != "1" else "2") + "'"
        c.execute(text(f"UPDATE audit_events SET {column} = {value} WHERE seq = 3"))
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 3, v


def test_removing_inserting_or_truncating_is_detected(ledger: LedgerDB) -> None:
    _events(ledger, 6)
    with ledger.engine.begin() as c:
        c.execute(text("DELETE FROM audit_events WHERE seq = 6"))
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 6
    with ledger.engine.begin() as c:
        c.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 4


def test_a_rewritten_hash_breaks_its_mac(ledger: LedgerDB) -> None:
    """Recomputing one event's hash after editing it fails that event's MAC."""
    from ledger.audit import AuditRow, _fields, event_hash

    _events(ledger, 4)
    with ledger.session() as s:
        row = s.get(AuditRow, 2)
        assert row is not None
        row.target = "Staging"
        row.hash = event_hash(_fields(row))
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 2 and "MAC" in v.reason, v


def _append_many(url: str, folder: Path, worker: int, n: int) -> None:
    db = open_ledger(url, anchor=anchor_in(folder))
    for i in range(n):
        append(db, AuditEvent(action="concurrent", subject=f"w{worker}", target=str(i)))
    db.dispose()


def test_two_processes_appending_at_once_never_fork_the_chain(
    ledger_url: str, tmp_path: Path
) -> None:
    open_ledger(ledger_url).dispose()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(ledger_url, tmp_path, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = open_ledger(ledger_url, anchor=anchor_in(tmp_path))
    v = verify(db)
    # Each process checkpointed each of its appends; the highest line is the log's end.
    lines = (tmp_path / "audit-checkpoint.jsonl").read_text().splitlines()
    assert len(lines) == 80 and sorted(json.loads(x)["seq"] for x in lines) == list(range(1, 81))
    assert v.ok and v.events == 80 and v.checkpoint_seq == 80 and v.unanchored == 0, v
    assert sorted(r.seq for r in records(db)) == list(range(1, 81))
    db.dispose()


def test_export_jsonl_and_csv_with_since(ledger: LedgerDB) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        append(
            ledger, AuditEvent(action="a", subject="s", target=str(i)), now=t0 + timedelta(days=i)
        )
    lines = list(export(ledger, "jsonl"))
    assert len(lines) == 3 and json.loads(lines[0])["seq"] == 1
    assert {"seq", "hash", "prev_hash", "at"} <= set(json.loads(lines[0]))
    since = list(export(ledger, "jsonl", since=t0 + timedelta(days=1)))
    assert [json.loads(x)["target"] for x in since] == ["1", "2"]
    csv_rows = "".join(export(ledger, "csv")).splitlines()
    assert csv_rows[0].startswith("seq,at,actor") and len(csv_rows) == 4
