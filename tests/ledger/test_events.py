"""Inbound events: claimed once per (source, id), started once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from ledger import LedgerDB
from ledger.events import (
    STRANDED_AFTER,
    cancel_event,
    claim_event,
    due_events,
    get_event,
    list_events,
    mark_started,
    release_event,
    set_event_run,
)

NOW = datetime(2025, 3, 3, 12, tzinfo=UTC)
LATER = datetime(2025, 3, 10, tzinfo=UTC)


def test_an_event_is_claimed_once_per_source(ledger: LedgerDB) -> None:
    ev, new = claim_event(ledger, "hr", "e1", payload_digest="a" * 64, now=NOW, params={"x": 1})
    assert new and ev.status == "started" and ev.started_at == NOW and ev.run_ref == ""
    set_event_run(ledger, "hr", "e1", "run-1")
    again, new = claim_event(ledger, "hr", "e1", payload_digest="b" * 64, now=LATER)
    assert not new and again.run_ref == "run-1" and again.payload_digest == "a" * 64
    assert again.received_at == NOW and again.params == {"x": 1}
    # Another source's id space is its own.
    assert claim_event(ledger, "jira", "e1", payload_digest="c" * 64, now=NOW)[1]
    assert [(e.source, e.event_id) for e in list_events(ledger)] == [("hr", "e1"), ("jira", "e1")]
    assert [e.event_id for e in list_events(ledger, "jira")] == ["e1"]


def test_concurrent_deliveries_claim_one(ledger: LedgerDB) -> None:
    wins: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        _, new = claim_event(ledger, "hr", "race", payload_digest="a" * 64, now=NOW)
        with lock:
            wins.append(new)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == [False] * 7 + [True]


def test_a_scheduled_event_is_due_at_its_time_and_started_once(ledger: LedgerDB) -> None:
    ev, _ = claim_event(ledger, "hr", "s1", payload_digest="a" * 64, now=NOW, scheduled_at=LATER)
    assert ev.status == "scheduled" and ev.scheduled_at == LATER and ev.started_at is None
    assert due_events(ledger, LATER - timedelta(seconds=1)) == []
    assert [e.event_id for e in due_events(ledger, LATER)] == ["s1"]
    assert mark_started(ledger, "hr", "s1", now=LATER)
    assert not mark_started(ledger, "hr", "s1", now=LATER)  # the second sweep loses
    assert due_events(ledger, LATER + timedelta(minutes=1)) == []
    set_event_run(ledger, "hr", "s1", "run-9")
    got = get_event(ledger, "hr", "s1")
    assert got is not None and (got.status, got.run_ref, got.started_at) == (
        "started",
        "run-9",
        LATER,
    )


def test_release_and_cancel(ledger: LedgerDB) -> None:
    claim_event(ledger, "hr", "now", payload_digest="a" * 64, now=NOW)
    release_event(ledger, "hr", "now")  # kept: the sweep retries it once stranded
    assert get_event(ledger, "hr", "now") is not None
    release_event(ledger, "hr", "now", forget=True)  # the sender's retry will claim it
    assert get_event(ledger, "hr", "now") is None

    claim_event(ledger, "hr", "later", payload_digest="a" * 64, now=NOW, scheduled_at=LATER)
    assert mark_started(ledger, "hr", "later", now=LATER)
    release_event(ledger, "hr", "later", forget=True)  # scheduled: back to scheduled, kept
    assert get_event(ledger, "hr", "later").status == "scheduled"  # type: ignore[union-attr]
    assert cancel_event(ledger, "hr", "later")
    assert not cancel_event(ledger, "hr", "later")
    assert due_events(ledger, LATER) == []
    assert not mark_started(ledger, "hr", "later", now=LATER)

    claim_event(ledger, "hr", "done", payload_digest="a" * 64, now=NOW)
    set_event_run(ledger, "hr", "done", "run-1")
    release_event(ledger, "hr", "done", forget=True)  # it did start: nothing is undone
    assert get_event(ledger, "hr", "done").run_ref == "run-1"  # type: ignore[union-attr]
    assert not cancel_event(ledger, "hr", "done")


def test_a_stranded_claim_becomes_due(ledger: LedgerDB) -> None:
    claim_event(ledger, "hr", "crash", payload_digest="a" * 64, now=NOW)
    assert due_events(ledger, NOW + STRANDED_AFTER - timedelta(seconds=1)) == []
    assert [e.event_id for e in due_events(ledger, NOW + STRANDED_AFTER)] == ["crash"]
    assert mark_started(ledger, "hr", "crash", now=NOW + STRANDED_AFTER)
    # Taken again: not due until stranded anew.
    assert due_events(ledger, NOW + STRANDED_AFTER + timedelta(minutes=1)) == []
