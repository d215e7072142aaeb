"""The quarterly access review (issue 7; seed 004 "Quarterly access review cleanup") as a
Prefect flow: read → find → report → approve → apply → record.

Members and invitations are checked against the HR roster (:func:`domain.review.review_findings`
decides); the findings become a table artifact and a CSV and an HTML report. What can be acted
on — removals (``offboard`` as subflows: reason ``termination`` for terminated and unknown
people, ``inactivity`` for inactive ones) and invitation revocations — goes to security through
the gate (runbook ``review``): with ``approve="bulk"`` one approval whose plan lists every item,
with ``approve="per_item"`` one approval per item (a denied item is skipped, the others go on).
Each offboarding subflow still follows its own policy (HR or the manager approves a termination):
the review decides *who* is removed, the offboarding *how* (transfers first, sole admins
replaced); an offboarding that is blocked or denied is reported on its item, never a crash.
Removals run in a bounded thread pool (``max_concurrency``), each call a subflow run.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from approvals.gate import PlanSummary, gate
from approvals.services import Services
from connectors.hris import RosterFile
from domain.policy import ApprovalContext
from domain.review import Finding, Recommendation, review_findings
from flows.offboard import offboard
from flows.report import gate_services
from ledger.audit import last_seq
from tasks.review import read_review_inputs, revoke_invitation, write_reports
from tasks.runtime import runtime

RUNBOOK = "review"
DEFAULT_REPORT_DIR = Path(".handover") / "reports"


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roster: str = Field(min_length=1)
    inactive_days: int = Field(90, ge=1, le=3650)
    approve: Literal["per_item", "bulk"] = "per_item"
    dry_run: bool = False
    report_dir: str | None = None
    max_concurrency: int = Field(4, ge=1, le=32)
    requester: str = Field("access-review", max_length=320)


def plan_hash(items: list[Finding]) -> str:
    return hashlib.sha256(
        json.dumps(sorted([f.id, f.action.value] for f in items)).encode()
    ).hexdigest()


def _step(f: Finding) -> dict[str, str]:
    return {"kind": f.action.value, "target": f.subject, "reason": f"{f.kind.value}: {f.detail}"}


def _artifact(findings: list[Finding], outcomes: dict[str, str]) -> None:
    create_table_artifact(
        [
            {
                "#": i + 1,
                "kind": f.kind.value,
                "subject": f.subject,
                "detail": f.detail,
                "action": f.action.value,
                "outcome": outcomes.get(f.id, ""),
            }
            for i, f in enumerate(findings)
        ],
        key="access-review",
        description="Access review: findings",
    )


def _approve(
    svc: Services, items: list[Finding], *, mode: str, requester: str, run_id: str, today: str
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    """Who approved each item (id → approvers), the outcome of those not approved, and the
    approval of each approved item (the offboarding subflow runs on that approval)."""
    approved: dict[str, list[str]] = {}
    refused: dict[str, str] = {}
    approval_of: dict[str, str] = {}
    batches = [items] if mode == "bulk" else [[f] for f in items]
    for batch in batches:
        subject = f"access-review {today}" if mode == "bulk" else batch[0].subject
        counts: dict[str, int] = {}
        for f in batch:
            counts[f.action.value] = counts.get(f.action.value, 0) + 1
        res = gate(
            svc,
            ApprovalContext(runbook=RUNBOOK, subject=subject, requester=requester),
            plan_hash=plan_hash(batch),
            summary=PlanSummary(
                counts, [f"{f.action.value} {f.subject}: {f.detail}" for f in batch]
            ),
            flow_run_id=run_id,
        )
        for f in batch:
            if res.approved:
                approved[f.id] = res.approved_by
                approval_of[f.id] = res.approval.id
            else:
                refused[f.id] = f"not approved ({res.state.value}, {res.approval.id})"
    return approved, refused, approval_of


def _in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` in a copy of this flow run's context: a flow called there is a subflow run."""
    ctx = contextvars.copy_context()
    return lambda *a, **kw: ctx.run(fn, *a, **kw)


def _offboard_outcome(out: dict[str, Any]) -> str:
    status = out.get("status", "failed")
    extra = out.get("failure") or "; ".join(out.get("plan", {}).get("blockers", []))
    return f"offboard {status}" + (f" ({extra})" if extra else "")


@flow(name="access-review", log_prints=False)
def access_review(
    roster: str,
    inactive_days: int = 90,
    approve: str = "per_item",
    dry_run: bool = False,
    report_dir: str | None = None,
    max_concurrency: int = 4,
    requester: str = "access-review",
) -> dict[str, Any]:
    """Review the org against the HR roster once.

    Args:
        roster: the HR roster file (CSV or JSON; :class:`connectors.hris.RosterFile`).
        inactive_days: no login for this many days is inactive.
        approve: ``per_item`` (one approval per removal or revocation) or ``bulk`` (one for
            all); security approves (policy rule ``access-review-removal``).
        dry_run: find and report only; nothing is changed (the reports are still written).
        report_dir: where the CSV and HTML reports go (default ``.handover/reports``).
        max_concurrency: offboarding subflows at once.
        requester: who asked (never an approver).

    Returns:
        ``run_id``, ``status`` (planned | done | nothing_to_do | failed | denied), ``plan``
        (``hash``, ``steps``: action/subject/reason of each actionable finding), ``findings``
        (every finding with its ``outcome``), ``effects`` (``action:subject`` → outcome),
        ``reports`` (csv, html), ``verification`` (empty), ``warnings``, ``audit_seq``.

    Raises:
        RosterError: the roster file is missing or invalid.
    """
    req = ReviewRequest(
        roster=roster,
        inactive_days=inactive_days,
        approve=approve,
        dry_run=dry_run,
        report_dir=report_dir,
        max_concurrency=max_concurrency,
        requester=requester,
    )
    log = get_run_logger()
    rt = runtime()
    entries = RosterFile(req.roster).entries()
    now = rt.clock()
    run_id = str(flow_run.id or "")
    inputs = read_review_inputs()
    findings = review_findings(
        inputs.members,
        entries,
        inputs.invitations,
        now,
        inactive_days=req.inactive_days,
        groups=inputs.groups,
        individual_roles=inputs.individual_roles,
    )
    items = [f for f in findings if f.actionable]
    outcomes: dict[str, str] = {f.id: "reported" for f in findings if not f.actionable}
    today = now.date().isoformat()
    directory = Path(req.report_dir) if req.report_dir else DEFAULT_REPORT_DIR

    def finish(status: str) -> dict[str, Any]:
        _artifact(findings, outcomes)
        reports = write_reports(
            findings,
            outcomes,
            directory=directory,
            stem=f"review-{today}",
            title=f"Access review {today}",
        )
        return {
            "run_id": run_id,
            "status": status,
            "plan": {"hash": plan_hash(items), "steps": [_step(f) for f in items]},
            "findings": [
                {**f.model_dump(mode="json"), "outcome": outcomes.get(f.id, "")} for f in findings
            ],
            "effects": {f"{f.action.value}:{f.subject}": outcomes.get(f.id, "") for f in items},
            "reports": reports,
            "verification": {},
            "warnings": inputs.warnings,
            "audit_seq": last_seq(rt.ledger),
        }

    if req.dry_run:
        for f in items:
            outcomes[f.id] = "planned"
        return finish("planned")
    if not items:
        return finish("nothing_to_do")
    approved, refused, approval_of = _approve(
        gate_services(rt),
        items,
        mode=req.approve,
        requester=req.requester,
        run_id=run_id,
        today=today,
    )
    outcomes.update(refused)
    p_hash = plan_hash(items)
    for f in items:
        if f.id in approved and f.action is Recommendation.REVOKE_INVITATION:
            try:
                outcomes[f.id] = "revoke_invitation " + revoke_invitation(
                    f, flow_run_id=run_id, approvers=approved[f.id], plan_hash=p_hash
                )
            except Exception as exc:  # one item must not stop the others
                outcomes[f.id] = f"failed: {exc}"
                log.error("review: revoking %s failed: %s", f.subject, exc)
    removals = [f for f in items if f.id in approved and f.action is Recommendation.REMOVE]
    if removals:

        def remove(f: Finding) -> str:
            try:
                # Security's review approval stands for the removal: no second approval.
                out = offboard(
                    email=f.subject,
                    reason=f.reason,
                    requester=req.requester,
                    review_approval=approval_of[f.id],
                )
            except Exception as exc:  # a subflow that raises is this item's failure
                log.error("review: offboarding %s raised: %s", f.subject, exc)
                return f"failed: {exc}"
            return _offboard_outcome(out)

        with ThreadPoolExecutor(
            max_workers=req.max_concurrency, thread_name_prefix="review-offboard"
        ) as pool:
            futures = {f.id: pool.submit(_in_context(remove), f) for f in removals}
            for fid, fut in futures.items():
                outcomes[fid] = fut.result()
        # A blocked offboarding (e.g. nobody to receive content while the project's sole admin
        # was being offboarded alongside) is tried once more after the others: their outcome
        # may have made a receiver. Still blocked: reported on its item.
        for f in removals:
            if outcomes[f.id].startswith("offboard blocked"):
                log.info("review: trying the blocked offboarding of %s again", f.subject)
                outcomes[f.id] = remove(f)
    bad = [
        o
        for f in items
        if (o := outcomes.get(f.id, "")).startswith("failed")
        or o.startswith("offboard failed")
        or o.startswith("offboard blocked")
    ]
    if not approved:
        status = "denied"
    elif bad:
        status = "failed"
    else:
        status = "done"
    return finish(status)
