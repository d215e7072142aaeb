"""Offboarding plans: what Handover will do to one person, as typed steps with reasons.

:func:`make_offboarding_plan` is a pure function of the inventory (what the systems say about
the person, read just before), the options (reason, receiver, emergency, projects to keep) and
the time; it does no I/O, so it is tested as a table of cases. The plan has a stable hash: the
approvers approve that hash, and if the world changes before apply the plan is recomputed and,
if it differs, approved again.

Order of a normal offboarding (seed 004; ARCHITECTURE.md):
promote replacement admins → grant receivers project access (never to someone just promoted
there: a Viewer grant would demote them) → transfer content → remove from mapped IdP groups →
deactivate in the IdP → revoke pending invitation / remove from the org → rotate managed keys
(the new secret goes to the remaining managers by Slack DM only).
A role change with projects to keep narrows instead: nobody is removed or deactivated and no
key is rotated; only the groups (IdP and org) that grant a project outside the kept ones are
left, after an individual grant keeps whatever such a group gave in a kept project.
The steps do not depend on the order in which the inventory lists things, so the hash of a
re-plan of the same world is the same.
An emergency locks out first: IdP deactivation and group removal → revoke keys → promote
replacements (the org refuses to remove a sole admin) → remove from the org → transfer the
now-unassigned content → collect 30 days of activity for security.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.models import (
    ApiKey,
    Asset,
    IdpGroup,
    IdpUser,
    Member,
    OrgEvent,
    Project,
    ProjectGrant,
    Role,
    RosterEntry,
    RosterStatus,
)
from domain.runbook import ApprovedPlan, PlanStep, RunbookPlan
from domain.steps import OffboardParams
from domain.steps import (
    StepKind as StepKind,  # the step kinds of an offboarding, named here too
)

RECEIVER_LOGIN_DAYS = 30
ACTIVITY_DAYS = 30


class Reason(StrEnum):
    TERMINATION = "termination"
    CONTRACT_END = "contract_end"
    ROLE_CHANGE = "role_change"
    INACTIVITY = "inactivity"
    SECURITY_INCIDENT = "security_incident"
    IDP_REMOVAL = "idp_removal"


# Steps after which the person can no longer get in (the emergency path's "lockout").
LOCKOUT_KINDS = {
    StepKind.DEACTIVATE_IDP_USER,
    StepKind.REVOKE_KEY,
    StepKind.REMOVE_MEMBER,
    StepKind.REVOKE_INVITATION,
}


class Step(PlanStep):
    """One step of an offboarding."""

    kind: StepKind
    params: OffboardParams


class Inventory(BaseModel):
    """Everything the systems say about one person (and the people who may receive content)."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    member: Member | None = None
    lookalikes: list[str] = Field(default_factory=list)
    org_groups: list[tuple[str, str]] = Field(default_factory=list)  # (group id, name)
    idp_user: IdpUser | None = None
    idp_groups: list[IdpGroup] = Field(default_factory=list)  # the user's groups
    assets: list[Asset] = Field(default_factory=list)  # owned, and unassigned former-owned
    api_keys: list[ApiKey] = Field(default_factory=list)  # managed by the subject (not "keys":
    # Prefect walks results with dict(model), which would call a field named keys)
    projects: list[Project] = Field(default_factory=list)  # every project, with its admins
    people: dict[str, Member] = Field(default_factory=dict)  # possible receivers, by email
    roster: RosterEntry | None = None
    departed: list[str] = Field(default_factory=list)  # possible receivers HR says have left
    activity: list[OrgEvent] = Field(default_factory=list)  # the subject's, last 30 days
    taken_at: datetime


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Reason
    emergency: bool = False
    receiver: str | None = None
    keep_projects: tuple[str, ...] = ()  # role_change: narrow access, keep these projects
    requester: str = ""
    ticket: str = ""


class Plan(RunbookPlan[Step]):
    """An offboarding plan (see the module docstring for the order of its steps)."""

    runbook: str = "offboard"
    reason: Reason
    emergency: bool = False
    receivers: dict[str, list[str]] = Field(default_factory=dict)  # receiver → asset ids
    keep_projects: list[str] = Field(default_factory=list)  # role_change: what stays

    def hash_facts(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "emergency": self.emergency}

    def record_text(self, status: str, failed: list[str]) -> str:
        return "\n".join(
            [
                f"Offboarding of {self.subject} ({self.reason.value}"
                f"{', emergency' if self.emergency else ''}): {status}.",
                self.plan_line(),
                self.verification_line(failed),
            ]
        )

    def title(self) -> str:
        return f"Offboarding {self.subject}"

    def headline(self) -> str:
        return f"Reason: {self.reason.value}{' (emergency)' if self.emergency else ''}"

    def approved(self, approvers: list[str], **standing: str) -> ApprovedPlan:
        return (
            super().approved(approvers, **standing).model_copy(update={"receivers": self.receivers})
        )

    def resumed_from(self, approved: ApprovedPlan) -> Plan:
        """What the interrupted run already transferred is no longer in today's inventory:
        its receivers must still be checked and told what they received."""
        receivers = {k: set(v) for k, v in approved.receivers.items()}
        for who, ids in self.receivers.items():
            receivers.setdefault(who, set()).update(ids)
        return self.model_copy(
            update={"receivers": {k: sorted(v) for k, v in sorted(receivers.items())}}
        )

    def notices(self, status: str, ticket: str) -> list[tuple[str, str]]:
        """Each receiver is told what they now own, once the offboarding is done."""
        if status != "done":
            return []
        return [
            (
                receiver,
                f"You are now the owner of {len(ids)} asset(s) that belonged to {self.subject}"
                + (f" (ticket {ticket})" if ticket else "")
                + ".",
            )
            for receiver, ids in self.receivers.items()
        ]


def is_mapped_idp_group(name: str) -> bool:
    """IdP groups that provision the org (``amplitude-…``); others are not ours to change."""
    return name.lower().startswith("amplitude-")


def skeleton(email: str) -> str:
    """A comparison key for look-alikes: NFKC, confusable letters folded (0 → o, 1 → l), no dots
    (``j\\u043en.smith``, with a Cyrillic o, and ``jon.smith`` have the same skeleton). Other
    digits stay: ``user000020`` and ``user000040`` are different people, not look-alikes."""
    local = unicodedata.normalize("NFKC", email.split("@", 1)[0]).lower()
    # Cyrillic and other letters that render like Latin ones (escaped: they are the point).
    confusables = str.maketrans(
        {
            "\u0430": "a",
            "\u0435": "e",
            "\u043e": "o",
            "\u0440": "p",
            "\u0441": "c",
            "\u0443": "y",
            "\u0445": "x",
            "\u0456": "i",
            "\u0458": "j",
            "\u0455": "s",
            "\u0501": "d",
            "\u0261": "g",
            "0": "o",
            "1": "l",
            "|": "l",
        }
    )
    local = local.translate(confusables).replace("rn", "m")
    return "".join(c for c in local if c.isalpha() or c in "23456789")


def find_lookalikes(email: str, others: Iterable[str]) -> list[str]:
    """Other accounts that look like ``email``: same name at another domain, or unicode tricks."""
    key = skeleton(email)
    same = email.strip().lower()  # emails are case-insensitive: that is the account itself
    return sorted(o for o in others if o.strip().lower() != same and skeleton(o) == key)


def eligible(m: Member | None, now: datetime) -> str | None:
    """Why ``m`` cannot receive content (None when they can): the product's 30-day rule."""
    if m is None:
        return "not a member"
    if m.status != "joined":
        return "has not joined"
    if m.last_login_at is None or now - m.last_login_at > timedelta(days=RECEIVER_LOGIN_DAYS):
        last = m.last_login_at.date().isoformat() if m.last_login_at else "never"
        return f"not logged in within {RECEIVER_LOGIN_DAYS} days (last {last})"
    return None


def receiver_problem(inv: Inventory, email: str, now: datetime) -> str | None:
    """Why ``email`` cannot receive the leaver's content: the product's rule, or HR's word."""
    if email in inv.departed:
        return "terminated per the HR roster"
    return eligible(inv.people.get(email), now)


def _access(m: Member, project: str, admins: Iterable[str] = ()) -> Role | None:
    """``m``'s role in ``project`` (None: no access); the project's admins count as Admin."""
    for g in m.projects:
        if g.project == project:
            return g.role
    return Role.ADMIN if m.org_role is Role.ADMIN or m.email in admins else None


def make_offboarding_plan(inv: Inventory, opts: Options) -> Plan:
    """The plan for one person (pure; see the module docstring)."""
    now = inv.taken_at
    plan = Plan(
        subject=inv.subject,
        reason=opts.reason,
        emergency=opts.emergency,
        keep_projects=list(opts.keep_projects),
    )
    steps: list[Step] = []
    add: Callable[..., None] = lambda kind, target, reason, **params: steps.append(  # noqa: E731
        Step(id=f"{kind.value}:{target}", kind=kind, target=target, reason=reason, params=params)
    )
    if inv.lookalikes:
        plan.warnings.append(
            "look-alike accounts exist (not touched): " + ", ".join(inv.lookalikes)
        )
    m = inv.member
    narrowing = opts.reason is Reason.ROLE_CHANGE and bool(opts.keep_projects)
    projects_by_name = {p.name: p for p in inv.projects}

    # --- sole-admin projects: a replacement, promoted first -----------------------------------
    manager = inv.roster.manager if inv.roster else None
    promotions: list[tuple[str, str]] = []
    for p in sorted(inv.projects, key=lambda p: p.name):
        if set(p.admins) != {inv.subject}:
            continue
        if narrowing and p.name in opts.keep_projects:
            continue
        cands = ([opts.receiver] if opts.receiver else []) + ([manager] if manager else [])
        cands += sorted(
            e for e, pm in inv.people.items() if _access(pm, p.name, p.admins) is not None
        )
        who = next(
            (c for c in cands if c and c != inv.subject and receiver_problem(inv, c, now) is None),
            None,
        )
        if who is None:
            plan.blockers.append(
                f"{inv.subject} is the sole Admin of {p.name} and nobody "
                "qualifies to replace them: choose one (--receiver)"
            )
        else:
            promotions.append((who, p.name))
    promoted_in: dict[str, list[str]] = defaultdict(list)
    for who, project in promotions:
        promoted_in[project].append(who)

    # --- who receives what -------------------------------------------------------------------
    moving = [a for a in inv.assets if not narrowing or a.project not in opts.keep_projects]
    granted: set[tuple[str, str]] = set()
    grants: list[tuple[str, str]] = []
    receivers: dict[str, list[str]] = defaultdict(list)
    unplaced: dict[str, list[str]] = defaultdict(list)
    receiver_ok = False
    if opts.receiver:
        why = (
            "is the person leaving"
            if opts.receiver == inv.subject
            else receiver_problem(inv, opts.receiver, now)
        )
        if why:
            plan.blockers.append(f"the receiver {opts.receiver} cannot receive content: {why}")
        receiver_ok = not why
    mgr_why = None
    if manager and not opts.receiver:
        mgr_why = receiver_problem(inv, manager, now)
        if mgr_why:
            plan.warnings.append(
                f"manager {manager} cannot receive content ({mgr_why}): "
                "falling back to each project's admin"
            )
    for a in moving:
        choice = None
        admins = projects_by_name[a.project].admins if a.project in projects_by_name else ()
        admins = (*admins, *promoted_in.get(a.project, ()))  # a replacement counts as admin
        if receiver_ok:
            choice = opts.receiver
        elif manager and not opts.receiver and not mgr_why and manager != inv.subject:
            choice = manager
        if choice is None:
            choice = next(
                (
                    p
                    for p in sorted(admins)
                    if p != inv.subject and receiver_problem(inv, p, now) is None
                ),
                None,
            )
        if choice is None:
            unplaced[a.project].append(a.id)
            continue
        receivers[choice].append(a.id)
        rm = inv.people.get(choice)
        if (
            rm is not None
            and _access(rm, a.project, admins) is None
            and (choice, a.project) not in granted
        ):
            granted.add((choice, a.project))
            grants.append((choice, a.project))
    for project, ids in sorted(unplaced.items()):
        plan.blockers.append(
            f"nobody qualifies to receive {len(ids)} asset(s) in {project}: "
            "choose a receiver (--receiver)"
        )
    plan.receivers = {
        k: sorted(v, key=int) if all(x.isdigit() for x in v) else sorted(v)
        for k, v in sorted(receivers.items())
    }

    # --- what a narrowing leaves: groups that grant a project outside the kept ones ----------
    kept = set(opts.keep_projects)
    leaving: set[str] = set()  # group names
    keep_grants: list[ProjectGrant] = []  # kept projects that such a group grants
    if narrowing and m is not None:
        for g in m.projects:
            if g.project not in kept:
                leaving |= {src[6:] for src in g.sources if src.startswith("group:")}
        keep_grants = sorted(
            (
                g
                for g in m.projects
                if g.project in kept and any(src[6:] in leaving for src in g.sources)
            ),
            key=lambda g: g.project,
        )

    # --- the steps, in order -------------------------------------------------------------------
    idp_mapped = sorted(
        (g for g in inv.idp_groups if is_mapped_idp_group(g.name)), key=lambda g: (g.name, g.id)
    )
    idp_active = inv.idp_user is not None and inv.idp_user.active
    if narrowing:
        # A person in no mapped group is deprovisioned by the next sync: only the groups that
        # grant something outside the kept projects go (org-role groups stay).
        idp_leaving = [g for g in idp_mapped if g.name in leaving]
        if idp_leaving and len(idp_leaving) == len(idp_mapped) and m is not None and m.idp_managed:
            plan.blockers.append(
                f"leaving {', '.join(g.name for g in idp_leaving)} puts {inv.subject} in no "
                "mapped IdP group: the next IdP sync would remove them from the org; add them "
                "to a mapped group for what they keep first (or offboard them fully)"
            )
        idp_mapped = idp_leaving

    def lockout_idp() -> None:
        for g in idp_mapped:
            add(
                StepKind.REMOVE_IDP_GROUP,
                g.id,
                f"IdP group {g.name} grants a project they no longer need: remove it in the "
                "IdP, or the next sync adds it back"
                if narrowing
                else f"IdP group {g.name} provisions the org: "
                "remove first, or the next sync re-provisions them",
                group=g.name,
                user_id=inv.idp_user.id if inv.idp_user else "",
            )
        if idp_active and not narrowing:
            add(
                StepKind.DEACTIVATE_IDP_USER,
                inv.idp_user.id,  # type: ignore[union-attr]
                "deactivate in the IdP before removing from the org",
                email=inv.subject,
            )

    def promote() -> None:
        for who, project in promotions:
            add(
                StepKind.PROMOTE_ADMIN,
                project,
                f"{inv.subject} is the sole Admin of {project}: promote {who} first",
                email=who,
            )

    def transfer() -> None:
        promoted = set(promotions)
        for who, project in sorted(grants):
            if (who, project) in promoted:
                continue  # promoted to Admin there: a Viewer grant would demote them
            add(
                StepKind.GRANT_PROJECT_ACCESS,
                f"{who}:{project}",
                f"{who} receives content in {project} without access to it",
                email=who,
                project=project,
                role=Role.VIEWER.value,
            )
        for who, ids in plan.receivers.items():
            add(
                StepKind.TRANSFER_ASSETS,
                who,
                f"{len(ids)} asset(s) of {inv.subject} go to {who}",
                asset_ids=ids,
                from_email=inv.subject,
            )

    def keep_access() -> None:
        for g in keep_grants:
            add(
                StepKind.GRANT_PROJECT_ACCESS,
                f"{inv.subject}:{g.project}",
                f"role change: keeps {g.project} ({g.role.value}) once the groups that also "
                "grant other projects are left",
                email=inv.subject,
                project=g.project,
                role=g.role.value,
            )

    def keys(kind: StepKind) -> None:
        for k in sorted(inv.api_keys, key=lambda k: k.id):
            if k.status != "active":
                continue
            others = sorted({x for x in k.managers if x != inv.subject})
            if not others and kind is StepKind.ROTATE_KEY:
                plan.warnings.append(
                    f"key {k.name!r} ({k.id}) has no other manager: nobody receives the new "
                    "secret; name one before it is rotated"
                )
            add(
                kind,
                k.id,
                f"{inv.subject} manages key {k.name!r}"
                + ("" if kind is StepKind.ROTATE_KEY else ": revoked at once (emergency)"),
                name=k.name,
                notify=others,
            )

    def remove() -> None:
        if m is None:
            return
        if narrowing:
            for g in sorted(m.projects, key=lambda g: g.project):
                if g.project not in kept and "individual" in g.sources:
                    add(
                        StepKind.REMOVE_PROJECT_ROLE,
                        g.project,
                        f"role change: no longer needs {g.project}",
                        email=inv.subject,
                    )
            for gid, name in sorted(inv.org_groups):
                if name not in leaving:
                    continue
                add(
                    StepKind.REMOVE_GROUP_MEMBERSHIP,
                    gid,
                    f"group {name} grants access beyond the projects kept",
                    email=inv.subject,
                    group=name,
                )
            if m.modules:
                add(
                    StepKind.REVOKE_MODULES,
                    inv.subject,
                    "role change: modules off",
                    modules=sorted(x.value for x in m.modules),
                )
            return
        if m.status == "pending":
            add(StepKind.REVOKE_INVITATION, inv.subject, "revoke the pending invitation")
        else:
            add(StepKind.REMOVE_MEMBER, inv.subject, f"offboarding ({opts.reason.value})")

    if opts.emergency:
        lockout_idp()
        keys(StepKind.REVOKE_KEY)
        promote()
        remove()
        transfer()
        add(
            StepKind.COLLECT_ACTIVITY,
            inv.subject,
            f"security: the last {ACTIVITY_DAYS} days of exports, changes and invitations",
            days=ACTIVITY_DAYS,
        )
    else:
        promote()
        transfer()
        keep_access()
        lockout_idp()
        remove()
        if not narrowing:
            keys(StepKind.ROTATE_KEY)

    since = now - timedelta(days=ACTIVITY_DAYS)
    recent_exports = [e for e in inv.activity if e.action == "export" and e.at >= since]
    if recent_exports:
        plan.warnings.append(
            f"{len(recent_exports)} data export(s) by {inv.subject} in the "
            f"last {ACTIVITY_DAYS} days"
        )
    if (
        inv.roster
        and inv.roster.status is RosterStatus.ACTIVE
        and opts.reason in (Reason.TERMINATION, Reason.CONTRACT_END)
    ):
        plan.warnings.append(f"the HR roster still lists {inv.subject} as active")
    plan.steps = steps
    return plan
