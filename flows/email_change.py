"""The email-change runbook (seed 001): Amplitude emails are immutable identifiers, so a new
address is invited with the same org role, project roles, groups and modules; once the person
has accepted (and signed in within 30 days: the receiver rule), all content is transferred and
the old address is removed.

One case per old address. The first run plans everything, passes the gate (runbook "change")
and invites; while the invitation is pending it stops with ``waiting_for_acceptance``. A re-run
after acceptance continues without asking again (what is left is part of the approved plan),
and a re-run after the end does nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.change import ChangeKind, make_console_email_change_plan, make_email_change_plan
from domain.models import Email, Member
from flows.change import approval_context, open_change_case
from flows.runbook import ON_FAILURE, begin, outcome, run_plan
from tasks.backend import roles_by_api
from tasks.cases import open_case_of
from tasks.change import (
    count_assets,
    read_access,
    read_idp_identity,
    verify_console_email_change,
    verify_email_change,
)
from tasks.runtime import Runtime


class EmailChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old: Email
    new: Email
    ticket: str = Field("", max_length=64, pattern=r"^([A-Z][A-Z0-9]+-\d+)?$")
    dry_run: bool = False
    requester: str = Field("operator", max_length=320)

    @model_validator(mode="after")
    def _distinct(self) -> EmailChangeRequest:
        if self.old == self.new:
            raise ValueError("the new address is the old one")
        return self


def _joined(old: Member | None) -> Member:
    """The old member, which a plan without blockers always has."""
    assert old is not None, "an email change without the old member is invalid"
    return old


@flow(name="email-change", log_prints=False, on_failure=ON_FAILURE)
def change_email(
    old: str,
    new: str,
    ticket: str = "",
    dry_run: bool = False,
    requester: str = "operator",
) -> dict[str, Any]:
    """Move one person from ``old`` to ``new`` (see the module docstring).

    Returns:
        INTERFACES.md ``--json``; status done | planned | waiting_for_acceptance | denied |
        blocked | failed | nothing_to_do | invalid.
    """
    req = EmailChangeRequest(old=old, new=new, ticket=ticket, dry_run=dry_run, requester=requester)
    rt = begin()
    members, groups, projects = read_access(rt, [req.old, req.new])
    old_m, new_m = members[req.old], members[req.new]
    if not roles_by_api(rt):  # SCIM only: people copy the access and move the content
        return _in_console(rt, req, old_m, new_m)
    plan = make_email_change_plan(
        old_m,
        new_m,
        groups,
        projects,
        old_email=req.old,
        new_email=req.new,
        now=rt.clock(),
        owned_assets=count_assets(rt, req.old) if old_m is not None else 0,
        old_idp=read_idp_identity(rt, req.old) if old_m is not None else ("", []),
    )
    if plan.blockers:
        return outcome(
            rt, plan, status="invalid" if old_m is None or old_m.status != "joined" else "blocked"
        )
    if req.dry_run:
        return outcome(
            rt, plan, status="waiting_for_acceptance" if plan.waiting_for_acceptance else "planned"
        )
    waiting = plan.waiting_for_acceptance
    if plan.is_noop and not waiting and open_case_of(rt, "email_change", req.old) is None:
        return outcome(rt, plan, status="nothing_to_do")
    finishing = old_m is not None and new_m is not None and new_m.status == "joined"
    out = run_plan(
        rt,
        plan,
        case=open_change_case(rt, plan, requester=req.requester, ticket=req.ticket),
        requester=req.requester,
        approval=approval_context(rt, plan, requester=req.requester, reason="email_change"),
        verify=lambda _: verify_email_change(rt, _joined(old_m), req.new),
        close=finishing or old_m is None,
        # Before the invitee has joined, only the invitation: the rest of the approved plan
        # (groups, transfer, removal) waits for the re-run after acceptance.
        now=None if finishing else (lambda s: s.kind is ChangeKind.INVITE_MEMBER),
    )
    if isinstance(out, dict) and out["status"] == "waiting_for_acceptance":
        out["message"] = (
            f"{req.new} has been invited and has not joined yet: once they accept the "
            f"invitation and sign in, run the same command again to transfer {req.old}'s "
            "content and remove the old address"
        )
    return out


def _in_console(
    rt: Runtime, req: EmailChangeRequest, old_m: Member | None, new_m: Member | None
) -> dict[str, Any]:
    """The email change on an org that cannot read roles or content by API: one run that
    invites, waits on the two tasks (the transfer's stays open until the new address has
    joined), takes the old address out of its IdP groups and removes it."""
    plan = make_console_email_change_plan(
        old_m,
        new_m,
        old_email=req.old,
        new_email=req.new,
        old_idp=read_idp_identity(rt, req.old) if old_m is not None else ("", []),
    )
    if plan.blockers:
        return outcome(rt, plan, status="invalid")
    if req.dry_run:
        return outcome(rt, plan, status="planned")
    if plan.is_noop and open_case_of(rt, "email_change", req.old) is None:
        return outcome(rt, plan, status="nothing_to_do")
    case = open_change_case(rt, plan, requester=req.requester, ticket=req.ticket)
    return run_plan(
        rt,
        plan,
        case=case,
        requester=req.requester,
        approval=approval_context(rt, plan, requester=req.requester, reason="email_change"),
        verify=lambda p: verify_console_email_change(rt, p, case_id=case.id),
    )
