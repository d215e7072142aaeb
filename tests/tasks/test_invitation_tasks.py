"""Invitation hygiene's tasks (``tasks.invitations``) called as functions (``.fn``) over the
demo sandbox: what the ledger remembers of earlier sweeps, and each action applied once —
resend (and tell the inviter), revoke (and comment on the ticket), record an acceptance.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from domain.invitations import Action, ActionKind, hygiene_actions, invitation_key
from ledger.audit import records
from tasks.invitations import (
    apply_action,
    read_invitations,
    recall,
    remember_pending,
    tickets_in,
)
from tasks.sweeps import Applied
from tests.flows.offboard_stack import ADMIN, OffboardStack
from tests.flows.sweep_stack import onboarding_case, sandbox_now
from tests.tasks.sandbox_runtime import Without, demo_stack

pytestmark = pytest.mark.slow

NEW = "new.hire@acme.com"
SLOW = "slow.accept@partner.io"
EXPIRED = "expired.invite@partner.io"
INVITER = "it-admin@acme.com"

stack = pytest.fixture(name="stack")(demo_stack)


def actions(st: OffboardStack) -> dict[str, Action]:
    """What a first sweep decides now, by invitee."""
    snap = read_invitations.fn(st.rt)
    found = hygiene_actions(snap.invitations, sandbox_now(st.url), members=snap.members)
    return {a.email: a for a in found}


def case_id(st: OffboardStack) -> int:
    memory = recall.fn(st.rt, create=True)
    assert memory.case_id is not None
    return memory.case_id


def audited(st: OffboardStack, action: str, subject: str) -> list[Any]:
    return [r for r in records(st.rt.ledger, subject=subject) if r.action == action]


def test_tickets_in_a_note() -> None:
    assert tickets_in("ticket: acc-12, see also OPS-3 and SOW-2211") == ["ACC-12", "OPS-3"]
    assert tickets_in("") == []


def test_read_invitations_and_who_has_joined(stack: OffboardStack) -> None:
    snap = read_invitations.fn(stack.rt)
    assert snap.blocker == ""
    assert {SLOW, EXPIRED, NEW} <= {i.email for i in snap.invitations}
    assert "jon.smith@acme.com" in snap.members and SLOW not in snap.members


def test_without_the_capability_a_person_reviews_the_invitations(stack: OffboardStack) -> None:
    """No invitations API (SCIM only): nothing is read, and the sweep hands the review to a
    person (``console_review``) rather than blocking."""
    rt = dataclasses.replace(stack.rt, org=Without(stack.rt.org, "list_invitations"))
    snap = read_invitations.fn(rt)
    assert snap.invitations == [] and snap.blocker == "" and snap.by_api is False


def test_recall_opens_the_case_only_when_asked_and_remembers_pending(
    stack: OffboardStack,
) -> None:
    rt = stack.rt
    empty = recall.fn(rt, create=False)
    assert empty.case_id is None and empty.seen_pending == frozenset()
    memory = recall.fn(rt, create=True)
    assert memory.case_id is not None
    invitations = read_invitations.fn(rt).invitations
    remember_pending.fn(rt, invitations, memory)
    pending = {invitation_key(i) for i in invitations if i.state == "pending"}
    again = recall.fn(rt, create=False)
    assert again.case_id == memory.case_id and again.seen_pending == pending


def test_a_resend_happens_once_and_the_inviter_is_told_once(stack: OffboardStack) -> None:
    st = stack
    resend = actions(st)[SLOW]
    assert resend.kind is ActionKind.RESEND
    cid = case_id(st)
    # In the demo seed the inviter is not on Slack: told in #it-access, naming them.
    did = apply_action.fn(st.rt, resend, case_id=cid, flow_run_id="run-1")
    assert did == Applied("updated", [f"told {INVITER} in #it-access (not on Slack)"])
    assert len(audited(st, "invitation.resent", SLOW)) == 1
    (told,) = audited(st, "invitation.requester_notified", SLOW)
    assert (told.effect, told.on_behalf_of) == ("posted(#it-access)", INVITER)
    assert apply_action.fn(st.rt, resend, case_id=cid, flow_run_id="run-2") == Applied(
        "noop(resent already)"
    )
    assert recall.fn(st.rt, create=False).resent == {resend.key}
    assert len(audited(st, "invitation.resent", SLOW)) == 1


def test_a_revocation_happens_once_and_its_ticket_is_told_once(stack: OffboardStack) -> None:
    st = stack
    ticket = onboarding_case(st.rt, EXPIRED)
    revoke = actions(st)[EXPIRED]
    assert revoke.kind is ActionKind.REVOKE
    cid = case_id(st)
    did = apply_action.fn(st.rt, revoke, case_id=cid, flow_run_id="run-1")
    assert did == Applied("deleted", [f"commented on {ticket}"], ticket=ticket)
    (rec,) = audited(st, "invitation.revoked", EXPIRED)
    assert rec.ticket == ticket
    again = apply_action.fn(st.rt, revoke, case_id=cid, flow_run_id="run-2")
    assert again == Applied("noop(revoked already)", ticket=ticket)
    issue = st.get(f"/_sandbox/jira/issues/{ticket}")
    assert sum(EXPIRED in c and "revoked" in c for c in issue["comments"]) == 1


def test_a_revocation_with_no_ticket_known_says_so(stack: OffboardStack) -> None:
    revoke = actions(stack)[EXPIRED]
    did = apply_action.fn(stack.rt, revoke, case_id=case_id(stack), flow_run_id="run-1")
    assert did == Applied("deleted", ["no ticket known"])


def test_an_acceptance_is_recorded_once(stack: OffboardStack) -> None:
    st, rt = stack, stack.rt
    cid = case_id(st)
    remember_pending.fn(rt, read_invitations.fn(rt).invitations, recall.fn(rt, create=False))
    r = httpx.post(f"{st.url}/_sandbox/members/{NEW}/accept", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    memory = recall.fn(rt, create=False)
    snap = read_invitations.fn(rt)
    (accepted,) = [
        a
        for a in hygiene_actions(
            snap.invitations, sandbox_now(st.url), seen_pending=memory.seen_pending
        )
        if a.kind is ActionKind.RECORD_ACCEPTED and a.email == NEW
    ]
    assert apply_action.fn(rt, accepted, case_id=cid, flow_run_id="run-1") == Applied("recorded")
    assert apply_action.fn(rt, accepted, case_id=cid, flow_run_id="run-2") == Applied(
        "noop(recorded already)"
    )
    assert len(audited(st, "invitation.accepted", NEW)) == 1
    assert recall.fn(rt, create=False).recorded == {accepted.key}
