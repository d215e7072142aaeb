"""Temporary-access expiry (issue 7, the "Expiry" runbook), every 15 minutes:
read → decide → apply → record; and the extension of one grant through the approval gate.

Every grant due by ``now`` is revoked (the project role and its IdP group, the module, or the
whole membership when nothing else remains — by the offboarding runbook, as a subflow),
verified, marked ``expired`` and its ticket commented on; a grant
that expired while nothing ran is revoked at the next sweep and the record says how late.
Reminders go to the person and the sponsor ``reminder_days`` (policy; default 3 and 1) before
the end, each once, with an Extend button (the intake starts :func:`extend_grant`). Project
access of temporary grantees that neither an active grant nor an IdP mapping explains is
reported. The flow only composes: ``domain.expiry`` decides, ``tasks.expire`` writes, the sweep
itself is ``flows.sweep``'s.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from approvals.gate import PlanSummary
from domain.expiry import ExpiryAction, ExpiryKind, Extension, drift, expiry_actions
from domain.plan import Options, Reason, make_offboarding_plan, receiver_problem
from domain.runbook import call_runbook
from flows.offboard import offboard, preapprove
from flows.runbook import ON_FAILURE, ask, begin, run_id
from flows.sweep import Found, Sweeper, SweepRequest, apply_sweep, end, unapplied
from tasks.cases import audit_seq
from tasks.expire import (
    apply_action,
    expiry_case,
    extend_end,
    extension_approval,
    read_grant,
    read_grants,
    record_extension_denied,
    record_membership_expiry,
)
from tasks.offboard import take_inventory
from tasks.runtime import Runtime
from tasks.sweeps import Applied, clock

# Who asks for the offboarding of an expired membership (the ledger's requester of its case).
EXPIRY_REQUESTER = "handover:expiry-sweep"


def offboard_expired(
    rt: Runtime, action: ExpiryAction, *, case_id: int, flow_run_id: str
) -> Applied:
    """An expired membership goes the way of every leaver: the offboarding runbook as a subflow
    (reason ``contract_end``: content transferred — to the sponsor when they can receive it,
    else the manager or each project's admin —, keys rotated, a sole admin replaced, the IdP
    first), pre-approved by the grant's end (``expired_grant`` on its case: the access was
    approved until then). Its outcome is recorded on the grants once it is done; blocked or
    failed, the grants stay active and the next sweep continues the same case."""
    grants_ = ",".join(map(str, action.grant_ids))
    receiver: str | None = action.sponsor or None
    inv = take_inventory(rt, action.subject, receiver=receiver)
    if receiver and (receiver == action.subject or receiver_problem(inv, receiver, inv.taken_at)):
        receiver = None  # the sponsor cannot receive content: the offboarding's defaults do
        inv = take_inventory(rt, action.subject, receiver=None)
    opts = Options(
        reason=Reason.CONTRACT_END,
        receiver=receiver,
        requester=EXPIRY_REQUESTER,
        ticket=action.ticket,
    )
    plan = make_offboarding_plan(inv, opts)
    if plan.steps and not plan.blockers:
        preapprove(
            rt,
            plan,
            reason=Reason.CONTRACT_END.value,
            requester=EXPIRY_REQUESTER,
            approvers=[],
            ticket=action.ticket,
            expired_grant=f"grant {grants_} ended {action.ends_at.isoformat(timespec='minutes')}",
        )
    out = call_runbook(
        offboard,
        email=action.subject,
        reason=Reason.CONTRACT_END.value,
        receiver=receiver,
        requester=EXPIRY_REQUESTER,
        ticket=action.ticket,
    )
    return record_membership_expiry(rt, action, out, case_id=case_id, flow_run_id=flow_run_id)


def apply_expiry(rt: Runtime, action: ExpiryAction, *, case_id: int, flow_run_id: str) -> Applied:
    """One action of the sweep: a membership removal by the offboarding runbook, the rest by
    :func:`tasks.expire.apply_action`."""
    if action.kind is ExpiryKind.REMOVE_MEMBER:
        return offboard_expired(rt, action, case_id=case_id, flow_run_id=flow_run_id)
    return apply_action(rt, action, case_id=case_id, flow_run_id=flow_run_id)


EXPIRY: Sweeper[ExpiryAction] = Sweeper(
    name="expiry",
    artifact="access-expiry",
    description="Temporary-access expiry: actions of this sweep",
    target=lambda a: a.target,
    facts=lambda a: [a.kind.value, a.key, a.reminder],
    columns=lambda a: {
        "person": a.subject,
        "access": a.what,
        "grant": ", ".join(map(str, a.grant_ids)),
        "ends": a.ends_at.isoformat(timespec="minutes"),
    },
    apply=apply_expiry,
    reported="drift (reported)",
)


@flow(name="expire-access", log_prints=False, on_failure=ON_FAILURE)
def expire_access(now: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Sweep the temporary grants once, at ``now`` (ISO 8601; :class:`flows.sweep.SweepRequest`:
    pass the org's time when its clock is not the orchestrator's); ``dry_run`` decides only.

    Returns:
        The sweep's outcome (:func:`flows.sweep.apply_sweep`): ``effects`` by ``kind:target``,
        ``verification`` of each revocation (pass/fail), and as ``warnings`` the drift (access
        nothing explains, reported, not changed). A failed or blocked sweep ends Failed.
    """
    req = SweepRequest(now=now, dry_run=dry_run)
    rt = begin()
    at = req.now or clock(rt)
    reminder_days = rt.policy.reminder_days
    snap = read_grants(rt)
    actions = (
        []
        if snap.blocker
        else expiry_actions(snap.grants, at, reminder_days=reminder_days, active_access=snap.access)
    )
    warnings = drift(snap.grants, snap.access, revoked=actions) + snap.warnings()
    found = Found(at, actions, warnings, snap.blocker)
    if found.blocker or req.dry_run:
        return unapplied(rt, EXPIRY, found, dry_run=req.dry_run)
    return apply_sweep(rt, EXPIRY, found, case_id=expiry_case(rt, create=bool(actions)))


# ---------------------------------------------------------------------------- extension
class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant_id: int = Field(ge=1)
    days: int = Field(30, ge=1, le=365)
    requester: str = Field("operator", min_length=1, max_length=320)
    dry_run: bool = False


@flow(name="extend-grant", log_prints=False, on_failure=ON_FAILURE)
def extend_grant(
    grant_id: int, days: int = 30, requester: str = "operator", dry_run: bool = False
) -> dict[str, Any]:
    """Extend one temporary grant by ``days`` after an approval (runbook ``extend``).

    Approved → the same grant's end moves (status stays active, ``extended_from`` keeps the old
    end, reminders start afresh for the new end); denied → unchanged. A second extension run
    for the same end (a double click) finds the grant already moved and does nothing.

    Args:
        grant_id: the ledger's grant.
        days: how much longer, from the current end.
        requester: who asked (who clicked Extend); never their own approver.
        dry_run: plan only; nothing is written anywhere.

    Returns:
        ``run_id``, ``status`` (done | planned | denied | blocked | nothing_to_do), ``plan``,
        ``effects``, ``verification``, ``warnings``, ``audit_seq``, ``grant`` (the grant after
        the run) and, when asked, ``approval``. A blocked run ends Failed, a denied one
        Completed named Denied.
    """
    req = ExtendRequest(grant_id=grant_id, days=days, requester=requester, dry_run=dry_run)
    rt = begin()
    ext = Extension(grant=read_grant(rt, req.grant_id), days=req.days, requester=req.requester)
    if ext.blockers:
        return _extension(rt, ext, "blocked")
    if req.dry_run:
        return _extension(rt, ext, "planned")
    res = ask(
        rt,
        extension_approval(rt, ext),
        plan_hash=ext.hash,
        summary=PlanSummary({"extend": 1}, lines=[ext.summary()], org=rt.settings.org_name),
        ticket=ext.grant.ticket,
    )
    if not res.approved:
        record_extension_denied(rt, ext, state=res.state.value, flow_run_id=run_id())
        return _extension(rt, ext, "denied", approval=res.approval.id)
    moved = extend_end(rt, ext, approvers=res.approved_by, flow_run_id=run_id())
    effects = {ext.step_id: moved.effect}
    if not moved.verification:  # another run (a second click) moved the end first
        return _extension(rt, ext, "nothing_to_do", effects, approval=res.approval.id)
    checks = {ext.step_id: moved.verification}
    return _extension(rt, ext, "done", effects, checks, approval=res.approval.id)


def _extension(
    rt: Runtime,
    ext: Extension,
    status: str,
    effects: dict[str, str] | None = None,
    verification: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The extension's outcome, with the grant as it is after the run, in its Prefect state."""
    assert ext.grant.id is not None
    return end(
        {
            "run_id": run_id(),
            "status": status,
            "plan": ext.plan(),
            "effects": effects or {},
            "verification": verification or {},
            "warnings": [],
            "audit_seq": audit_seq(rt),
            "grant": read_grant(rt, ext.grant.id).model_dump(mode="json"),
            **extra,
        }
    )
