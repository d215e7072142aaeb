"""An emergency's recorded trigger stands for its person, for ``timeout_hours``, and no longer
(tasks.triggers); the ledger is real (SQLite), the runtime only what the check reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from approvals.policy import load_policy
from ledger import open_ledger
from ledger.events import claim_event
from tasks.triggers import TriggerRefused, check_trigger, declare
from tests.anchors import anchor_in

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
WHO = "pat.leaver@acme.com"
SEC = "sec.lead@acme.com"


def runtime(tmp_path: Path, now: datetime) -> Any:
    """What check_trigger reads: the ledger, the policy, the clock (no Slack)."""
    db = open_ledger(f"sqlite:///{tmp_path / 'l.db'}", anchor=anchor_in(tmp_path))
    return SimpleNamespace(ledger=db, policy=load_policy(), clock=lambda: now, messenger=None)


def hr_event(rt: Any, event_id: str, email: str, *, at: datetime, risk: bool = True) -> None:
    claim_event(
        rt.ledger,
        "hr",
        event_id,
        payload_digest="d" * 64,
        now=at,
        kind="employee.terminated",
        params={"email": email, "emergency": risk, "requester": f"hr-system:{event_id}"},
    )


def check(rt: Any, **kw: Any) -> str:
    return check_trigger(rt, email=WHO, emergency=True, **kw)


def test_an_hr_event_stands_for_its_person_for_a_day(tmp_path: Path) -> None:
    rt = runtime(tmp_path, NOW)
    hr_event(rt, "e-now", WHO, at=NOW - timedelta(hours=23))
    hr_event(rt, "e-old", WHO, at=NOW - timedelta(hours=25))
    hr_event(rt, "e-other", "someone@acme.com", at=NOW)
    assert check(rt, requester="hr-system:e-now") == "hr event e-now"
    with pytest.raises(TriggerRefused, match="older than 24 h"):
        check(rt, requester="hr-system:e-old")
    with pytest.raises(TriggerRefused, match="about someone else"):
        check(rt, requester="hr-system:e-other")


def test_a_declaration_stands_for_its_declarer_and_person_for_a_day(tmp_path: Path) -> None:
    rt = runtime(tmp_path, NOW)
    fresh = declare(rt.ledger, subject=WHO, declared_by=SEC, verified="oidc-device", now=NOW)
    old = declare(
        rt.ledger, subject=WHO, declared_by=SEC, verified="oidc-device", now=NOW - timedelta(days=2)
    )
    assert check(rt, requester=SEC, declaration=fresh.id) == f"declaration {fresh.id}"
    with pytest.raises(TriggerRefused, match="older than 24 h"):
        check(rt, requester=SEC, declaration=old.id)
    with pytest.raises(TriggerRefused, match="made by someone else"):
        check(rt, requester="sec.oncall@acme.com", declaration=fresh.id)
    with pytest.raises(TriggerRefused, match="about someone else"):
        check_trigger(
            rt, email="other@acme.com", emergency=True, requester=SEC, declaration=fresh.id
        )


def test_no_trigger_is_needed_without_an_emergency_or_for_a_dry_run(tmp_path: Path) -> None:
    rt = runtime(tmp_path, NOW)
    assert check_trigger(rt, email=WHO, emergency=False, requester="anyone") == ""
    assert check(rt, requester="anyone", dry_run=True) == ""
