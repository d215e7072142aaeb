"""Expiry's tasks (``tasks.expire``) called as functions (``.fn``) over the demo sandbox: each
action is applied once, verified, recorded and commented on; a revocation that does not show is
never marked done; an extension moves the same grant once. Failures are fakes over the real
connectors (``tests.tasks.sandbox_runtime``) in a replaced runtime.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from connectors.errors import ConnectorError
from domain.expiry import ExpiryAction, ExpiryKind, Extension, expiry_actions, utc
from domain.models import Role
from domain.records import Grant, GrantStatus
from ledger.audit import records
from ledger.cases import done_steps
from ledger.grants import grants, record_grant
from tasks.expire import (
    apply_action,
    expiry_case,
    extend_end,
    extension_approval,
    read_grant,
    read_grants,
    record_extension_denied,
)
from tasks.sweeps import Applied
from tests.flows.offboard_stack import OffboardStack
from tests.flows.sweep_stack import CARLA, SPONSOR, sandbox_now, temporary_staging_manager
from tests.tasks.sandbox_runtime import Down, Ignoring, demo_stack

pytestmark = pytest.mark.slow

stack = pytest.fixture(name="stack")(demo_stack)


def the_grant(st: OffboardStack, gid: int | None) -> Grant:
    (g,) = [g for g in grants(st.rt.ledger) if g.id == gid]
    return g


def action_at(st: OffboardStack, now: datetime) -> ExpiryAction:
    """The one action the sweep decides at ``now`` (Carla's grant)."""
    member = st.rt.org.get_member(CARLA)
    assert member is not None
    (action,) = expiry_actions(grants(st.rt.ledger), now, active_access={CARLA: member})
    return action


def staging(st: OffboardStack) -> list[Any]:
    return [p for p in st.rt.org.effective_access(CARLA) if p.project == "Staging"]  # type: ignore[union-attr]


def comments(st: OffboardStack, ticket: str) -> list[str]:
    return st.get(f"/_sandbox/jira/issues/{ticket}")["comments"]  # type: ignore[no-any-return]


def audited(st: OffboardStack, action: str) -> list[Any]:
    return [r for r in records(st.rt.ledger, subject=CARLA) if r.action == action]


def test_read_grants_reads_each_grantees_access(stack: OffboardStack) -> None:
    now = sandbox_now(stack.url)
    temporary_staging_manager(stack.rt, now)
    ghost = Grant(subject="ghost@agency.io", module="experiment", start=now, end=now)
    record_grant(stack.rt.ledger, ghost)
    snap = read_grants.fn(stack.rt)
    assert snap.blocker == ""
    assert {g.subject for g in snap.grants} == {CARLA, "ghost@agency.io"}
    assert set(snap.access) == {CARLA}  # not a member: missing, never removed
    assert {p.project for p in snap.access[CARLA].projects} >= {"Staging", "Production"}


def test_read_grants_is_blocked_when_the_org_cannot_answer(stack: OffboardStack) -> None:
    temporary_staging_manager(stack.rt, sandbox_now(stack.url))
    rt = dataclasses.replace(stack.rt, org=Down(stack.rt.org, "get_member"))
    snap = read_grants.fn(rt)
    assert snap.blocker.startswith("the org could not say who has what: org: get_member failed")
    assert snap.access == {} and len(snap.grants) == 1


def test_a_due_grant_is_revoked_once_verified_and_commented(stack: OffboardStack) -> None:
    st, now = stack, sandbox_now(stack.url)
    g = temporary_staging_manager(st.rt, now - timedelta(days=3))  # ended a day ago
    action = action_at(st, now)
    assert action.kind is ExpiryKind.REVOKE_ROLE
    assert expiry_case(st.rt, create=False) is None
    case_id = expiry_case(st.rt, create=True)
    assert case_id is not None

    did = apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-1")
    assert did == Applied("deleted", [f"commented on {g.ticket}"], "pass")
    assert staging(st) == []
    assert the_grant(st, g.id).status is GrantStatus.EXPIRED
    (expired,) = audited(st, "grant.expired")
    assert expired.after is not None and expired.after["late_by"].startswith("1 day")
    assert (expired.ticket, expired.flow_run_id) == (g.ticket, "run-1")
    assert len(audited(st, "ticket.commented")) == 1
    assert sum("revoked the temporary access" in c for c in comments(st, g.ticket)) == 1

    # Again (a second sweep, or a re-run after a crash): nothing twice.
    again = apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-2")
    assert again == Applied("noop(revoked already)", [], "pass")
    assert sum("revoked the temporary access" in c for c in comments(st, g.ticket)) == 1
    assert len(audited(st, "grant.expired")) == 1


def test_a_revocation_that_does_not_show_is_not_marked_done(stack: OffboardStack) -> None:
    st, now = stack, sandbox_now(stack.url)
    g = temporary_staging_manager(st.rt, now - timedelta(days=3))
    action = action_at(st, now)
    case_id = expiry_case(st.rt, create=True)
    assert case_id is not None
    rt = dataclasses.replace(st.rt, org=Ignoring(st.rt.org, "set_project_role"))
    with pytest.raises(ConnectorError, match="revocation not verified"):
        apply_action.fn(rt, action, case_id=case_id, flow_run_id="run-1")
    assert the_grant(st, g.id).status is GrantStatus.ACTIVE  # the next sweep tries again
    assert done_steps(st.rt.ledger, case_id) == {}
    (failed,) = audited(st, "grant.revoke_failed")
    assert failed.effect == "fail(still through individual)"
    assert comments(st, g.ticket) == []


def test_a_comment_jira_refuses_is_a_note_and_tried_again(stack: OffboardStack) -> None:
    st, now = stack, sandbox_now(stack.url)
    g = temporary_staging_manager(st.rt, now - timedelta(days=3))
    action = action_at(st, now)
    case_id = expiry_case(st.rt, create=True)
    assert case_id is not None
    rt = dataclasses.replace(st.rt, tickets=Down(st.rt.tickets, "comment", system="jira"))
    did = apply_action.fn(rt, action, case_id=case_id, flow_run_id="run-1")
    assert (did.effect, did.verification) == ("deleted", "pass")
    assert did.notes == [f"could not comment on {g.ticket}: jira: comment failed: 503 unavailable"]
    again = apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-2")
    assert again == Applied("noop(revoked already)", [f"commented on {g.ticket}"], "pass")
    assert sum("revoked the temporary access" in c for c in comments(st, g.ticket)) == 1


def test_a_reminder_goes_to_the_person_and_the_sponsor_once(stack: OffboardStack) -> None:
    st, now = stack, sandbox_now(stack.url)
    g = temporary_staging_manager(st.rt, now)  # ends in 2 days: the 3-day reminder
    action = action_at(st, now)
    assert (action.kind, action.reminder) == (ExpiryKind.REMIND, "3d")
    case_id = expiry_case(st.rt, create=True)
    assert case_id is not None
    did = apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-1")
    assert did == Applied("sent", [f"told {CARLA}", f"told {SPONSOR}"])
    assert the_grant(st, g.id).last_reminder == "3d"
    assert staging(st)[0].role is Role.MANAGER  # nothing revoked
    assert apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-2") == Applied(
        "noop(reminded already)"
    )
    assert len([m for m in st.dms(SPONSOR) if CARLA in m["text"]]) == 1


# ---------------------------------------------------------------------------- extension
def test_read_grant_refuses_an_unknown_grant(stack: OffboardStack) -> None:
    with pytest.raises(ValueError, match="no grant 999"):
        read_grant.fn(stack.rt, 999)


def test_the_approval_of_an_extension_knows_the_project_and_the_manager(
    stack: OffboardStack,
) -> None:
    now = sandbox_now(stack.url)
    g = temporary_staging_manager(stack.rt, now)
    ctx = extension_approval.fn(stack.rt, Extension(grant=g, days=30, requester=CARLA))
    assert (ctx.runbook, ctx.subject, ctx.requester, ctx.reason) == (
        "extend",
        CARLA,
        CARLA,
        "extension",
    )
    assert ctx.subject_manager == SPONSOR
    assert ctx.production_roles == () and ctx.modules == ()
    assert "raj.admin@acme.com" in ctx.project_admins
    prod = g.model_copy(update={"project": "Production"})
    assert extension_approval.fn(
        stack.rt, Extension(grant=prod, days=30, requester=CARLA)
    ).production_roles == ("manager",)


def test_an_extension_moves_the_same_grant_once(stack: OffboardStack) -> None:
    st, now = stack, sandbox_now(stack.url)
    g = temporary_staging_manager(st.rt, now)
    ext = Extension(grant=g, days=30, requester=CARLA)
    did = extend_end.fn(st.rt, ext, approvers=[SPONSOR], flow_run_id="run-1")
    assert did == Applied("updated", [f"commented on {g.ticket}"], "pass")
    moved = the_grant(st, g.id)
    assert utc(moved.end) == utc(g.end) + timedelta(days=30)
    assert moved.extended_from is not None and utc(moved.extended_from) == utc(g.end)
    assert moved.status is GrantStatus.ACTIVE and moved.last_reminder == ""
    (rec,) = audited(st, "grant.extended")
    assert (rec.on_behalf_of, rec.plan_hash, rec.target) == (SPONSOR, ext.hash, f"grant {g.id}")
    # A second click's run, approved too: the grant moved meanwhile, nothing is done.
    assert extend_end.fn(st.rt, ext, approvers=[SPONSOR], flow_run_id="run-2") == Applied(
        "noop(grant changed meanwhile)"
    )
    assert utc(the_grant(st, g.id).end) == utc(g.end) + timedelta(days=30)
    assert sum("extended the temporary access" in c for c in comments(st, g.ticket)) == 1


def test_a_refused_extension_is_audited(stack: OffboardStack) -> None:
    g = temporary_staging_manager(stack.rt, sandbox_now(stack.url))
    record_extension_denied.fn(
        stack.rt, Extension(grant=g, days=30, requester=CARLA), state="denied", flow_run_id="run-1"
    )
    (rec,) = audited(stack, "grant.extension_denied")
    assert (rec.effect, rec.target, rec.ticket) == ("denied", f"grant {g.id}", g.ticket)


GROUP = "amplitude-project-viewers-production"


def idp_granted_viewer(st: OffboardStack, now: datetime) -> tuple[Grant, ExpiryAction]:
    """A member whose Production Viewer role comes only through its mapped IdP group, with a
    temporary grant of it that ended an hour ago; the sweep's action for it."""
    own = {"individual", f"group:{GROUP}"}
    org: Any = st.rt.org
    who = next(
        m.email
        for m in org.list_members()
        for p in org.effective_access(m.email)
        if p.project == "Production" and f"group:{GROUP}" in p.sources and set(p.sources) <= own
    )
    org.set_project_role(who, "Production", None)
    member = st.rt.org.get_member(who)
    assert member is not None
    sources = [p.sources for p in member.projects if p.project == "Production"]
    assert sources == [(f"group:{GROUP}",)]
    g = record_grant(
        st.rt.ledger,
        Grant(
            subject=who,
            project="Production",
            role="viewer",
            start=now - timedelta(days=3),
            end=now - timedelta(hours=1),
            sponsor=SPONSOR,
        ),
    )
    (action,) = expiry_actions(grants(st.rt.ledger), now, active_access={who: member})
    assert action.kind is ExpiryKind.REVOKE_ROLE
    return g, action


def test_an_idp_granted_role_is_revoked_in_the_idp(stack: OffboardStack) -> None:
    """An IdP-managed grant (a role through its mapped IdP group) is revoked by taking the
    person out of that group — the IdP wins (seed 003) — and verified in the org."""
    st = stack
    g, action = idp_granted_viewer(st, sandbox_now(st.url))
    case_id = expiry_case(st.rt, create=True)
    assert case_id is not None

    did = apply_action.fn(st.rt, action, case_id=case_id, flow_run_id="run-1")
    assert f"left IdP group {GROUP}" in did.effect, did
    assert did.verification == "pass", did
    user = st.rt.idp.find_user(g.subject)
    assert user is not None and GROUP not in {x.name for x in st.rt.idp.groups_of(user.id)}
    after = st.rt.org.get_member(g.subject)
    assert after is not None, "the rest of their access stays"
    assert "Production" not in {p.project for p in after.projects}
    assert the_grant(st, g.id).status is GrantStatus.EXPIRED


def test_a_role_its_idp_group_still_gives_is_never_reported_revoked(stack: OffboardStack) -> None:
    """The IdP acknowledges the group removal but drops it: the role still comes through the
    grant's own group, so the revocation is not verified and the grant stays active."""
    st = stack
    g, action = idp_granted_viewer(st, sandbox_now(st.url))
    rt = dataclasses.replace(st.rt, idp=Ignoring(st.rt.idp, "remove_from_group"))
    case_id = expiry_case(rt, create=True)
    assert case_id is not None
    with pytest.raises(ConnectorError, match=f"still through group:{GROUP}"):
        apply_action.fn(rt, action, case_id=case_id, flow_run_id="run-1")
    assert the_grant(st, g.id).status is GrantStatus.ACTIVE
