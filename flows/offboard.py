"""The leaver runbook (seeds 004, 001, 002) as a Prefect flow:
resolve → inventory → plan → approve → apply → verify → record.

The flow only composes (STYLE.md point 8): tasks do the I/O, ``domain.plan`` decides, the gate
approves. A run is a *case*: killed and run again, it finds its case, skips what is done and
converges. When a step keeps failing it stops there — transfers come before removal, so a
normal offboarding never stops between "removed" and "transferred" — and says exactly what is
done and what is not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.models import Email
from domain.plan import Inventory, Options, Plan, Reason, make_offboarding_plan
from domain.policy import ApprovalContext
from domain.runbook import Case, call_runbook
from domain.valves import Valve
from flows.runbook import (
    ON_FAILURE,
    Outcome,
    Standing,
    begin,
    block,
    finish,
    outcome,
    run_plan,
)
from tasks.cases import (
    REFUSED,
    approve_case,
    file_ticket,
    finished_case,
    open_case_of,
    open_run_case,
)
from tasks.offboard import is_member, review_approvers, take_inventory, verify_offboarding
from tasks.runtime import Runtime
from tasks.triggers import check_trigger, valves_for

RUNBOOK = "offboard"
# How old a bulk run's inventory of a leaver may be for the leaver's run to apply the batch's
# approved plan without reading the systems again: a batch approved at once (the policy's
# rule for HR) applies at once; after a longer approval each leaver's run reads afresh.
FRESH_READ = timedelta(minutes=15)


class OffboardRequest(BaseModel):
    """What starting an offboarding takes (validated before anything is read or written)."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    reason: Reason
    ticket: str = Field("", max_length=64, pattern=r"^([A-Z][A-Z0-9]+-\d+)?$")
    emergency: bool = False
    receiver: Email | None = None
    keep_projects: list[str] = Field(default_factory=list, max_length=50)
    dry_run: bool = False
    requester: str = Field("operator", max_length=320)
    # An access review's approval and its item about this person (ledger.reviews): both or none.
    review_approval: str = Field("", max_length=40)
    review_item: str = Field("", max_length=80)
    org: str = Field("", max_length=31)  # one org only ("": the main one, then every other)
    # A person's recorded emergency declaration (ledger.triggers; handover offboard --emergency).
    declaration: str = Field("", max_length=40)

    @property
    def runbook(self) -> str:
        """The case's runbook: one case per person and org."""
        return f"{RUNBOOK}@{self.org}" if self.org else RUNBOOK

    @field_validator("keep_projects", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v  # the flow's parameter default

    @field_validator("keep_projects")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if any(not p.strip() or len(p) > 200 for p in v):
            raise ValueError("project names must be non-empty (at most 200 characters)")
        return [p.strip() for p in v]

    @model_validator(mode="after")
    def _consistent(self) -> OffboardRequest:
        if self.emergency and self.reason is not Reason.SECURITY_INCIDENT:
            raise ValueError("--emergency goes with reason security_incident")
        if self.reason is Reason.SECURITY_INCIDENT and not self.emergency:
            raise ValueError("reason security_incident needs --emergency (lock out first)")
        if self.keep_projects and self.reason is not Reason.ROLE_CHANGE:
            raise ValueError("--keep-project only applies to reason role_change")
        if self.receiver and self.receiver == self.email:
            raise ValueError("the receiver cannot be the person leaving")
        if bool(self.review_approval) != bool(self.review_item):
            raise ValueError(
                "a review approval stands only with the review item it approved "
                "(review_approval and review_item together)"
            )
        if self.review_approval and self.emergency:
            raise ValueError("an emergency needs no review approval")
        if self.declaration and not self.emergency:
            raise ValueError("an emergency declaration goes with --emergency")
        return self

    def options(self) -> Options:
        return Options(
            reason=self.reason,
            emergency=self.emergency,
            receiver=self.receiver,
            keep_projects=tuple(self.keep_projects),
            requester=self.requester,
            ticket=self.ticket,
        )

    def approval(self, inv: Inventory, valves: list[Valve]) -> ApprovalContext:
        """What the approval policy decides on (a safety valve asks the quorum rule)."""
        return ApprovalContext(
            runbook=RUNBOOK,
            subject=self.email,
            requester=self.requester,
            reason=self.reason.value,
            emergency=self.emergency,
            subject_manager=inv.roster.manager if inv.roster else None,
            valves=tuple(v.name for v in valves),
        )

    def standing(self, rt: Runtime, valves: list[Valve]) -> Standing | None:
        """An approved access review that stands for the gate, if one is named (never when a
        safety valve holds: then only the quorum does)."""
        if not self.review_approval or valves:
            return None
        approval_id, item, email, org = (
            self.review_approval,
            self.review_item,
            self.email,
            self.org,
        )
        return Standing(
            approval_id,
            lambda case: review_approvers(
                rt, approval_id, item, email=email, org=org, case_id=case.id
            ),
        )


def _open_case(rt: Runtime, req: OffboardRequest) -> Case:
    """The offboarding's case (a resumed one if a run died), with its ticket filed once."""
    case = open_run_case(
        rt,
        runbook=req.runbook,
        subject=req.email,
        reason=req.reason.value,
        requester=req.requester,
        ticket=req.ticket,
    )
    return file_ticket(
        rt,
        case,
        project="IT",
        issue_type="Offboarding",
        summary=f"Offboard {req.email} ({req.reason.value})",
        description=f"email: {req.email}\nreason: {req.reason.value}",
    )


def preapprove(
    rt: Runtime,
    plan: Plan,
    *,
    reason: str,
    requester: str,
    approvers: list[str],
    ticket: str = "",
    inventory: Inventory | None = None,
    **standing: str,
) -> None:
    """Record on the person's offboarding case that this plan is approved by an approval given
    elsewhere (``standing``: a bulk run's ``batch_approval``, an expired grant's
    ``expired_grant``); the offboarding run started next continues it without asking, and
    takes ``inventory`` (what the plan was made of) instead of reading the systems again
    while it is fresh (:data:`FRESH_READ`). An open case whose approved plan already covers
    these steps (an interrupted earlier run) is left as it is: that run's successor continues
    it."""
    case = open_case_of(rt, RUNBOOK, plan.subject)
    earlier = case.approved_plan if case is not None else None
    if earlier is not None and earlier.covers(plan):
        return
    if case is None:
        case = open_run_case(
            rt,
            runbook=RUNBOOK,
            subject=plan.subject,
            reason=reason,
            requester=requester,
            ticket=ticket,
        )
    # What an interrupted earlier run transferred stays to be verified and announced.
    merged = plan.resumed_from(earlier) if earlier is not None else plan
    approved = merged.approved(approvers, requester=requester, **standing)
    if inventory is not None:
        approved.read = inventory.model_dump(mode="json")
    approve_case(rt, case, approved)


@flow(name="offboard", log_prints=False, on_failure=ON_FAILURE)
def offboard(
    email: str,
    reason: str,
    ticket: str = "",
    emergency: bool = False,
    receiver: str | None = None,
    keep_projects: list[str] | None = None,
    dry_run: bool = False,
    requester: str = "operator",
    review_approval: str = "",
    review_item: str = "",
    org: str = "",
    declaration: str = "",
) -> dict[str, Any]:
    """Offboard one person (the parameters are :class:`OffboardRequest`'s).

    ``receiver`` defaults to the manager, else each project admin; ``keep_projects`` (with
    role_change) narrows access instead of removing; ``review_approval`` with ``review_item``,
    an access review's approved item about this person, recent and not used by another case,
    stands for the approval (anything else is refused); ``dry_run`` only plans.

    ``emergency`` runs only on a recorded trigger (``tasks.triggers``): the signed HR event the
    requester ``hr-system:<event id>`` names, or the emergency ``declaration`` a signed-in
    emergency declarer recorded; a safety valve (``domain.valves``: a protected account, the HR
    emergency limit, a termination burst) makes the run wait for the policy's quorum.

    Returns:
        The outcome (``--json``): status done | planned | denied | blocked | failed |
        nothing_to_do, plan, effects, verification, warnings, audit_seq.

    Raises:
        tasks.triggers.TriggerRefused: an emergency without a recorded trigger (nothing was
            read from the systems or changed).
    """
    req = OffboardRequest.model_validate(locals())  # exactly the parameters above
    main = begin()
    rt = main.in_org(req.org)  # SettingsError (a ValueError): no such org, nothing read
    check_trigger(
        rt,
        email=req.email,
        emergency=req.emergency,
        requester=req.requester,
        declaration=req.declaration,
        dry_run=req.dry_run,
    )
    out = _offboard_in(rt, req)
    if req.org or not main.other_orgs():
        return out
    return _in_every_other_org(main, req, out)


def _in_every_other_org(main: Runtime, req: OffboardRequest, out: Outcome) -> Outcome:
    """After the main org, the person's other orgs (seed 004: "deleted but can still log in:
    check if they have access to multiple Amplitude organizations"): one offboarding subflow
    per org they are in, each with its own case, plan and approval (approvers see each org's
    plan); the outcome says each org's, and is *partial* when one of them did not end done."""
    # A failed, blocked or denied run here (a Prefect state, or a dict saying so): the other
    # orgs are not touched.
    if not isinstance(out, dict) or out.get("status") not in GOOD:
        return out
    orgs: dict[str, dict[str, str]] = {}
    for name in main.other_orgs():
        if not is_member(main.in_org(name), req.email):
            continue
        # The named receiver may not be in that org: its plan picks its own (the manager, else
        # each project's admin), as any offboarding without --receiver does.
        params = req.model_dump(exclude={"receiver", "org"})
        try:
            theirs = call_runbook(
                offboard, **{**params, "ticket": out.get("ticket") or req.ticket, "org": name}
            )
        except Exception as exc:  # that org's failure, said; the others still go
            orgs[name] = {"status": "failed", "run_id": "", "failure": str(exc)[:500]}
            continue
        orgs[name] = {
            "status": str(theirs.get("status", "failed")),
            "run_id": str(theirs.get("run_id", "")),
            "failure": str(theirs.get("failure") or "; ".join(theirs["plan"]["blockers"])),
        }
    if not orgs:
        return out
    statuses = [out["status"], *(o["status"] for o in orgs.values())]
    bad = [
        f"org {n}: {o['status']} {o['failure']}".strip()
        for n, o in orgs.items()
        if o["status"] not in GOOD
    ]
    status = (
        "partial"
        if bad
        else "planned"
        if req.dry_run
        else "nothing_to_do"
        if set(statuses) == {"nothing_to_do"}
        else "done"
    )
    return finish({**out, "status": status, "orgs": orgs}, why="; ".join(bad))


GOOD = ("done", "nothing_to_do", "planned")


def _unless_quorum(case: Case) -> Case:
    """The case, without an approved plan another approval stood for (a bulk run's, an expired
    grant's, an access review's): when a safety valve holds, only the quorum's gate approves."""
    approved = case.approved_plan
    if approved is None or not (
        approved.batch_approval or approved.expired_grant or approved.review_approval
    ):
        return case
    return case.model_copy(update={"approved_plan": None})


def approved_inventory(rt: Runtime, req: OffboardRequest) -> Inventory | None:
    """The inventory a bulk run planned this leaver from, kept with the plan it approved, while
    it is at most :data:`FRESH_READ` old: the leaver's run applies that plan without reading
    the same systems a second time (a batch of 200 would otherwise read every leaver twice).
    Older (the batch's approval took long), or none: None, and the run reads afresh and goes
    on only if its plan is still the approved one. The verification re-reads either way."""
    case = open_case_of(rt, req.runbook, req.email)
    approved = case.approved_plan if case is not None else None
    if approved is None or not approved.batch_approval or not approved.read:
        return None
    inv = Inventory.model_validate(approved.read)
    fresh = rt.clock() - inv.taken_at <= FRESH_READ
    return inv if fresh and inv.subject == req.email and not req.dry_run else None


def _offboard_in(rt: Runtime, req: OffboardRequest) -> Outcome:
    """The offboarding in ``rt``'s org: inventory → plan → approve → apply → verify."""
    log = get_run_logger()
    inv = approved_inventory(rt, req) or take_inventory(rt, req.email, receiver=req.receiver)
    plan = make_offboarding_plan(inv, req.options())
    if req.org:  # what approvers and the ticket see: which org this is
        where = (
            f"in the {req.org} org (the person's other orgs are offboarded in runs of their own)"
        )
        plan = plan.model_copy(update={"warnings": [where, *plan.warnings]})
    if req.dry_run:
        return outcome(rt, plan, status="planned")
    if plan.is_noop and open_case_of(rt, req.runbook, req.email) is None:
        # Nothing to do and no interrupted run to finish: no case, no ticket, no message (an
        # unknown or already offboarded address must not write anywhere).
        return outcome(rt, plan, status="nothing_to_do")
    refused = finished_case(rt, req.runbook, req.email, req.ticket, outcomes=REFUSED)
    if refused is not None:
        # This ticket's offboarding was refused: a re-delivered event or a run resumed after its
        # worker died must not ask again (a new request comes with a new ticket).
        log.warning("offboarding of %s under %s was %s", req.email, req.ticket, refused.outcome)
        return finish(outcome(rt, plan, status="denied", ticket=req.ticket))
    if req.review_approval:  # refused before a case or a ticket is opened for it
        earlier = open_case_of(rt, req.runbook, req.email)
        review_approvers(
            rt,
            req.review_approval,
            req.review_item,
            email=req.email,
            org=req.org,
            case_id=earlier.id if earlier is not None else None,
            check_only=True,
        )
    case = _open_case(rt, req)
    if plan.blockers:
        log.warning("offboarding of %s needs a choice: %s", req.email, "; ".join(plan.blockers))
        return block(rt, plan, case, requester=req.requester)
    valves = valves_for(rt, email=req.email, requester=req.requester)
    if valves:
        log.warning("offboarding of %s waits for a quorum: %s", req.email, [v.name for v in valves])
        # What approvers are shown; the hash (what they approve) is the plan's steps.
        plan = plan.model_copy(update={"warnings": [*(v.why for v in valves), *plan.warnings]})
        case = _unless_quorum(case)
    narrowed = bool(req.keep_projects)
    return run_plan(
        rt,
        plan,
        case=case,
        requester=req.requester,
        approval=req.approval(inv, valves),
        standing=req.standing(rt, valves),
        verify=lambda p: verify_offboarding(rt, inv, p, narrowed=narrowed, case_id=case.id),
    )
