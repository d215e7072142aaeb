"""Temporary-access expiry (issue 7, the "Expiry" runbook), every 15 minutes:
read → decide → apply → record; and the extension of one grant through the approval gate.

Every grant due by ``now`` is revoked (the project role, the module, or the whole membership
when nothing else remains), verified, marked ``expired`` and its ticket commented on; a grant
that expired while nothing ran is revoked at the next sweep and the record says how late.
Reminders go to the person and the sponsor ``reminder_days`` (policy; default 3 and 1) before
the end, each once, with an Extend button (the intake starts :func:`extend_grant`). Project
access of temporary grantees that neither an active grant nor an IdP mapping explains is
reported. The flow only composes: ``domain.expiry`` decides, ``tasks.expire`` writes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from approvals.gate import PlanSummary, gate
from approvals.policy import load_policy
from domain.expiry import ExpiryAction, describe, drift, expiry_actions, utc
from domain.models import Role
from domain.onboard import PRODUCTION
from domain.policy import ApprovalContext
from domain.records import AuditEvent, GrantStatus
from flows.hygiene import HygieneRequest
from flows.report import gate_services
from ledger.audit import append, last_seq
from ledger.grants import grants, set_grant
from tasks.expire import apply_action, read_grants, sweep_case
from tasks.runtime import Runtime, runtime


def _plan(actions: list[ExpiryAction], blockers: list[str]) -> dict[str, Any]:
    steps = [{"kind": a.kind.value, "target": a.target, "reason": a.reason} for a in actions]
    digest = hashlib.sha256(
        json.dumps([[a.kind.value, a.key, a.reminder] for a in actions], sort_keys=True).encode()
    ).hexdigest()
    return {"hash": digest, "steps": steps, "blockers": blockers}


def _artifact(
    actions: list[ExpiryAction], effects: dict[str, str], notes: dict[str, str], drifted: list[str]
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "#": i + 1,
            "action": a.kind.value,
            "person": a.subject,
            "access": a.what,
            "grant": ", ".join(map(str, a.grant_ids)),
            "ends": a.ends_at.isoformat(timespec="minutes"),
            "effect": effects.get(a.id, "not done"),
            "notes": notes.get(a.id, ""),
            "reason": a.reason,
        }
        for i, a in enumerate(actions)
    ]
    rows += [{"#": "", "action": "drift (reported)", "reason": d} for d in drifted]
    create_table_artifact(
        rows or [{"#": 0, "action": "none", "reason": "nothing to do"}],
        key="access-expiry",
        description="Temporary-access expiry: actions of this sweep",
    )


@flow(name="expire-access", log_prints=False)
def expire_access(now: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Sweep the temporary grants once.

    Args:
        now: the org's time (ISO 8601); default the runtime's clock. Pass the org's clock when
            it is not the orchestrator's (the sandbox's clock can be moved).
        dry_run: decide only; nothing is written anywhere (not even the ledger).

    Returns:
        ``run_id``, ``status`` (done | planned | nothing_to_do | failed | blocked), ``now``,
        ``plan`` (``hash``, ``steps`` of kind/target/reason, ``blockers``), ``effects``
        (``kind:target`` → effect), ``verification`` (revocation → pass/fail), ``notes``,
        ``warnings`` (drift: access nothing explains, not changed), ``failures`` and
        ``audit_seq``.
    """
    req = HygieneRequest(now=now, dry_run=dry_run)
    log = get_run_logger()
    rt = runtime()
    at = req.now or rt.clock()
    run_id = str(flow_run.id or "")
    policy = load_policy(rt.settings.policy)
    snap = read_grants()
    actions = (
        []
        if snap.blocker
        else expiry_actions(
            snap.grants, at, reminder_days=policy.reminder_days, active_access=snap.access
        )
    )
    warnings = drift(snap.grants, snap.access, revoked=actions)
    blockers = [snap.blocker] if snap.blocker else []

    def result(status: str, effects: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "status": status,
            "now": at.isoformat(),
            "plan": _plan(actions, blockers),
            "effects": effects,
            "verification": extra.pop("verification", {}),
            "warnings": warnings,
            "audit_seq": last_seq(rt.ledger),
            **extra,
        }

    if blockers:
        return result("blocked", {})
    if req.dry_run:
        return result("planned" if actions else "nothing_to_do", {})
    case_id = sweep_case(rt, create=bool(actions), now=rt.clock())
    effects: dict[str, str] = {}
    notes: dict[str, str] = {}
    verification: dict[str, str] = {}
    failures: list[str] = []
    for a in actions:
        assert case_id is not None
        try:
            out = apply_action(a, case_id=case_id, flow_run_id=run_id)
        except Exception as exc:  # one grant must not stop the others
            failures.append(f"{a.id}: {exc}")
            log.error("expiry: %s failed: %s", a.id, exc)
            continue
        effects[a.id] = out["effect"]
        notes[a.id] = "; ".join(out["notes"])
        if out.get("verification"):
            verification[a.id] = out["verification"]
    _artifact(actions, effects, notes, warnings)
    status = "failed" if failures else ("done" if actions else "nothing_to_do")
    return result(status, effects, notes=notes, failures=failures, verification=verification)


# ---------------------------------------------------------------------------- extension
class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant_id: int = Field(ge=1)
    days: int = Field(30, ge=1, le=365)
    requester: str = Field("operator", min_length=1, max_length=320)
    dry_run: bool = False


@flow(name="extend-grant", log_prints=False)
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
        the run) and, when asked, ``approval``.
    """
    req = ExtendRequest(grant_id=grant_id, days=days, requester=requester, dry_run=dry_run)
    rt = runtime()
    run_id = str(flow_run.id or "")
    found = [g for g in grants(rt.ledger) if g.id == req.grant_id]
    if not found:
        raise ValueError(f"no grant {req.grant_id}")
    g = found[0]
    old_end = utc(g.end)
    new_end = old_end + timedelta(days=req.days)
    target = f"{g.subject} ({describe(g)})"
    step_id = f"extend:{target}"
    blockers = (
        [f"grant {g.id} is {g.status.value}: only an active grant can be extended"]
        if g.status is not GrantStatus.ACTIVE
        else []
    )
    digest = hashlib.sha256(
        json.dumps([g.id, old_end.isoformat(), new_end.isoformat()]).encode()
    ).hexdigest()

    def result(status: str, effects: dict[str, str], **extra: Any) -> dict[str, Any]:
        now_g = next(x for x in grants(rt.ledger) if x.id == req.grant_id)
        return {
            "run_id": run_id,
            "status": status,
            "plan": {
                "hash": digest,
                "steps": [
                    {
                        "kind": "extend",
                        "target": target,
                        "reason": f"end {old_end.isoformat(timespec='minutes')} → "
                        f"{new_end.isoformat(timespec='minutes')} (+{req.days} days), "
                        f"asked by {req.requester}",
                    }
                ],
                "blockers": blockers,
            },
            "effects": effects,
            "verification": extra.pop("verification", {}),
            "warnings": [],
            "audit_seq": last_seq(rt.ledger),
            "grant": now_g.model_dump(mode="json"),
            **extra,
        }

    if blockers:
        return result("blocked", {})
    if req.dry_run:
        return result("planned", {})
    production_roles: tuple[str, ...] = ()
    project_admins: tuple[str, ...] = ()
    if g.project:
        project = next((p for p in rt.org.list_projects() if p.name == g.project), None)  # type: ignore[union-attr]
        if project is not None:
            project_admins = project.admins
            if project.environment.casefold() == PRODUCTION and g.role in (
                Role.MANAGER.value,
                Role.ADMIN.value,
            ):
                production_roles = (str(g.role),)
    roster = rt.roster.get(g.subject) if rt.roster else None
    ctx = ApprovalContext(
        runbook="extend",
        subject=g.subject,
        requester=req.requester,
        reason="extension",
        subject_manager=roster.manager if roster else None,
        production_roles=production_roles,
        modules=(g.module,) if g.module else (),
        project_admins=project_admins,
    )
    res = gate(
        gate_services(rt),
        ctx,
        plan_hash=digest,
        summary=PlanSummary(
            {"extend": 1},
            [
                f"{target}: grant {g.id} ends {old_end.isoformat(timespec='minutes')}; "
                f"extend by {req.days} days to {new_end.isoformat(timespec='minutes')}"
                + (f" (sponsor {g.sponsor})" if g.sponsor else "")
            ],
        ),
        flow_run_id=run_id,
        ticket=g.ticket,
    )
    if not res.approved:
        _audit_ext(rt, g.subject, g.id, "grant.extension_denied", res.state.value, run_id, g.ticket)
        return result("denied", {}, approval=res.approval.id)
    # Compare and set: another run (a second click) may have moved the end meanwhile.
    current = next(x for x in grants(rt.ledger) if x.id == req.grant_id)
    if current.status is not GrantStatus.ACTIVE or utc(current.end) != old_end:
        return result(
            "nothing_to_do",
            {step_id: "noop(grant changed meanwhile)"},
            approval=res.approval.id,
        )
    updated = set_grant(rt.ledger, g.id, end=new_end, extended_from=old_end, last_reminder="")  # type: ignore[arg-type]
    _audit_ext(
        rt,
        g.subject,
        g.id,
        "grant.extended",
        "updated",
        run_id,
        g.ticket,
        on_behalf_of=", ".join(res.approved_by),
        before={"end": old_end.isoformat()},
        after={"end": new_end.isoformat(), "requester": req.requester},
        plan_hash=digest,
    )
    if g.ticket:
        try:
            rt.tickets.comment(
                g.ticket,
                f"Handover extended the temporary access of {g.subject} ({describe(g)}; grant "
                f"{g.id}) from {old_end.isoformat(timespec='minutes')} to "
                f"{new_end.isoformat(timespec='minutes')}, asked by {req.requester}, approved by "
                f"{', '.join(res.approved_by) or 'policy'}.",
            )
        except Exception as exc:  # the ledger has the record; the comment is a courtesy
            get_run_logger().warning("could not comment on %s: %s", g.ticket, exc)
    ok = utc(updated.end) == new_end and updated.status is GrantStatus.ACTIVE
    return result(
        "done",
        {step_id: "updated"},
        verification={step_id: "pass" if ok else "fail"},
        approval=res.approval.id,
    )


def _audit_ext(
    rt: Runtime,
    subject: str,
    grant_id: int | None,
    action: str,
    effect: str,
    run_id: str,
    ticket: str,
    **kw: Any,
) -> None:
    append(
        rt.ledger,
        AuditEvent(
            action=action,
            subject=subject,
            target=f"grant {grant_id}",
            effect=effect,
            flow_run_id=run_id,
            ticket=ticket,
            **kw,
        ),
        now=rt.clock(),
    )
