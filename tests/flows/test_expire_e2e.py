"""Temporary-access expiry end to end, over HTTP against the demo sandbox, on a real Prefect
server (issue 7): a temporary Staging Manager role of a contractor gets its 3-day reminder once
(Extend button for the person and the sponsor), an Extend click opens an extension approval
whose approval moves the same grant's end by 30 days, and 40 days later the role is revoked
at the next sweep — saying how late — and its ticket commented on; a second sweep does nothing.

The sandbox's clock is moved, so every sweep is given the sandbox's time as ``now``.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.approvals_cmd import from_slack, sign
from domain.expiry import utc
from domain.models import Role
from domain.records import Grant, GrantStatus
from intake.app import create_intake
from intake.launch import thread_launcher
from ledger.audit import records, verify
from ledger.cases import find_closed_case
from ledger.grants import grants, record_grant
from tests.flows.offboard_stack import ADMIN, SECRET, OffboardStack
from tests.flows.sweep_stack import (
    CARLA,
    SPONSOR,
    access_ticket,
    demo_stack,
    sandbox_now,
    sweep,
    temporary_staging_manager,
)
from tests.flows.sweep_stack import extend_buttons as buttons

pytestmark = pytest.mark.slow

stack = pytest.fixture(name="stack")(demo_stack)


def expire_sweep(st: OffboardStack, **params: Any) -> dict[str, Any]:
    from flows.expire import expire_access

    return sweep(expire_access, st, **params)


def extend_buttons(st: OffboardStack, email: str) -> list[str]:
    return buttons(st.url, email)


def click_extend(intake: TestClient, st: OffboardStack, email: str, value: str) -> Any:
    """``email`` clicks Extend; a contractor signs in through the IdP like everyone else (a
    Slack click counts only from an IdP user), so they are one first."""
    st.rt.idp.create_user(email=email)
    payload = {
        "type": "block_actions",
        **from_slack(),
        "user": {"id": st.svc.messenger.user_id(email)},  # type: ignore[union-attr]
        "trigger_id": f"{time.time_ns()}.sandbox",
        "actions": [{"action_id": "extend", "block_id": "expiry", "value": value}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))


def the_grant(st: OffboardStack, gid: int) -> Grant:
    (g,) = [g for g in grants(st.rt.ledger) if g.id == gid]
    return g


def staging(st: OffboardStack) -> list[Any]:
    return [p for p in st.rt.org.effective_access(CARLA) if p.project == "Staging"]  # type: ignore[union-attr]


def test_remind_extend_and_expire(stack: OffboardStack) -> None:
    from flows.expire import extend_grant
    from tasks.runtime import use_runtime

    st = stack
    with use_runtime(st.rt):  # the launcher's runs start in a copy of this context
        launcher = thread_launcher(extend_grant)
    intake = TestClient(create_intake(st.svc, extend_launcher=launcher))

    # A temporary Staging Manager role, ending in 2 days, on a ticket, sponsored by Sofia.
    t0 = sandbox_now(st.url)
    g = temporary_staging_manager(st.rt, t0)
    ticket = g.ticket
    assert g.id is not None

    # A dry run decides and writes nothing.
    before = st.seq()
    dry = expire_sweep(st, dry_run=True)
    assert dry["status"] == "planned"
    assert [s["kind"] for s in dry["plan"]["steps"]] == ["remind"]
    assert st.writes(before) == []

    # First sweep: nothing revoked; the 3-day reminder (it ends in 2 days), once, to both.
    first = expire_sweep(st)
    assert first["status"] == "done", first
    assert [(s["kind"], s["target"]) for s in first["plan"]["steps"]] == [
        ("remind", f"{CARLA} (Staging manager)")
    ]
    assert list(first["effects"].values()) == ["sent"]
    assert staging(st)[0].role is Role.MANAGER
    assert extend_buttons(st, CARLA) == [f"grant:{g.id}"]
    assert extend_buttons(st, SPONSOR) == [f"grant:{g.id}"]
    assert the_grant(st, g.id).last_reminder == "3d"
    # Drift: Carla's hand-given Production viewer role is reported, not changed.
    assert any(w.startswith(f"{CARLA}: Production viewer") for w in first["warnings"])

    # Second sweep: nothing sent.
    before = st.seq()
    second = expire_sweep(st)
    assert second["status"] == "nothing_to_do" and second["plan"]["steps"] == []
    assert st.writes(before) == []
    assert len(extend_buttons(st, CARLA)) == 1 and len(extend_buttons(st, SPONSOR)) == 1

    # Carla clicks Extend → an extension run waits for an approval; her manager approves it.
    r = click_extend(intake, st, CARLA, f"grant:{g.id}")
    assert r.status_code == 200 and r.json()["started"] is True, r.text
    appr = st.paused(CARLA)
    assert appr.runbook == "extend" and appr.requester == CARLA
    assert SPONSOR in appr.required[0]
    r = st.click(appr, SPONSOR)
    assert r.status_code == 200 and r.json()["recorded"], r.text
    (ref,) = launcher.runs
    out = launcher.wait(ref, timeout=180)
    assert isinstance(out, dict) and out["status"] == "done", out
    extended = the_grant(st, g.id)
    assert extended.status is GrantStatus.ACTIVE
    assert utc(extended.end) == t0 + timedelta(days=32)
    assert extended.extended_from is not None
    assert utc(extended.extended_from) == t0 + timedelta(days=2)
    assert extended.last_reminder == ""
    assert len(grants(st.rt.ledger, subject=CARLA)) == 1  # never a second grant row
    assert expire_sweep(st)["status"] == "nothing_to_do"

    # 40 days later (nothing ran meanwhile): revoked at the next sweep, saying how late.
    r = httpx.post(f"{st.url}/_sandbox/clock", json={"advance_days": 40}, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    late = expire_sweep(st)
    assert late["status"] == "done", late
    (step,) = late["plan"]["steps"]
    assert step["kind"] == "revoke_role" and step["target"] == f"{CARLA} (Staging manager)"
    assert "expired 8 days" in step["reason"] and "revoked at the next sweep" in step["reason"]
    assert list(late["effects"].values()) == ["deleted"]
    assert list(late["verification"].values()) == ["pass"]
    assert staging(st) == []
    assert st.member(CARLA) is not None  # her Production role remains: membership kept
    assert the_grant(st, g.id).status is GrantStatus.EXPIRED
    (rec,) = [r for r in records(st.rt.ledger, subject=CARLA) if r.action == "grant.expired"]
    assert rec.after is not None and rec.after["late_by"].startswith("8 days")
    assert rec.ticket == ticket
    issue = st.get(f"/_sandbox/jira/issues/{ticket}")
    assert sum("revoked the temporary access" in c for c in issue["comments"]) == 1
    assert sum("extended the temporary access" in c for c in issue["comments"]) == 1

    # A second sweep does nothing.
    before = st.seq()
    again = expire_sweep(st)
    assert again["status"] == "nothing_to_do"
    assert st.writes(before) == []
    assert verify(st.rt.ledger).ok


def test_extend_click_for_an_unknown_grant_starts_nothing(stack: OffboardStack) -> None:
    st = stack
    started: list[dict[str, Any]] = []
    intake = TestClient(create_intake(st.svc, extend_launcher=lambda p: started.append(p) or "ref"))
    r = click_extend(intake, st, CARLA, "grant:999")
    assert r.status_code == 200 and r.json()["started"] is False
    r = click_extend(intake, st, CARLA, "grant:x")
    assert r.status_code == 400
    assert started == []


def test_an_expired_membership_is_offboarded_content_first(stack: OffboardStack) -> None:
    """A temporary membership that ends goes the way of every leaver (seed 004): the
    offboarding runbook, pre-approved by the grant's end, transfers the contractor's content to
    the sponsor before the removal; the grant is marked expired only once that is done."""
    st = stack
    t0 = sandbox_now(st.url)
    r = httpx.post(f"{st.url}/_sandbox/members/{CARLA}/login", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    org: Any = st.rt.org
    asset = next(a for a in org.list_assets(owner=SPONSOR))
    org.transfer_assets([asset.id], CARLA)  # Carla owns content when her access ends
    ticket = access_ticket(st.rt, CARLA, f"Temporary membership for {CARLA}")
    g = record_grant(
        st.rt.ledger,
        Grant(
            subject=CARLA,
            start=t0 - timedelta(days=10),
            end=t0 - timedelta(minutes=5),
            ticket=ticket,
            sponsor=SPONSOR,
        ),
    )

    before = st.seq()
    out = expire_sweep(st)
    assert out["status"] == "done", out
    (step,) = out["plan"]["steps"]
    assert (step["kind"], step["target"]) == ("remove_member", f"{CARLA} (membership)")
    (effect,) = out["effects"].values()
    assert effect.startswith("offboarded(contract_end, run "), effect
    assert list(out["verification"].values()) == ["pass"]
    assert st.member(CARLA) is None
    assert org.list_assets(owner=CARLA) == []
    moved = [a for a in org.list_assets(owner=SPONSOR) if a.id == asset.id]
    assert moved, "the sponsor received Carla's content"
    # Content first, removal last (seed 004: "Do not skip asset transfer").
    paths = [(w["method"], w["path"]) for w in st.writes(before)]
    transfers = [i for i, (_m, p) in enumerate(paths) if "transfer" in p]
    removals = [i for i, (_m, p) in enumerate(paths) if p.endswith(f"/Users/{CARLA}")]
    assert transfers and removals and max(transfers) < min(removals), paths
    assert the_grant(st, g.id or 0).status is GrantStatus.EXPIRED
    case = find_closed_case(
        st.rt.ledger, runbook="offboard", subject=CARLA, ticket=ticket, outcomes=("done",)
    )
    assert case is not None and case.approved_plan is not None
    assert case.approved_plan.expired_grant.startswith(f"grant {g.id} ended"), case
    assert case.requester == "handover:expiry-sweep" and case.reason == "contract_end"
    issue = st.get(f"/_sandbox/jira/issues/{ticket}")
    assert sum("revoked the temporary access" in c for c in issue["comments"]) == 1

    # Again: nothing twice.
    before = st.seq()
    assert expire_sweep(st)["status"] == "nothing_to_do"
    assert st.writes(before) == []
    assert verify(st.rt.ledger).ok
