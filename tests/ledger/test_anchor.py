"""The audit log anchored outside its database (ledger/anchor.py, issue 15): what someone with
write access to the ledger's database but without the audit key, or without the checkpoint
file, can no longer do unseen — on SQLite and on PostgreSQL.

Each attack below passed ``verify`` before the log was keyed and checkpointed: the hash was a
public SHA-256 and the chain head lived in the same database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text

from domain.records import ApprovalRequest, AuditEvent, Decision
from ledger import Anchor, FileCheckpoints, LedgerDB, open_ledger
from ledger.approvals import DecisionRow, add_decision, create_approval, get_approval
from ledger.audit import GENESIS, AuditRow, ChainHead, _fields, append, event_hash, verify
from tests.anchors import anchor_in


def _events(db: LedgerDB, n: int) -> None:
    for i in range(n):
        append(db, AuditEvent(action="org.remove_member", subject=f"p{i}@acme.com", effect="x"))


def _rechain(db: LedgerDB, *, edit_seq: int, mac: Anchor | None, keep_macs_from: int = 0) -> None:
    """What an insider without the key does: edit event ``edit_seq``, recompute every hash from
    there with the public SHA-256 (MACs: with ``mac``'s key, or blanked; those from
    ``keep_macs_from`` on kept as they were), move the head."""
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        prev = rows[edit_seq - 2].hash if edit_seq > 1 else GENESIS
        for row in rows[edit_seq - 1 :]:
            if row.seq == edit_seq:
                row.target = "Staging"
            row.prev_hash = prev
            row.hash = event_hash(_fields(row))
            if not keep_macs_from or row.seq < keep_macs_from:
                row.mac = mac.event_mac(row.hash) if mac else ""
            prev = row.hash
        head = s.get(ChainHead, 1)
        assert head is not None
        head.hash = prev


def test_a_keyed_log_verifies_and_reaches_its_checkpoint(ledger: LedgerDB, tmp_path: Path) -> None:
    _events(ledger, 4)
    v = verify(ledger)
    assert v.ok and v.events == 4 and v.checkpoint_seq == 4 and v.unkeyed == 0, v
    lines = [json.loads(x) for x in (tmp_path / "audit-checkpoint.jsonl").read_text().splitlines()]
    # One line per appending transaction, each MAC'd; the chain is named by its first event.
    assert [x["seq"] for x in lines] == [1, 2, 3, 4]
    assert {x["chain"] for x in lines} == {lines[0]["hash"]}
    assert all(len(x["line_mac"]) == 64 and len(x["mac"]) == 64 for x in lines)


def test_deleting_the_last_events_and_moving_the_head_back_is_caught(ledger: LedgerDB) -> None:
    _events(ledger, 6)
    with ledger.session() as s:
        s.execute(delete(AuditRow).where(AuditRow.seq > 4))
        last = s.get(AuditRow, 4)
        head = s.get(ChainHead, 1)
        assert last is not None and head is not None
        head.seq, head.hash = 4, last.hash
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 5, v
    assert v.reason.startswith("the log ends at seq 4 but the checkpoint says 6"), v.reason


def test_deleting_the_whole_log_is_caught(ledger: LedgerDB) -> None:
    _events(ledger, 3)
    with ledger.session() as s:
        s.execute(delete(AuditRow))
        head = s.get(ChainHead, 1)
        assert head is not None
        head.seq, head.hash = 0, GENESIS
    v = verify(ledger)
    assert not v.ok and "the log is empty but" in v.reason and "up to seq 3" in v.reason, v


@pytest.mark.parametrize("how", ["sha256 only", "another key"])
def test_an_edit_rechained_without_the_key_is_caught(ledger: LedgerDB, how: str) -> None:
    _events(ledger, 5)
    other = anchor_in(Path("/nonexistent"), key=b"a-key-that-is-not-the-audit-key")
    _rechain(ledger, edit_seq=3, mac=other if how == "another key" else None)
    v = verify(ledger)
    assert not v.ok and v.first_bad_seq == 3, v
    want = "does not verify with the audit key" if how == "another key" else "has no MAC"
    assert want in v.reason, v.reason


def test_a_whole_log_rechained_as_an_older_handovers_is_caught(ledger: LedgerDB) -> None:
    """Blank every MAC and re-chain from the first event: it looks like a log from before the
    keyed era — but the checkpoints name another chain, so none vouches for this one."""
    _events(ledger, 4)
    _rechain(ledger, edit_seq=1, mac=None)
    v = verify(ledger)
    assert not v.ok and v.reason.startswith("no checkpoint of this log"), v


def test_a_missing_checkpoint_file_fails(ledger: LedgerDB, tmp_path: Path) -> None:
    _events(ledger, 2)
    (tmp_path / "audit-checkpoint.jsonl").unlink()
    v = verify(ledger)
    assert not v.ok and "no checkpoint of this log" in v.reason and "2 events" in v.reason, v


def test_checkpoints_written_late_and_out_of_order_are_fine(
    ledger: LedgerDB, anchor: Anchor, tmp_path: Path
) -> None:
    """Several processes append: a lower seq's line may land after a higher one's."""
    _events(ledger, 3)
    cp = tmp_path / "audit-checkpoint.jsonl"
    lines = cp.read_text().splitlines()
    cp.write_text("\n".join([lines[2], lines[0], lines[1], '{"torn": ']) + "\n")
    v = verify(ledger)
    assert v.ok and v.checkpoint_seq == 3, v
    assert v.notes == ["1 unreadable checkpoint line(s) ignored"]


def test_a_checkpoint_line_forged_without_the_key_fails(ledger: LedgerDB, tmp_path: Path) -> None:
    _events(ledger, 2)
    cp = tmp_path / "audit-checkpoint.jsonl"
    line = json.loads(cp.read_text().splitlines()[-1])
    forged = {**line, "seq": 1}  # an older head, to hide a later truncation
    with cp.open("a") as f:
        f.write(json.dumps(forged) + "\n")
    v = verify(ledger)
    assert not v.ok and "checkpoint line(s) 3 of this log" in v.reason, v


def test_events_after_the_last_checkpoint_are_reported(ledger: LedgerDB, tmp_path: Path) -> None:
    _events(ledger, 3)
    cp = tmp_path / "audit-checkpoint.jsonl"
    cp.write_text(cp.read_text().splitlines()[0] + "\n")  # the checkpoints of 2 and 3 lost
    v = verify(ledger)
    assert v.ok and v.checkpoint_seq == 1 and v.unanchored == 2, v


def test_an_older_handovers_unkeyed_log_is_anchored_by_the_next_event(
    ledger_url: str, anchor: Anchor, tmp_path: Path
) -> None:
    db = open_ledger(ledger_url, anchor=anchor)
    _events(db, 3)
    # What an older Handover left: no mac column, no checkpoint file.
    with db.engine.begin() as c:
        c.execute(text("ALTER TABLE audit_events DROP COLUMN mac"))
    db.dispose()
    (tmp_path / "audit-checkpoint.jsonl").unlink()
    db = open_ledger(ledger_url, anchor=anchor)  # the column comes back, empty
    v = verify(db)
    assert not v.ok and "anchored by the next event recorded" in v.reason, v
    _events(db, 2)
    v = verify(db)
    assert v.ok and v.events == 5 and v.unkeyed == 3 and v.checkpoint_seq == 5, v
    # The first keyed event's MAC covers its link to them: a re-chained old event fails there.
    _rechain(db, edit_seq=2, mac=None, keep_macs_from=4)
    v = verify(db)
    assert not v.ok and v.first_bad_seq == 4 and "MAC does not verify" in v.reason, v
    db.dispose()


def test_a_ledger_without_its_key_cannot_append(ledger_url: str) -> None:
    from ledger.audit import AuditKeyMissing

    db = open_ledger(ledger_url)
    with pytest.raises(AuditKeyMissing, match="HANDOVER_AUDIT_KEY"):
        append(db, AuditEvent(action="a"))
    assert not verify(db).ok
    db.dispose()


def test_a_checkpoint_that_cannot_be_written_is_logged_and_the_event_stands(
    ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    anchor = Anchor(b"k" * 32, FileCheckpoints(blocked / "cp.jsonl"))
    db = open_ledger(ledger_url, anchor=anchor)
    with caplog.at_level("ERROR", logger="handover.audit"):
        append(db, AuditEvent(action="a"))
    assert "the checkpoint of seq 1 could not be written" in caplog.text
    assert "k" * 32 not in caplog.text
    v = verify(db)
    assert not v.ok and "cannot be read" in v.reason
    db.dispose()


# --- decisions ---------------------------------------------------------------------------------
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _approval(db: LedgerDB) -> ApprovalRequest:
    return create_approval(
        db,
        ApprovalRequest(
            id="apr-1",
            runbook="offboard",
            subject="dana@acme.com",
            requester="hr@acme.com",
            plan_hash="ab" * 32,
            rule="r",
            created_at=T0,
            expires_at=T0,
        ),
        event=AuditEvent(action="approval.requested", target="apr-1", plan_hash="ab" * 32),
    )


def test_a_decision_and_its_audit_event_are_one_record(ledger: LedgerDB) -> None:
    _approval(ledger)
    d = Decision(approver="sofia@acme.com", decision="approve", at=T0, plan_hash="ab" * 32)
    assert add_decision(ledger, "apr-1", d, details={"channel": "cli"})
    assert not add_decision(ledger, "apr-1", d)  # a double click: stored and audited once
    (got,) = get_approval(ledger, "apr-1").decisions
    assert got.authenticated
    with ledger.sessions() as s:
        actions = [r.action for r in s.scalars(select(AuditRow).order_by(AuditRow.seq))]
    assert actions == ["approval.requested", "approval.decision"]
    assert verify(ledger).ok


def test_a_decision_row_written_into_the_database_is_not_authenticated(
    ledger: LedgerDB,
) -> None:
    _approval(ledger)
    real = Decision(approver="sofia@acme.com", decision="deny", at=T0, plan_hash="ab" * 32)
    add_decision(ledger, "apr-1", real)
    with ledger.session() as s:
        seq = s.scalar(select(DecisionRow.audit_seq))
        base = {"approval_id": "apr-1", "at": T0, "plan_hash": "ab" * 32}
        # No audit event; one pointing at another decision's event; a forged event.
        s.add(DecisionRow(approver="hr.partner@acme.com", decision="approve", **base))
        s.add(DecisionRow(approver="sofia@acme.com", decision="approve", audit_seq=seq, **base))
    forged = AuditRow(
        seq=99, at="x", actor="handover", on_behalf_of="sec@acme.com", action="approval.decision",
        subject="dana@acme.com", target="apr-1", before=None, after=None, effect="approve",
        flow_run_id="", ticket="", plan_hash="ab" * 32, prev_hash="f" * 64, hash="", mac="0" * 64,
    )  # fmt: skip
    forged.hash = event_hash(_fields(forged))
    with ledger.session() as s:
        s.add(forged)
        s.add(DecisionRow(approver="sec@acme.com", decision="approve", audit_seq=99, **base))
    decisions = get_approval(ledger, "apr-1").decisions
    got = {(d.approver, d.decision): d.authenticated for d in decisions}
    assert got == {
        ("sofia@acme.com", "deny"): True,
        ("hr.partner@acme.com", "approve"): False,
        ("sofia@acme.com", "approve"): False,
        ("sec@acme.com", "approve"): False,
    }
    # The person's real answer is not blocked by a forged row saying the same.
    real = Decision(approver="hr.partner@acme.com", decision="approve", at=T0, plan_hash="ab" * 32)
    assert add_decision(ledger, "apr-1", real)
    decisions = get_approval(ledger, "apr-1").decisions
    assert [d.authenticated for d in decisions if d.approver == "hr.partner@acme.com"] == [True]


def test_two_ledgers_sharing_one_checkpoint_file_are_read_apart(
    tmp_path: Path, anchor: Anchor
) -> None:
    a = open_ledger(f"sqlite:///{tmp_path / 'a.db'}", anchor=anchor)
    b = open_ledger(f"sqlite:///{tmp_path / 'b.db'}", anchor=anchor)
    _events(a, 5)
    _events(b, 2)  # b's highest checkpoint (2) is below a's (5): each is judged by its own
    assert verify(a).checkpoint_seq == 5 and verify(b).checkpoint_seq == 2
    assert verify(a).ok and verify(b).ok
    a.dispose()
    b.dispose()
