"""The quarterly access review (issue 7; seed 004 "Quarterly access review cleanup") as a
Prefect flow: read → find → report → approve → apply → record.

Members and invitations are checked against the HR roster (:func:`domain.review.review_findings`
decides); the findings become a table artifact and a CSV and an HTML report. What can be acted
on — removals (``offboard`` as subflows: reason ``termination`` for terminated and unknown
people, ``inactivity`` for inactive ones) and invitation revocations — goes to security through
the gate (runbook ``review``): with ``approve="bulk"`` one approval whose plan lists every item,
with ``approve="per_item"`` one approval per item (a denied item is skipped, the others go on),
all of them asked before the review waits for any, so they are decided in any order — per item
and in bulk in the console's review campaign (``/console/reviews/<run>``), which reads the
campaign the review records in the ledger (``tasks.review.record_campaign``: the findings with
their evidence, the approval deciding each item, the outcomes).
Each offboarding subflow still follows its own policy (HR or the manager approves a termination):
the review decides *who* is removed, the offboarding *how* (transfers first, sole admins
replaced); an offboarding that is blocked or denied is reported on its item, never a crash.
Removals run in a bounded thread pool (``max_concurrency``), each call a subflow run. The flow
only composes: ``tasks.review`` reads and writes, ``domain.review`` decides; a failed review ends
Failed, a denied one Completed named Denied (``flows.sweep.end``).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, Field

from approvals.gate import Ask, PlanSummary
from domain.campaign import APPLYING, DECIDING
from domain.models import RosterEntry
from domain.policy import ApprovalContext
from domain.records import ApprovalRequest
from domain.review import Finding, Recommendation, in_org, review_findings
from domain.runbook import call_runbook
from flows.offboard import offboard
from flows.runbook import ON_FAILURE, ask_all, begin, run_id
from flows.sweep import end
from tasks.cases import audit_seq
from tasks.review import (
    ReviewInputs,
    finish_campaign,
    read_export,
    read_hr_roster,
    read_review_inputs,
    read_roster,
    record_approved_items,
    record_campaign,
    record_campaign_approvals,
    record_campaign_state,
    revoke_invitation,
    write_reports,
)
from tasks.runtime import Runtime
from tasks.sweeps import clock

RUNBOOK = "review"
DEFAULT_REPORT_DIR = Path(".handover") / "reports"
NOT_DONE = ("failed", "offboard failed", "offboard blocked")  # outcomes that fail the review


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The roster file; None: the HR system's API (HANDOVER_HR_API).
    roster: str | None = Field(None, min_length=1)
    inactive_days: int = Field(90, ge=1, le=3650)
    approve: Literal["per_item", "bulk"] = "per_item"
    dry_run: bool = False
    report_dir: str | None = None
    max_concurrency: int = Field(4, ge=1, le=32)
    requester: str = Field("access-review", max_length=320)
    members_export: str | None = Field(None, min_length=1, max_length=4096)


def plan_hash(items: list[Finding]) -> str:
    return hashlib.sha256(
        json.dumps(sorted([f.id, f.action.value] for f in items)).encode()
    ).hexdigest()


@dataclass(frozen=True)
class Approvals:
    """Who approved each item (id → approvers) and under which approval (the offboarding
    subflow runs on it), and the outcome of each item not approved."""

    approved: dict[str, list[str]] = field(default_factory=dict)
    approval_of: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def of(self, items: list[Finding], action: Recommendation) -> list[Finding]:
        """The approved items that ``action``."""
        return [f for f in items if f.id in self.approved and f.action is action]


@dataclass
class Review:
    """One review's findings and what became of each (``outcomes``: finding id → outcome;
    what is not actionable is ``reported``; ``offboardings``: a removal's offboarding run and
    ticket)."""

    findings: list[Finding]
    warnings: list[str]
    today: str
    directory: Path
    outcomes: dict[str, str] = field(default_factory=dict)
    offboardings: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outcomes.update({f.id: "reported" for f in self.findings if not f.actionable})

    @classmethod
    def find(
        cls,
        orgs: dict[str, ReviewInputs],
        people: list[RosterEntry],
        *,
        now: datetime,
        req: ReviewRequest,
    ) -> Review:
        """The findings of every org (``orgs``: by name, the main one as ``""``) against the
        roster's ``people`` at ``now`` (the rules: :func:`domain.review.review_findings`); the
        other orgs' findings and warnings say which org."""
        findings: list[Finding] = []
        warnings: list[str] = []
        for name, org in orgs.items():
            found = review_findings(
                org.members,
                people,
                org.invitations,
                now,
                inactive_days=req.inactive_days,
                groups=org.groups,
                individual_roles=org.individual_roles,
            )
            findings += in_org(found, name) if name else found
            warnings += [f"{name}: {w}" if name else w for w in org.warnings]
        directory = Path(req.report_dir) if req.report_dir else DEFAULT_REPORT_DIR
        return cls(findings, warnings, now.date().isoformat(), directory)

    @property
    def items(self) -> list[Finding]:
        """What can be acted on: removals and invitation revocations."""
        return [f for f in self.findings if f.actionable]

    def failures(self) -> list[str]:
        """The items that failed (or whose offboarding failed or is blocked)."""
        out = ((f, self.outcomes.get(f.id, "")) for f in self.items)
        return [f"{f.action.value} {f.target}: {o}" for f, o in out if o.startswith(NOT_DONE)]

    def settled(self, approvals: Approvals) -> str:
        """How the review ended once applied: denied (nothing approved), failed or done."""
        if not approvals.approved:
            return "denied"
        return "failed" if self.failures() else "done"

    def end(self, rt: Runtime, status: str) -> dict[str, Any]:
        """Publish the table and the reports; the outcome, in its Prefect state."""
        items = self.items
        _artifact(self.findings, self.outcomes)
        reports = write_reports(
            self.findings,
            self.outcomes,
            directory=self.directory,
            stem=f"review-{self.today}",
            title=f"Access review {self.today}",
        )
        finish_campaign(
            rt,
            run_id(),
            state=status,
            outcomes=self.outcomes,
            offboardings=self.offboardings,
            reports=reports,
        )
        out = {
            "run_id": run_id(),
            "status": status,
            "plan": {"hash": plan_hash(items), "steps": [_step(f) for f in items]},
            "findings": [
                {**f.model_dump(mode="json"), "outcome": self.outcomes.get(f.id, "")}
                for f in self.findings
            ],
            "effects": {f"{f.action.value}:{f.target}": self.outcomes.get(f.id, "") for f in items},
            "reports": reports,
            "verification": {},
            "warnings": self.warnings,
            "audit_seq": audit_seq(rt),
        }
        return end(out, failures=self.failures())


def _step(f: Finding) -> dict[str, str]:
    return {"kind": f.action.value, "target": f.target, "reason": f"{f.kind.value}: {f.detail}"}


def _artifact(findings: list[Finding], outcomes: dict[str, str]) -> None:
    create_table_artifact(
        [
            {
                "#": i + 1,
                "kind": f.kind.value,
                "subject": f.subject,
                "org": f.org,
                "detail": f.detail,
                "action": f.action.value,
                "outcome": outcomes.get(f.id, ""),
            }
            for i, f in enumerate(findings)
        ],
        key="access-review",
        description="Access review: findings",
    )


@flow(name="access-review", log_prints=False, on_failure=ON_FAILURE)
def access_review(
    roster: str | None = None,
    inactive_days: int = 90,
    approve: str = "per_item",
    dry_run: bool = False,
    report_dir: str | None = None,
    max_concurrency: int = 4,
    requester: str = "access-review",
    members_export: str | None = None,
) -> dict[str, Any]:
    """Review the org against the HR roster once.

    Args:
        roster: the HR roster file (CSV or JSON; :class:`connectors.hris.RosterFile`);
            None: the runtime's roster, read from the HR system's API (``HANDOVER_HR_API``).
        inactive_days: no login for this many days is inactive.
        approve: ``per_item`` (one approval per removal or revocation) or ``bulk`` (one for
            all); security approves (policy rule ``access-review-removal``).
        dry_run: find and report only; nothing is changed (the reports are still written).
        report_dir: where the CSV and HTML reports go (default ``.handover/reports``).
        max_concurrency: offboarding subflows at once.
        requester: who asked (never an approver).
        members_export: the console's Members export (CSV), for a SCIM-only org: its last
            logins, org roles and statuses (without it, the findings that need them are not
            made, and the warnings say which).

    Returns:
        ``run_id``, ``status`` (planned | done | nothing_to_do | failed | denied), ``plan``
        (``hash``, ``steps``: action/subject/reason of each actionable finding), ``findings``
        (every finding with its ``outcome``), ``effects`` (``action:subject`` → outcome),
        ``reports`` (csv, html), ``verification`` (empty), ``warnings``, ``audit_seq``. A
        failed review ends Failed (``RunbookFailed`` carries the outcome), a denied one
        Completed named Denied.

    Raises:
        RosterError: the roster file is missing or invalid.
        CapabilityMissing: no roster file is given and no HR API is configured.
        MembersExportError: the members export is missing or invalid.
    """
    req = ReviewRequest(
        # "" (a deployment's unset HANDOVER_ROSTER) is no file: the HR API's roster.
        roster=roster or None,
        inactive_days=inactive_days,
        approve=approve,
        dry_run=dry_run,
        report_dir=report_dir,
        max_concurrency=max_concurrency,
        requester=requester,
        members_export=members_export,
    )
    rt = begin()
    people = read_roster(req.roster) if req.roster else read_hr_roster(rt)
    export = read_export(req.members_export) if req.members_export else None
    now = clock(rt)
    org = read_review_inputs(rt, export)
    every = {"": org} | {name: read_review_inputs(rt.in_org(name)) for name in rt.other_orgs()}
    review = Review.find(every, people, now=now, req=req)
    # The campaign security works in the console: the findings, their evidence, the approvals.
    record_campaign(
        rt,
        run=run_id(),
        title=f"Access review {review.today}",
        findings=review.findings,
        orgs=every,
        people=people,
        requester=req.requester,
        approve=req.approve,
        state=DECIDING,
        warnings=review.warnings,
    )
    items = review.items
    if req.dry_run:
        review.outcomes.update({f.id: "planned" for f in items})
        return review.end(rt, "planned")
    if not items:
        return review.end(rt, "nothing_to_do")
    approvals = _approve(rt, items, req, today=review.today)
    record_campaign_state(rt, run_id(), APPLYING)
    review.outcomes.update(approvals.refused)
    review.outcomes.update(_revoke_invitations(rt, items, approvals))
    removed = _remove(items, approvals, req)
    review.outcomes.update({fid: text for fid, (text, _) in removed.items()})
    review.offboardings.update({fid: case for fid, (_, case) in removed.items() if case})
    return review.end(rt, review.settled(approvals))


def _approve(rt: Runtime, items: list[Finding], req: ReviewRequest, *, today: str) -> Approvals:
    """Security's approval of the items: one for all (``bulk``) or one per item
    (``per_item``), every one asked before any is awaited so they can be decided in any order
    (the console's campaign: per item and in bulk); the campaign records which approval
    decides which item before the review waits."""
    mode, requester, run = req.approve, req.requester, run_id()
    approvals = Approvals()
    batches = [items] if mode == "bulk" else [[f] for f in items]
    asks = []
    for batch in batches:
        subject = f"access-review {today}" if mode == "bulk" else batch[0].subject
        counts: dict[str, int] = {}
        for f in batch:
            counts[f.action.value] = counts.get(f.action.value, 0) + 1
        asks.append(
            Ask(
                ApprovalContext(runbook=RUNBOOK, subject=subject, requester=requester),
                plan_hash=plan_hash(batch),
                summary=PlanSummary(
                    counts,
                    lines=[f"{f.action.value} {f.target}: {f.detail}" for f in batch],
                    org=rt.settings.org_name,
                ),
                # One approval per item, even for two items about one person (two orgs, or a
                # terminated invitee's stale invitation): the item names it, not the subject.
                run_key=None if mode == "bulk" else f"{run}:{batch[0].id}",
            )
        )

    def opened(found: list[ApprovalRequest]) -> None:
        record_campaign_approvals(
            rt, run, {f.id: a.id for batch, a in zip(batches, found, strict=True) for f in batch}
        )

    results = ask_all(rt, asks, opened=opened)
    for batch, res in zip(batches, results, strict=True):
        if res.approved:
            record_approved_items(rt, res.approval.id, batch, approvers=res.approved_by, run=run)
        for f in batch:
            if res.approved:
                approvals.approved[f.id] = res.approved_by
                approvals.approval_of[f.id] = res.approval.id
            else:
                approvals.refused[f.id] = f"not approved ({res.state.value}, {res.approval.id})"
    return approvals


def _revoke_invitations(rt: Runtime, items: list[Finding], approvals: Approvals) -> dict[str, str]:
    """Revoke each approved invitation; the outcome of each (one failing never stops the
    others)."""
    log = get_run_logger()
    outcomes: dict[str, str] = {}
    digest = plan_hash(items)
    for f in approvals.of(items, Recommendation.REVOKE_INVITATION):
        try:
            effect = revoke_invitation(
                rt.in_org(f.org),
                f,
                flow_run_id=run_id(),
                approvers=approvals.approved[f.id],
                plan_hash=digest,
            )
            outcomes[f.id] = f"revoke_invitation {effect}"
        except Exception as exc:  # one item must not stop the others
            outcomes[f.id] = f"failed: {exc}"
            log.error("review: revoking %s failed: %s", f.subject, exc)
    return outcomes


Removed = tuple[str, dict[str, str]]  # the outcome in words; the offboarding's run and ticket


def _remove(items: list[Finding], approvals: Approvals, req: ReviewRequest) -> dict[str, Removed]:
    """Offboard each approved removal as a subflow run, ``max_concurrency`` at a time; the
    outcome of each, with its offboarding run and ticket."""
    log = get_run_logger()
    removals = approvals.of(items, Recommendation.REMOVE)

    def remove(f: Finding) -> Removed:
        return _offboard(f, approval=approvals.approval_of[f.id], requester=req.requester)

    with ThreadPoolExecutor(
        max_workers=req.max_concurrency, thread_name_prefix="review-offboard"
    ) as pool:
        futures = {f.id: pool.submit(_in_context(remove), f) for f in removals}
        outcomes = {fid: fut.result() for fid, fut in futures.items()}
    # A blocked offboarding (e.g. nobody to receive content while the project's sole admin was
    # being offboarded alongside) is tried once more after the others: their outcome may have
    # made a receiver. Still blocked: reported on its item.
    for f in removals:
        if outcomes[f.id][0].startswith("offboard blocked"):
            log.info("review: trying the blocked offboarding of %s again", f.subject)
            outcomes[f.id] = remove(f)
    return outcomes


def _offboard(f: Finding, *, approval: str, requester: str) -> Removed:
    """Offboard one person as a subflow (security's review approval stands for the removal:
    no second approval) — from the finding's org, or (the main org's finding) from every org;
    its outcome in words, and its run and ticket."""
    try:
        out = call_runbook(
            offboard,
            email=f.subject,
            reason=f.reason,
            requester=requester,
            review_approval=approval,
            review_item=f.id,
            org=f.org,
        )
    except Exception as exc:  # a subflow that raises is this item's failure
        get_run_logger().error("review: offboarding %s raised: %s", f.subject, exc)
        return f"failed: {exc}", {}
    status = out.get("status", "failed")
    extra = out.get("failure") or "; ".join(out.get("plan", {}).get("blockers", []))
    case = {"run_id": str(out.get("run_id") or ""), "ticket": str(out.get("ticket") or "")}
    return f"offboard {status}" + (f" ({extra})" if extra else ""), case


def _in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` in a copy of this flow run's context: a flow called there is a subflow run."""
    ctx = contextvars.copy_context()
    return lambda *a, **kw: ctx.run(fn, *a, **kw)
