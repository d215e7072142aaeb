"""Expiry's tasks: read the grants and the grantees' access, apply one action idempotently
(STYLE.md point 7: the rules are in ``domain.expiry``).

Idempotence: the sweep keeps one long-lived ledger case (runbook ``expiry``) whose done steps
are keyed by the grants and the end they had (:attr:`domain.expiry.ExpiryAction.key`):
``revoke:KEY``, ``comment:KEY``, ``remind:KEY:3d`` and ``dm:KEY:3d:EMAIL``. Each write is marked
done right after it happened, and the grant itself says what is left (status ``expired``,
``last_reminder``), so a second sweep, or a re-run after a crash, does nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import task

from connectors.errors import ConnectorError, NotFoundError
from domain import blocks
from domain.expiry import ExpiryAction, ExpiryKind, duration
from domain.models import Member, Module
from domain.records import AuditEvent, Grant, GrantStatus
from ledger.audit import append
from ledger.cases import done_steps, mark_done, sweep_case_id
from ledger.grants import grants, set_grant
from tasks.runtime import Runtime, runtime

RUNBOOK = "expiry"
CASE_SUBJECT = "expiry-sweep"


@dataclass(frozen=True)
class Snapshot:
    """What the sweep reads: every grant, and the grantees' current member records."""

    grants: list[Grant]
    access: dict[str, Member]
    blocker: str = ""


@task(name="read_grants")
def read_grants() -> Snapshot:
    """Every grant of the ledger, and each grantee's access (a grantee who is no member is
    missing from ``access``)."""
    rt = runtime()
    all_grants = grants(rt.ledger)
    access: dict[str, Member] = {}
    try:
        for subject in sorted({g.subject for g in all_grants}):
            m = rt.org.get_member(subject)
            if m is not None:
                access[subject] = m
    except ConnectorError as exc:
        return Snapshot(all_grants, {}, blocker=f"the org could not say who has what: {exc}")
    return Snapshot(all_grants, access)


def sweep_case(rt: Runtime, *, create: bool, now: datetime) -> int | None:
    """The sweep's long-lived case (``create``: open it when there is none)."""
    return sweep_case_id(
        rt.ledger, runbook=RUNBOOK, subject=CASE_SUBJECT, reason="expiry", create=create, now=now
    )


def _audit(
    rt: Runtime,
    action: ExpiryAction,
    what: str,
    effect: str,
    *,
    flow_run_id: str,
    on_behalf_of: str = "",
    **after: Any,
) -> None:
    append(
        rt.ledger,
        AuditEvent(
            action=what,
            subject=action.subject,
            target=f"grant {','.join(map(str, action.grant_ids))}: {action.what}",
            on_behalf_of=on_behalf_of,
            after={"reason": action.reason, **after},
            effect=effect,
            flow_run_id=flow_run_id,
            ticket=action.ticket,
        ),
        now=rt.clock(),
    )


def _revoke(rt: Runtime, a: ExpiryAction) -> tuple[str, str]:
    """Revoke in the org; (effect, verification: pass or what still remains)."""
    org = rt.org
    try:
        if a.kind is ExpiryKind.REMOVE_MEMBER:
            effect = str(org.remove_member(a.subject))
            left = org.get_member(a.subject)
            return effect, "pass" if left is None else f"fail(still {left.status})"
        if a.kind is ExpiryKind.REVOKE_MODULE:
            assert a.module is not None
            effect = str(org.set_modules(a.subject, revoke=[Module(a.module)]))  # type: ignore[union-attr]
            mods = org.get_modules(a.subject)  # type: ignore[union-attr]
            return effect, "pass" if Module(a.module) not in mods else "fail(module still granted)"
        assert a.project is not None
        effect = str(org.set_project_role(a.subject, a.project, None))  # type: ignore[union-attr]
        now_has = [p for p in org.effective_access(a.subject) if p.project == a.project]  # type: ignore[union-attr]
        if not now_has:
            return effect, "pass"
        if "individual" in now_has[0].sources:
            return effect, "fail(individual role still there)"
        # Still there through a group: the grant is gone; the group is the IdP's business.
        via = ", ".join(now_has[0].sources)
        return effect, f"pass(remains {now_has[0].role.value} through {via})"
    except NotFoundError:
        return "noop(not a member)", "pass"


@task(name="apply_expiry_action")
def apply_action(action: ExpiryAction, *, case_id: int, flow_run_id: str) -> dict[str, Any]:
    """Apply one action; what it did (``effect``, ``verification``, and ``notes``).

    Raises:
        ConnectorError: the org refused or could not answer (the sweep goes on with the
            other grants; this one is tried again by the next sweep).
    """
    rt = runtime()
    done = done_steps(rt.ledger, case_id)
    notes: list[str] = []
    key = action.key
    if action.kind is ExpiryKind.REMIND:
        return _remind(rt, action, case_id=case_id, flow_run_id=flow_run_id, done=done)

    step = f"revoke:{key}"
    verification = ""
    if step in done:
        effect = "noop(revoked already)"
        verification = str(done[step]["detail"].get("verification", ""))
    else:
        effect, verification = _revoke(rt, action)
        if verification.startswith("fail"):
            # Not marked done: the next sweep tries again.
            _audit(rt, action, "grant.revoke_failed", verification, flow_run_id=flow_run_id)
            raise ConnectorError(
                f"revocation not verified: {verification}",
                system="org",
                operation=action.kind.value,
                subject=action.subject,
            )
        late = duration(action.late_by) if action.late_by else ""
        for gid in action.grant_ids:
            set_grant(rt.ledger, gid, status=GrantStatus.EXPIRED)
        mark_done(
            rt.ledger,
            case_id,
            step,
            effect,
            {"verification": verification, "late_by": late},
            rt.clock(),
        )
        _audit(
            rt,
            action,
            "grant.expired",
            effect,
            flow_run_id=flow_run_id,
            ends_at=action.ends_at.isoformat(),
            late_by=late,
            verification=verification,
            removed=action.kind.value,
        )
    if action.ticket and f"comment:{key}" not in done:
        body = (
            f"Handover revoked the temporary access of {action.subject} ({action.what}; grant "
            f"{', '.join(map(str, action.grant_ids))}, ended "
            f"{action.ends_at.isoformat(timespec='minutes')}): {action.reason}. "
            "If access is still needed, request it again."
        )
        try:
            res = str(rt.tickets.comment(action.ticket, body))
            notes.append(f"commented on {action.ticket}")
        except ConnectorError as exc:  # the ledger has the record; the comment is a courtesy
            res = f"failed({exc})"
            notes.append(f"could not comment on {action.ticket}: {exc}")
        if not res.startswith("failed"):
            mark_done(
                rt.ledger,
                case_id,
                f"comment:{key}",
                res,
                {"ticket": action.ticket},
                rt.clock(),
            )
            _audit(rt, action, "ticket.commented", res, flow_run_id=flow_run_id)
    elif not action.ticket:
        notes.append("no ticket known")
    return {"effect": effect, "verification": verification, "notes": notes}


def _remind(
    rt: Runtime,
    action: ExpiryAction,
    *,
    case_id: int,
    flow_run_id: str,
    done: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    key = f"{action.key}:{action.reminder}"
    step = f"remind:{key}"
    if step in done:
        return {"effect": "noop(reminded already)", "verification": "", "notes": []}
    (gid,) = action.grant_ids
    text = (
        f"Temporary access ends soon: {action.what} for {action.subject} ends "
        f"{action.ends_at.isoformat(timespec='minutes')} ({action.reason}). "
        "Press Extend to ask for more time."
    )
    body = blocks.reminder_blocks(
        grant_id=gid, subject=action.subject, what=action.what, ends_at=action.ends_at
    )
    notes: list[str] = []
    sent: list[str] = []
    for who in dict.fromkeys(w for w in (action.subject, action.sponsor) if w):
        dm = f"dm:{key}:{who}"
        if dm in done:
            sent.append(who)
            continue
        try:
            rt.messenger.dm(who, text, body)
        except ConnectorError as exc:  # not on Slack, or Slack down: said, not retried
            notes.append(f"could not tell {who}: {exc}")
            continue
        mark_done(rt.ledger, case_id, dm, "sent", {}, rt.clock())
        sent.append(who)
        notes.append(f"told {who}")
    set_grant(rt.ledger, gid, last_reminder=action.reminder)
    effect = "sent" if sent else "failed(nobody could be told)"
    mark_done(rt.ledger, case_id, step, effect, {"to": sent}, rt.clock())
    _audit(
        rt,
        action,
        "grant.reminded",
        effect,
        flow_run_id=flow_run_id,
        reminder=action.reminder,
        to=sent,
    )
    return {"effect": effect, "verification": "", "notes": notes}
