"""Invitation hygiene (issues 6 and 7; seed 003 "Monitor Invitation Status"), daily:
read → decide → apply → record.

Unaccepted 48 h after it was sent → resent once and the requester told; 14 days after it was
first sent (or expired) → revoked and its ticket commented on; accepted → recorded. The flow
only composes: ``domain.invitations`` decides, ``tasks.invitations`` writes, each action at
most once (the ledger remembers), so a second sweep at the same time does nothing; the sweep
itself is ``flows.sweep``'s.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from domain.invitations import Action, console_review, hygiene_actions, lookalike_warnings
from flows.runbook import ON_FAILURE, begin
from flows.sweep import Found, Sweeper, SweepRequest, apply_sweep, unapplied
from tasks.invitations import apply_action, read_invitations, recall, remember_pending
from tasks.sweeps import clock

HYGIENE: Sweeper[Action] = Sweeper(
    name="invitation hygiene",
    artifact="invitation-hygiene",
    description="Invitation hygiene: actions of this sweep",
    target=lambda a: a.email,
    facts=lambda a: [a.kind.value, a.key],
    columns=lambda a: {"invitation": a.email, "sent": a.sent_at.isoformat(timespec="minutes")},
    apply=apply_action,
)


@flow(name="invitation-hygiene", log_prints=False, on_failure=ON_FAILURE)
def invitation_hygiene(now: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Sweep the org's invitations once (``now``, ``dry_run``: :class:`flows.sweep.SweepRequest`).

    Returns:
        The sweep's outcome (:func:`flows.sweep.apply_sweep`): ``effects`` by ``kind:email``,
        no ``verification``; the look-alike invitations, never resent, are its ``warnings``. A
        failed or blocked sweep ends Failed (``RunbookFailed`` carries the outcome).
    """
    req = SweepRequest(now=now, dry_run=dry_run)
    rt = begin()
    at = req.now or clock(rt)
    snap = read_invitations(rt)
    memory = recall(rt, create=not req.dry_run)
    actions = (
        []
        if snap.blocker
        else [console_review(at)]  # SCIM only: a person reviews them, once a week
        if not snap.by_api
        else hygiene_actions(
            snap.invitations,
            at,
            already_resent=memory.resent,
            already_recorded=memory.recorded,
            seen_pending=memory.seen_pending,
            members=snap.members,
        )
    )
    warnings = lookalike_warnings(snap.invitations, snap.members, at)
    found = Found(at, actions, warnings, snap.blocker)
    if found.blocker or req.dry_run:
        return unapplied(rt, HYGIENE, found, dry_run=req.dry_run)
    remember_pending(rt, snap.invitations, memory)
    return apply_sweep(rt, HYGIENE, found, case_id=memory.case_id)
