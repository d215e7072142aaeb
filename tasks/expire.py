"""Expiry's tasks: read the grants and the grantees' access, apply one action idempotently
(STYLE.md point 7: the rules are in ``domain.expiry``).

Idempotence: the sweep keeps one long-lived ledger case (runbook ``expiry``) whose done steps
are keyed by the grants and the end they had (:attr:`domain.expiry.ExpiryAction.key`):
``revoke:KEY``, ``comment:KEY``, ``remind:KEY:3d`` and ``dm:KEY:3d:EMAIL``. Each write is marked
done right after it happened, and the grant itself says what is left (status ``expired``,
``last_reminder``), so a second sweep, or a re-run after a crash, does nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import task

from connectors.capabilities import ModuleAccess, ProjectAccess, require
from connectors.errors import ConnectorError, NotFoundError
from domain import blocks
from domain.expiry import ExpiryAction, ExpiryKind, Extension, duration, grant_group
from domain.models import Member, Module
from domain.onboard import PRODUCTION
from domain.policy import ApprovalContext
from domain.records import Grant, GrantStatus
from domain.tasks import TaskState, is_ok, revoke_access_task
from ledger.grants import grants, set_grant
from tasks.backend import roles_by_api
from tasks.runtime import UNCACHED, Runtime
from tasks.sweeps import About, Applied, OnCase, audit, open_sweep_case

RUNBOOK = "expiry"
CASE_SUBJECT = "expiry-sweep"


@dataclass(frozen=True)
class Snapshot:
    """What the sweep reads: every grant, and the grantees' current member records."""

    grants: list[Grant]
    access: dict[str, Member]
    blocker: str = ""
    by_api: bool = True  # False: roles and modules cannot be read or revoked by API

    def warnings(self) -> list[str]:
        """What the sweep cannot check on this org."""
        if self.by_api:
            return []
        return [
            "this org cannot say who has which role or module by API (SCIM only): access that "
            "no grant explains is not checked; ended roles and modules are a person's to remove "
            "(revoke_access tasks)"
        ]


@task(name="read_grants", cache_policy=UNCACHED)
def read_grants(rt: Runtime) -> Snapshot:
    """Every grant of the ledger, and each grantee's access (a grantee who is no member is
    missing from ``access``)."""
    all_grants = grants(rt.ledger)
    access: dict[str, Member] = {}
    if not roles_by_api(rt):
        # SCIM only: a member record has no project roles or modules. Nobody is read: a
        # membership grant goes through the offboarding runbook, a role or a module through a
        # person (revoke_access tasks), and no grant is taken as revoked because it looks so.
        return Snapshot(all_grants, {}, by_api=False)
    try:
        for subject in sorted({g.subject for g in all_grants}):
            m = rt.org.get_member(subject)
            if m is not None:
                access[subject] = m
    except ConnectorError as exc:
        return Snapshot(all_grants, {}, blocker=f"the org could not say who has what: {exc}")
    return Snapshot(all_grants, access)


def expiry_case(rt: Runtime, *, create: bool) -> int | None:
    """The sweep's long-lived case (``create``: open it when there is none)."""
    return open_sweep_case(rt, RUNBOOK, CASE_SUBJECT, "expiry", create=create)


def _about(action: ExpiryAction) -> About:
    grants_ = ",".join(map(str, action.grant_ids))
    return About(action.subject, f"grant {grants_}: {action.what}", action.reason, action.ticket)


def _leave_grant_group(rt: Runtime, a: ExpiryAction) -> str:
    """Take the person out of the IdP group an IdP-managed grant gave (IdP first: the IdP
    pushes its groups' roles back over an org-side change); what it did, empty when they are
    not in it (an individual grant, or out already)."""
    assert a.project is not None
    name = grant_group(a.project, a.role).removeprefix("group:")
    user = rt.idp.find_user(a.subject)
    if user is None:
        return ""
    group = next((g for g in rt.idp.groups_of(user.id) if g.name.casefold() == name), None)
    if group is None:
        return ""
    return f"left IdP group {group.name}: {rt.idp.remove_from_group(group.id, user.id)}"


def _revoke(rt: Runtime, a: ExpiryAction) -> tuple[str, str]:
    """Revoke a role or a module; (effect, verification: pass or what still remains)."""
    org = rt.org
    try:
        if a.kind is ExpiryKind.REVOKE_MODULE:
            assert a.module is not None
            modules = require(org, ModuleAccess, system="org", operation="revoke_module")
            effect = str(modules.set_modules(a.subject, revoke=[Module(a.module)]))
            mods = modules.get_modules(a.subject)
            return effect, "pass" if Module(a.module) not in mods else "fail(module still granted)"
        assert a.kind is ExpiryKind.REVOKE_ROLE and a.project is not None
        access = require(org, ProjectAccess, system="org", operation="remove_project_role")
        left_group = _leave_grant_group(rt, a)
        effect = str(access.set_project_role(a.subject, a.project, None))
        effect = f"{effect}; {left_group}" if left_group else effect
        now_has = [p for p in access.effective_access(a.subject) if p.project == a.project]
        if not now_has:
            return effect, "pass"
        own = {"individual", grant_group(a.project, a.role)}
        still = [s for s in now_has[0].sources if s in own]
        if still:
            return effect, f"fail(still through {', '.join(still)})"
        # Still there through another group: the grant is gone; that group is not the grant's.
        via = ", ".join(now_has[0].sources)
        return effect, f"pass(remains {now_has[0].role.value} through {via})"
    except NotFoundError:
        return "noop(not a member)", "pass"


@task(name="apply_expiry_action", cache_policy=UNCACHED)
def apply_action(rt: Runtime, action: ExpiryAction, *, case_id: int, flow_run_id: str) -> Applied:
    """Apply one role or module revocation, or one reminder, once on the sweep's case; what it
    did (``effect``, ``verification`` of a revocation, and ``notes``). A membership removal is
    the offboarding runbook's (``flows.expire``), recorded by :func:`record_membership_expiry`.

    Raises:
        ConnectorError: the org or the IdP refused, could not answer, or the revocation did not
            show (the sweep goes on; this grant is tried again by the next sweep).
    """
    c = OnCase.load(rt, case_id, flow_run_id=flow_run_id)
    if action.kind is ExpiryKind.REMIND:
        return _remind(c, action)
    assert action.kind is not ExpiryKind.REMOVE_MEMBER, "the offboarding runbook removes members"
    revoke = (lambda: _revoke(rt, action)) if roles_by_api(rt) else (lambda: _by_task(c, action))
    effect, verification = _revoke_once(c, action, revoke)
    if not verification:  # a person's task, still open: nothing is revoked yet
        return Applied(effect, [f"waiting for the task ({effect})"])
    notes = _comment(c, action) if action.ticket else ["no ticket known"]
    return Applied(effect, notes, verification)


def _by_task(c: OnCase, action: ExpiryAction) -> tuple[str, str]:
    """Where the org has no API for roles or modules: the IdP group of an IdP-managed grant
    left by API, the rest a person's task, filed once on the sweep's case; (effect,
    verification): ``attested`` once Done, a failure on Can't do, and no verification (not
    revoked yet) while it is open. Nobody waits on it: each sweep looks at its answer."""
    left = _leave_grant_group(c.rt, action) if action.project else ""
    task = revoke_access_task(
        action.subject,
        action.what,
        grants=", ".join(map(str, action.grant_ids)),
        ended=action.ends_at.isoformat(timespec="minutes"),
    )
    filed = c.file_task(
        RUNBOOK, f"task:{action.key}", task, subject=action.subject, ticket=action.ticket
    )
    if filed.state is TaskState.DONE:
        return "attested" + (f"; {left}" if left else ""), filed.attestation()
    if filed.state is TaskState.CANT:
        return f"task {filed.id}", f"fail(task {filed.id}: can't do: {filed.note})"
    return f"waiting(task {filed.id} open)", ""


@task(name="record_membership_expiry", cache_policy=UNCACHED)
def record_membership_expiry(
    rt: Runtime, action: ExpiryAction, offboarded: dict[str, Any], *, case_id: int, flow_run_id: str
) -> Applied:
    """Record a membership removal the offboarding runbook did (``offboarded``: its outcome):
    the grants expired, audited, the ticket told — once; verified by re-reading the org.

    Raises:
        ConnectorError: the offboarding did not end done (blocked, failed, denied: its reason),
            or the person is still a member (the grants stay active; the next sweep tries
            again and the offboarding continues its case).
    """
    c = OnCase.load(rt, case_id, flow_run_id=flow_run_id)

    def removed() -> tuple[str, str]:
        status = str(offboarded.get("status", "failed"))
        run = offboarded.get("run_id", "")
        effect = f"offboarded(contract_end, run {run})" if run else "offboarded(contract_end)"
        checks = offboarded.get("verification", {})
        failed = [f"{k}: {v}" for k, v in checks.items() if not is_ok(v)]
        if status not in ("done", "nothing_to_do"):
            # Its failure, its blockers, else the checks that failed: what the ticket is told.
            why = (
                offboarded.get("failure")
                or "; ".join(offboarded.get("plan", {}).get("blockers", []))
                or "; ".join(failed)
            )
            return effect, f"fail(offboarding {status}{': ' + why if why else ''})"
        if failed:
            return effect, f"fail(offboarding checks failed: {', '.join(failed)})"
        left = rt.org.get_member(action.subject)
        return effect, "pass" if left is None else f"fail(still {left.status})"

    effect, verification = _revoke_once(c, action, removed)
    notes = _comment(c, action) if action.ticket else ["no ticket known"]
    return Applied(effect, notes, verification)


def _revoke_once(
    c: OnCase, action: ExpiryAction, revoke: Callable[[], tuple[str, str]]
) -> tuple[str, str]:
    """Revoke (once per grant and end), mark the grants expired; (effect, verification)."""
    step = f"revoke:{action.key}"
    if step in c.done:
        return "noop(revoked already)", str(c.done[step]["detail"].get("verification", ""))
    effect, verification = revoke()
    if not verification:  # not revoked yet (a person's task is open): tried at the next sweep
        return effect, verification
    if verification.startswith("fail"):
        # Not marked done: the next sweep tries again.
        c.audit(_about(action), "grant.revoke_failed", verification)
        raise ConnectorError(
            f"revocation not verified: {verification}",
            system="org",
            operation=action.kind.value,
            subject=action.subject,
        )
    late = duration(action.late_by) if action.late_by else ""
    for gid in action.grant_ids:
        set_grant(c.rt.ledger, gid, status=GrantStatus.EXPIRED)
    c.mark(step, effect, {"verification": verification, "late_by": late})
    c.audit(
        _about(action),
        "grant.expired",
        effect,
        ends_at=action.ends_at.isoformat(),
        late_by=late,
        verification=verification,
        removed=action.kind.value,
    )
    return effect, verification


def _comment(c: OnCase, action: ExpiryAction) -> list[str]:
    """Tell the grant's ticket, once; the notes (commented, or why not)."""
    step = f"comment:{action.key}"
    if step in c.done:
        return []
    body = (
        f"Handover revoked the temporary access of {action.subject} ({action.what}; grant "
        f"{', '.join(map(str, action.grant_ids))}, ended "
        f"{action.ends_at.isoformat(timespec='minutes')}): {action.reason}. "
        "If access is still needed, request it again."
    )
    try:
        res = str(c.rt.tickets.comment(action.ticket, body))
    except ConnectorError as exc:  # the ledger has the record; the comment is a courtesy
        return [f"could not comment on {action.ticket}: {exc}"]
    c.mark(step, res, {"ticket": action.ticket})
    c.audit(_about(action), "ticket.commented", res)
    return [f"commented on {action.ticket}"]


def _remind(c: OnCase, action: ExpiryAction) -> Applied:
    """Remind the person and the sponsor, each once, with an Extend button."""
    key = f"{action.key}:{action.reminder}"
    step = f"remind:{key}"
    if step in c.done:
        return Applied("noop(reminded already)")
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
        if dm in c.done:
            sent.append(who)
            continue
        try:
            c.rt.messenger.dm(who, text, body)
        except ConnectorError as exc:  # not on Slack, or Slack down: said, not retried
            notes.append(f"could not tell {who}: {exc}")
            continue
        c.mark(dm, "sent")
        sent.append(who)
        notes.append(f"told {who}")
    set_grant(c.rt.ledger, gid, last_reminder=action.reminder)
    effect = "sent" if sent else "failed(nobody could be told)"
    c.mark(step, effect, {"to": sent})
    c.audit(_about(action), "grant.reminded", effect, reminder=action.reminder, to=sent)
    return Applied(effect, notes)


# ---------------------------------------------------------------------------- extension
@task(name="read_grant", cache_policy=UNCACHED)
def read_grant(rt: Runtime, grant_id: int) -> Grant:
    """The ledger's grant ``grant_id`` as it is now.

    Raises:
        ValueError: there is no such grant.
    """
    found = [g for g in grants(rt.ledger) if g.id == grant_id]
    if not found:
        raise ValueError(f"no grant {grant_id}")
    return found[0]


@task(name="extension_approval", cache_policy=UNCACHED)
def extension_approval(rt: Runtime, ext: Extension) -> ApprovalContext:
    """What the approval policy decides an extension on: the grant's project (its admins; its
    role when the project is production), module, and the person's manager (the roster)."""
    g = ext.grant
    production_roles: tuple[str, ...] = ()
    project_admins: tuple[str, ...] = ()
    unknown = bool(g.project) and not roles_by_api(rt)
    if unknown:  # SCIM only: the project counts as production, its admins are the fallback's
        production_roles = (str(g.role),) if g.role else ()
    elif g.project:
        access = require(rt.org, ProjectAccess, system="org", operation="list_projects")
        project = next((p for p in access.list_projects() if p.name == g.project), None)
        if project is not None:
            project_admins = project.admins
            if project.environment.casefold() == PRODUCTION and g.role:
                production_roles = (str(g.role),)
    roster = rt.roster.get(g.subject) if rt.roster else None
    return ApprovalContext(
        runbook="extend",
        subject=g.subject,
        requester=ext.requester,
        reason="extension",
        subject_manager=roster.manager if roster else None,
        production_roles=production_roles,
        modules=(g.module,) if g.module else (),
        project_admins=project_admins,
        project_admins_unknown=unknown,
    )


def _audit_extension(
    rt: Runtime, ext: Extension, what: str, effect: str, *, flow_run_id: str, **kw: Any
) -> None:
    g = ext.grant
    audit(
        rt,
        what,
        subject=g.subject,
        target=f"grant {g.id}",
        effect=effect,
        flow_run_id=flow_run_id,
        ticket=g.ticket,
        **kw,
    )


@task(name="record_extension_denied", cache_policy=UNCACHED)
def record_extension_denied(rt: Runtime, ext: Extension, *, state: str, flow_run_id: str) -> None:
    """The audit event of an extension that was not approved (``state``: denied, expired)."""
    _audit_extension(rt, ext, "grant.extension_denied", state, flow_run_id=flow_run_id)


@task(name="extend_grant_end", cache_policy=UNCACHED)
def extend_end(rt: Runtime, ext: Extension, *, approvers: list[str], flow_run_id: str) -> Applied:
    """Move the grant's end (approved by ``approvers``), audit it and tell its ticket; what it
    did: ``updated`` with the verification (the grant re-read), or ``noop(grant changed
    meanwhile)`` (another run, a second click, moved it first) with no verification."""
    g = ext.grant
    assert g.id is not None
    # Compare and set: another run (a second click) may have moved the end meanwhile.
    if not ext.still_due(read_grant.fn(rt, g.id)):
        return Applied("noop(grant changed meanwhile)")
    updated = set_grant(
        rt.ledger,
        g.id,
        end=ext.new_end,
        extended_from=ext.old_end,
        last_reminder="",
    )
    _audit_extension(
        rt,
        ext,
        "grant.extended",
        "updated",
        flow_run_id=flow_run_id,
        on_behalf_of=", ".join(approvers),
        before={"end": ext.old_end.isoformat()},
        after={"end": ext.new_end.isoformat(), "requester": ext.requester},
        plan_hash=ext.hash,
    )
    notes: list[str] = []
    if g.ticket:
        try:
            rt.tickets.comment(g.ticket, ext.comment(approvers))
            notes.append(f"commented on {g.ticket}")
        except Exception as exc:  # the ledger has the record; the comment is a courtesy
            notes.append(f"could not comment on {g.ticket}: {exc}")
    return Applied("updated", notes, "pass" if ext.moved(updated) else "fail")
