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

The planner is a short sequence of named rules, each a small pure function with its own table
of cases (``tests/domain/test_plan_rules.py``): :func:`choose_replacements` (sole-admin
projects), :func:`place_assets` (who receives what, who needs access first), the narrowing
rules (:func:`groups_to_leave`, :func:`grants_to_keep`, :func:`idp_groups_to_leave`), one
builder per phase (:func:`promote_steps`, :func:`transfer_steps`, :func:`idp_steps`,
:func:`key_steps`, :func:`org_removal_steps` or :func:`narrowing_steps`, …), the two orders
(:func:`normal_order`, :func:`emergency_order`) and the warnings and blockers they raise
(among them :func:`sole_org_admin_blockers`: the org's only Admin is never removed).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
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
from domain.steps import (
    CollectActivity,
    DeactivateIdpUser,
    EndIdpSessions,
    GrantProjectAccess,
    HumanTask,
    OffboardParams,
    PromoteAdmin,
    RemoveGroupMembership,
    RemoveIdpGroup,
    RemoveMember,
    RemoveOwnProjectRole,
    RevokeInvitation,
    RevokeKey,
    RevokeModules,
    RotateKey,
    TransferAssets,
)
from domain.steps import (
    StepKind as StepKind,  # the step kinds of an offboarding, named here too
)
from domain.tasks import (
    export_activity_task,
    narrow_access_task,
    replace_sole_admin_task,
    rotate_keys_task,
    transfer_content_task,
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
    org_admins: list[str] | None = None  # the org's joined Admins (None: the org does not say)
    # What the org has no API to read (a SCIM-only org: "assets", "keys", "projects",
    # "activity"): the plan puts a human task where a step would need it.
    unreadable: list[str] = Field(default_factory=list)
    # Whether the IdP has an API to end a user's sessions (Okta, Entra; a generic SCIM IdP has
    # none: the plan then warns that the leaver's live sessions last until they expire).
    idp_ends_sessions: bool = False
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
    if m.status == "unknown":
        # A SCIM-only org says neither whether they joined nor when they last logged in: the
        # transfer task asks the person doing it to check (domain.tasks).
        return None
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


# --- the rules -----------------------------------------------------------------------------------
# Each rule is a small pure function of the inventory and the options (and of what an earlier
# rule chose); make_offboarding_plan runs them and puts their steps in the runbook's order.


def is_narrowing(opts: Options) -> bool:
    """A role change with projects to keep narrows access instead of offboarding."""
    return opts.reason is Reason.ROLE_CHANGE and bool(opts.keep_projects)


def manager_of(inv: Inventory) -> str | None:
    """The leaver's manager on the HR roster."""
    return inv.roster.manager if inv.roster else None


def lookalike_warnings(inv: Inventory) -> list[str]:
    """Accounts that look like the leaver's: named to the approvers, never touched."""
    if not inv.lookalikes:
        return []
    return ["look-alike accounts exist (not touched): " + ", ".join(inv.lookalikes)]


# --- sole-admin projects: a replacement, promoted first ------------------------------------------
def sole_admin_projects(inv: Inventory, opts: Options) -> list[Project]:
    """The projects whose only Admin is the leaver (but those a narrowing keeps), by name."""
    return [
        p
        for p in sorted(inv.projects, key=lambda p: p.name)
        if set(p.admins) == {inv.subject}
        and not (is_narrowing(opts) and p.name in opts.keep_projects)
    ]


def replacement_for(inv: Inventory, opts: Options, *, project: Project) -> str | None:
    """Who replaces the leaver as Admin of ``project``: the receiver, the manager, then anyone
    with access to it (by email) — the first who may receive content."""
    candidates = [c for c in (opts.receiver, manager_of(inv)) if c]
    candidates += sorted(
        e for e, m in inv.people.items() if _access(m, project.name, project.admins) is not None
    )
    return next(
        (
            c
            for c in candidates
            if c != inv.subject and receiver_problem(inv, c, inv.taken_at) is None
        ),
        None,
    )


def choose_replacements(inv: Inventory, opts: Options) -> tuple[list[tuple[str, str]], list[str]]:
    """``(who, project)`` to promote for each sole-admin project, and a blocker for each project
    nobody qualifies to take over."""
    promotions: list[tuple[str, str]] = []
    blockers: list[str] = []
    for p in sole_admin_projects(inv, opts):
        who = replacement_for(inv, opts, project=p)
        if who is None:
            blockers.append(
                f"{inv.subject} is the sole Admin of {p.name} and nobody "
                "qualifies to replace them: choose one (--receiver)"
            )
        else:
            promotions.append((who, p.name))
    return promotions, blockers


# --- who receives what ---------------------------------------------------------------------------
def _receiver_refusal(inv: Inventory, opts: Options) -> str | None:
    """Why the receiver named (``--receiver``) cannot receive content (None: they can)."""
    if not opts.receiver:
        return None
    if opts.receiver == inv.subject:
        return "is the person leaving"
    return receiver_problem(inv, opts.receiver, inv.taken_at)


def receiver_blockers(inv: Inventory, opts: Options) -> list[str]:
    """The receiver named cannot receive content: a person must choose another."""
    why = _receiver_refusal(inv, opts)
    return [f"the receiver {opts.receiver} cannot receive content: {why}"] if why else []


def sole_org_admin_blockers(inv: Inventory, opts: Options) -> list[str]:
    """The org's only Admin cannot be removed until another is designated (seed 002), and
    choosing who gets the org's highest role is a person's decision, not a planner's: block
    before anything is written. An emergency still locks them out (IdP first); the org then
    refuses the removal and the run says so."""
    m = inv.member
    removing = m is not None and m.status != "pending" and not is_narrowing(opts)
    if not removing or opts.emergency or inv.org_admins is None:
        return []
    if m is not None and m.org_role is Role.ADMIN and not set(inv.org_admins) - {inv.subject}:
        return [
            f"{inv.subject} is the organization's only Admin: promote another Admin first "
            "(Settings > Organization settings > Members & Groups), then run again"
        ]
    return []


def manager_warnings(inv: Inventory, opts: Options) -> list[str]:
    """No receiver named and the manager cannot receive content: each project's admin will."""
    manager = manager_of(inv)
    if not manager or opts.receiver:
        return []
    why = receiver_problem(inv, manager, inv.taken_at)
    if not why:
        return []
    return [
        f"manager {manager} cannot receive content ({why}): falling back to each project's admin"
    ]


def default_receiver(inv: Inventory, opts: Options) -> str | None:
    """Who receives all the content: the receiver named if they may, else (none named) the
    manager if they may; None: each asset goes to an admin of its project."""
    if opts.receiver:
        return None if _receiver_refusal(inv, opts) else opts.receiver
    manager = manager_of(inv)
    if manager and manager != inv.subject and not receiver_problem(inv, manager, inv.taken_at):
        return manager
    return None


def admins_after_promotion(
    inv: Inventory, promotions: list[tuple[str, str]]
) -> dict[str, tuple[str, ...]]:
    """Each project's admins once the replacements are promoted (a replacement counts)."""
    admins = {p.name: p.admins for p in inv.projects}
    for who, project in promotions:
        admins[project] = (*admins.get(project, ()), who)
    return admins


def moving_assets(inv: Inventory, opts: Options) -> list[Asset]:
    """The assets that change owner: all of them, or (narrowing) those outside the kept
    projects."""
    if not is_narrowing(opts):
        return list(inv.assets)
    return [a for a in inv.assets if a.project not in opts.keep_projects]


def receiver_of(inv: Inventory, default: str | None, *, admins: Iterable[str]) -> str | None:
    """Who receives an asset: the default receiver, else the first of its project's admins (by
    email) who may receive content; None: nobody qualifies."""
    if default is not None:
        return default
    return next(
        (
            a
            for a in sorted(admins)
            if a != inv.subject and receiver_problem(inv, a, inv.taken_at) is None
        ),
        None,
    )


def needs_access(inv: Inventory, who: str, *, project: str, admins: Iterable[str]) -> bool:
    """A receiver with no access to ``project`` must be granted it before a transfer."""
    m = inv.people.get(who)
    return m is not None and _access(m, project, admins) is None


def _sorted_ids(ids: list[str]) -> list[str]:
    return sorted(ids, key=int) if all(x.isdigit() for x in ids) else sorted(ids)


@dataclass
class Placement:
    """Where the leaver's content goes."""

    receivers: dict[str, list[str]] = field(default_factory=dict)  # receiver → asset ids
    grants: list[tuple[str, str]] = field(default_factory=list)  # (receiver, project) to grant
    unplaced: dict[str, list[str]] = field(default_factory=dict)  # project → asset ids


def place_assets(inv: Inventory, opts: Options, *, promotions: list[tuple[str, str]]) -> Placement:
    """Who receives each moving asset, who needs project access first, and what nobody may
    receive (receivers sorted by email, their asset ids in order)."""
    default = default_receiver(inv, opts)
    admins_of = admins_after_promotion(inv, promotions)
    out = Placement()
    for a in moving_assets(inv, opts):
        admins = admins_of.get(a.project, ())
        who = receiver_of(inv, default, admins=admins)
        if who is None:
            out.unplaced.setdefault(a.project, []).append(a.id)
            continue
        out.receivers.setdefault(who, []).append(a.id)
        if (
            needs_access(inv, who, project=a.project, admins=admins)
            and (who, a.project) not in out.grants
        ):
            out.grants.append((who, a.project))
    out.receivers = {k: _sorted_ids(v) for k, v in sorted(out.receivers.items())}
    return out


def unplaced_blockers(placement: Placement) -> list[str]:
    """Content nobody qualifies to receive, per project: a person must choose a receiver."""
    return [
        f"nobody qualifies to receive {len(ids)} asset(s) in {project}: "
        "choose a receiver (--receiver)"
        for project, ids in sorted(placement.unplaced.items())
    ]


# --- narrowing (a role change with projects to keep) ---------------------------------------------
def _group_names(grant: ProjectGrant) -> set[str]:
    """The groups a grant comes from (its ``group:<name>`` sources)."""
    return {s.removeprefix("group:") for s in grant.sources if s.startswith("group:")}


def groups_to_leave(inv: Inventory, opts: Options) -> set[str]:
    """Narrowing: the groups (by name) that grant a project outside the kept ones."""
    if not is_narrowing(opts) or inv.member is None:
        return set()
    return {
        name
        for g in inv.member.projects
        if g.project not in opts.keep_projects
        for name in _group_names(g)
    }


def grants_to_keep(inv: Inventory, opts: Options, *, leaving: set[str]) -> list[ProjectGrant]:
    """Narrowing: the kept projects that a group being left also grants (kept by an individual
    grant), by project."""
    if not is_narrowing(opts) or inv.member is None:
        return []
    return sorted(
        (
            g
            for g in inv.member.projects
            if g.project in opts.keep_projects and _group_names(g) & leaving
        ),
        key=lambda g: g.project,
    )


def idp_groups_to_leave(inv: Inventory, opts: Options, *, leaving: set[str]) -> list[IdpGroup]:
    """The mapped IdP groups to leave, by name: all of them, or (narrowing) those behind a
    group being left — the org-role groups stay, or the next sync deprovisions the person."""
    mapped = sorted(
        (g for g in inv.idp_groups if is_mapped_idp_group(g.name)), key=lambda g: (g.name, g.id)
    )
    return [g for g in mapped if g.name in leaving] if is_narrowing(opts) else mapped


def idp_sync_blockers(inv: Inventory, opts: Options, *, leaving: set[str]) -> list[str]:
    """Narrowing an IdP-managed member out of every mapped IdP group: the next sync would
    remove them from the org."""
    going = idp_groups_to_leave(inv, opts, leaving=leaving)
    mapped = [g for g in inv.idp_groups if is_mapped_idp_group(g.name)]
    m = inv.member
    if not (is_narrowing(opts) and going and len(going) == len(mapped)):
        return []
    if m is None or not m.idp_managed:
        return []
    return [
        f"leaving {', '.join(g.name for g in going)} puts {inv.subject} in no "
        "mapped IdP group: the next IdP sync would remove them from the org; add them "
        "to a mapped group for what they keep first (or offboard them fully)"
    ]


# --- the steps of each phase ---------------------------------------------------------------------
def promote_steps(inv: Inventory, promotions: list[tuple[str, str]]) -> list[Step]:
    """Promote each sole-admin project's replacement."""
    return [
        Step.of(
            PromoteAdmin(email=who),
            project,
            reason=f"{inv.subject} is the sole Admin of {project}: promote {who} first",
        )
        for who, project in promotions
    ]


def transfer_steps(
    inv: Inventory, placement: Placement, *, promotions: list[tuple[str, str]]
) -> list[Step]:
    """Viewer access for receivers who lack it (never where they were just promoted: that would
    demote them), then one transfer per receiver."""
    grants = [
        Step.of(
            GrantProjectAccess(email=who, project=project, role=Role.VIEWER),
            f"{who}:{project}",
            reason=f"{who} receives content in {project} without access to it",
        )
        for who, project in sorted(placement.grants)
        if (who, project) not in promotions
    ]
    transfers = [
        Step.of(
            TransferAssets(asset_ids=ids, from_email=inv.subject),
            who,
            reason=f"{len(ids)} asset(s) of {inv.subject} go to {who}",
        )
        for who, ids in placement.receivers.items()
    ]
    return grants + transfers


def keep_access_steps(inv: Inventory, keep: list[ProjectGrant]) -> list[Step]:
    """Narrowing: an individual grant for what a group being left gave in a kept project."""
    return [
        Step.of(
            GrantProjectAccess(email=inv.subject, project=g.project, role=g.role),
            f"{inv.subject}:{g.project}",
            reason=f"role change: keeps {g.project} ({g.role.value}) once the groups that also "
            "grant other projects are left",
        )
        for g in keep
    ]


def idp_steps(
    inv: Inventory, groups: list[IdpGroup], *, narrowing: bool, emergency: bool = False
) -> list[Step]:
    """Out of the mapped IdP groups first (or the next sync re-provisions), then (offboarding)
    deactivated in the IdP and their live sessions ended (after the deactivation, so no new
    one starts meanwhile). An emergency locks out first: deactivated, sessions ended, then
    out of the groups."""
    user = inv.idp_user
    steps = [
        Step.of(
            RemoveIdpGroup(group=g.name, user_id=user.id if user else ""),
            g.id,
            reason=f"IdP group {g.name} grants a project they no longer need: remove it in the "
            "IdP, or the next sync adds it back"
            if narrowing
            else f"IdP group {g.name} provisions the org: "
            "remove first, or the next sync re-provisions them",
        )
        for g in groups
    ]
    if user is None or narrowing:
        return steps
    lockout = []
    if user.active:
        lockout.append(
            Step.of(
                DeactivateIdpUser(email=inv.subject),
                user.id,
                reason="deactivate in the IdP before removing from the org",
            )
        )
    if inv.idp_ends_sessions and _still_signed_in(inv, user):
        lockout.append(
            Step.of(
                EndIdpSessions(email=inv.subject),
                user.id,
                reason="a deactivated user's live session keeps working until it expires",
            )
        )
    return lockout + steps if emergency else steps + lockout


def _still_signed_in(inv: Inventory, user: IdpUser) -> bool:
    """Whether there is someone whose sessions to end: active in the IdP, or (deactivated there
    already, e.g. by HR) still in the org — their sessions may outlive the deactivation."""
    return user.active or inv.member is not None


def session_warnings(inv: Inventory, opts: Options) -> list[str]:
    """Sessions no API of the IdP can end (a generic SCIM IdP): said, never skipped silently."""
    user = inv.idp_user
    if inv.idp_ends_sessions or user is None or is_narrowing(opts):
        return []
    if not _still_signed_in(inv, user):
        return []
    return [
        f"the IdP has no API to end sessions: {inv.subject}'s live sign-in sessions last "
        "until they expire — end them in the IdP's admin console"
    ]


def key_steps(inv: Inventory, opts: Options) -> tuple[list[Step], list[str]]:
    """The leaver's active keys: revoked at once in an emergency, else rotated (the new secret
    to the other managers; a warning when there is none); a narrowing keeps them."""
    steps: list[Step] = []
    warnings: list[str] = []
    if is_narrowing(opts) and not opts.emergency:
        return steps, warnings
    for k in sorted(inv.api_keys, key=lambda k: k.id):
        if k.status != "active":
            continue
        others = sorted({x for x in k.managers if x != inv.subject})
        reason = f"{inv.subject} manages key {k.name!r}"
        if opts.emergency:
            revoke = RevokeKey(name=k.name, notify=others)
            steps.append(Step.of(revoke, k.id, reason=reason + ": revoked at once (emergency)"))
            continue
        if not others:
            warnings.append(
                f"key {k.name!r} ({k.id}) has no other manager: nobody receives the new "
                "secret; name one before it is rotated"
            )
        steps.append(Step.of(RotateKey(name=k.name, notify=others), k.id, reason=reason))
    return steps, warnings


def narrowing_steps(inv: Inventory, opts: Options, *, leaving: set[str]) -> list[Step]:
    """Narrowing: the individual grants outside the kept projects, the org groups being left,
    and the modules."""
    m, s = inv.member, inv.subject
    if m is None:
        return []
    if "projects" in inv.unreadable:  # SCIM only: a person narrows it in the console
        task = narrow_access_task(s, list(opts.keep_projects))
        return [_task(task, s, "project roles, groups and modules: the org has no API for them")]
    steps = [
        Step.of(
            RemoveOwnProjectRole(email=s),
            g.project,
            reason=f"role change: no longer needs {g.project}",
        )
        for g in sorted(m.projects, key=lambda g: g.project)
        if g.project not in opts.keep_projects and "individual" in g.sources
    ]
    steps += [
        Step.of(
            RemoveGroupMembership(email=s, group=name),
            gid,
            reason=f"group {name} grants access beyond the projects kept",
        )
        for gid, name in sorted(inv.org_groups)
        if name in leaving
    ]
    if m.modules:
        modules = sorted(m.modules, key=lambda x: x.value)
        steps.append(Step.of(RevokeModules(modules=modules), s, reason="role change: modules off"))
    return steps


def org_removal_steps(inv: Inventory, opts: Options) -> list[Step]:
    """Out of the org: the pending invitation revoked, or the member removed."""
    if inv.member is None:
        return []
    if inv.member.status == "pending":
        return [Step.of(RevokeInvitation(), inv.subject, reason="revoke the pending invitation")]
    return [Step.of(RemoveMember(), inv.subject, reason=f"offboarding ({opts.reason.value})")]


def collect_activity_step(inv: Inventory) -> Step:
    """Emergency: what the leaver did lately, for security."""
    return Step.of(
        CollectActivity(days=ACTIVITY_DAYS),
        inv.subject,
        reason=f"security: the last {ACTIVITY_DAYS} days of exports, changes and invitations",
    )


# --- what no API can do: human tasks -------------------------------------------------------------
def _task(task: HumanTask, subject: str, reason: str) -> Step:
    # One task of each kind per person: the kind in the target keeps the step ids apart.
    return Step.of(task, f"{task.task.value}:{subject}", reason=reason)


def _in_org(inv: Inventory) -> bool:
    # A member who may own content: not an invitee (SCIM says "unknown", not "joined").
    return inv.member is not None and inv.member.status != "pending"


def console_receiver_blockers(inv: Inventory, opts: Options) -> list[str]:
    """Content the org cannot list still goes to someone: the transfer task names them."""
    if "assets" not in inv.unreadable or not _in_org(inv) or is_narrowing(opts):
        return []
    if default_receiver(inv, opts) is not None:
        return []
    return [
        f"the org cannot list the content of {inv.subject}: name who receives it "
        "(--receiver, an active member) for the transfer task"
    ]


def console_tasks(inv: Inventory, opts: Options) -> Phases:
    """The human tasks standing in for the steps the org has no API for (seed 004: do not skip
    the asset transfer; replace a sole Admin first; rotate the keys they manage), in the
    phases those steps would take; empty where the org can read and do everything."""
    none = Phases([], [], [], [], [], [], [])
    if not inv.unreadable or not _in_org(inv) or is_narrowing(opts):
        return none
    s, no_api = inv.subject, "the org has no API for it: a person does it in the console"
    receiver = default_receiver(inv, opts)
    promote = (
        [_task(replace_sole_admin_task(s, receiver), s, f"project roles: {no_api}")]
        if "projects" in inv.unreadable
        else []
    )
    transfer = (
        [_task(transfer_content_task(s, receiver), s, f"content transfer: {no_api}")]
        if "assets" in inv.unreadable and receiver is not None
        else []
    )
    keys = (
        [_task(rotate_keys_task(s, revoke=opts.emergency), s, f"API keys: {no_api}")]
        if "keys" in inv.unreadable
        else []
    )
    collect = (
        [_task(export_activity_task(s, ACTIVITY_DAYS), s, f"activity: {no_api}")]
        if opts.emergency and "activity" in inv.unreadable
        else []
    )
    return Phases(promote, transfer, [], [], keys, [], collect)


# --- the order -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phases:
    """The steps of each phase, before they are put in order."""

    promote: list[Step]
    transfer: list[Step]  # access grants, then transfers
    keep_access: list[Step]
    idp: list[Step]
    keys: list[Step]
    remove: list[Step]  # from the org, or (narrowing) from what is not kept
    collect: list[Step]


def normal_order(p: Phases, t: Phases) -> list[Step]:
    """Promote → access and transfers → keep (narrowing) → IdP → org → keys; each human task
    (``t``) where its step would be, so the removal waits for the transfer and the
    replacement Admin."""
    return [
        *p.promote,
        *t.promote,
        *p.transfer,
        *t.transfer,
        *p.keep_access,
        *p.idp,
        *p.remove,
        *p.keys,
        *t.keys,
    ]


def emergency_order(p: Phases, t: Phases) -> list[Step]:
    """Lock out first: IdP → revoke keys → promote (the org refuses to remove a sole admin) →
    org → access and transfers of the now-unassigned content → collect activity. Nobody waits
    for a person before the IdP lockout. Where keys and roles are a person's tasks (``t``, a
    SCIM-only org), the key revocation and the sole-Admin replacement come right after the
    IdP lockout and before the org removal: the org refuses to remove a sole Admin, and this
    org cannot say whether they are one (the removal would fail half-done); the rest after."""
    return [
        *p.idp,
        *p.keys,
        *t.keys,
        *p.promote,
        *t.promote,
        *p.remove,
        *p.transfer,
        *t.transfer,
        *p.collect,
        *t.collect,
    ]


# --- what the approvers are told besides the steps -----------------------------------------------
def export_warnings(inv: Inventory) -> list[str]:
    """Data the leaver exported lately."""
    since = inv.taken_at - timedelta(days=ACTIVITY_DAYS)
    n = sum(1 for e in inv.activity if e.action == "export" and e.at >= since)
    if not n:
        return []
    return [f"{n} data export(s) by {inv.subject} in the last {ACTIVITY_DAYS} days"]


def roster_warnings(inv: Inventory, opts: Options) -> list[str]:
    """A termination or contract end of someone HR still lists as active."""
    leaving = opts.reason in (Reason.TERMINATION, Reason.CONTRACT_END)
    if inv.roster and inv.roster.status is RosterStatus.ACTIVE and leaving:
        return [f"the HR roster still lists {inv.subject} as active"]
    return []


def make_offboarding_plan(inv: Inventory, opts: Options) -> Plan:
    """The plan for one person (pure; see the module docstring)."""
    promotions, replacement_blockers = choose_replacements(inv, opts)
    placement = place_assets(inv, opts, promotions=promotions)
    leaving = groups_to_leave(inv, opts)
    narrowing = is_narrowing(opts)
    keys, key_warnings = key_steps(inv, opts)
    phases = Phases(
        promote=promote_steps(inv, promotions),
        transfer=transfer_steps(inv, placement, promotions=promotions),
        keep_access=keep_access_steps(inv, grants_to_keep(inv, opts, leaving=leaving)),
        idp=idp_steps(
            inv,
            idp_groups_to_leave(inv, opts, leaving=leaving),
            narrowing=narrowing,
            emergency=opts.emergency,
        ),
        keys=keys,
        remove=narrowing_steps(inv, opts, leaving=leaving)
        if narrowing
        else org_removal_steps(inv, opts),
        collect=[] if "activity" in inv.unreadable else [collect_activity_step(inv)],
    )
    tasks = console_tasks(inv, opts)
    return Plan(
        subject=inv.subject,
        reason=opts.reason,
        emergency=opts.emergency,
        keep_projects=list(opts.keep_projects),
        receivers=placement.receivers,
        steps=emergency_order(phases, tasks) if opts.emergency else normal_order(phases, tasks),
        warnings=[
            *lookalike_warnings(inv),
            *manager_warnings(inv, opts),
            *key_warnings,
            *export_warnings(inv),
            *roster_warnings(inv, opts),
            *session_warnings(inv, opts),
        ],
        blockers=[
            *sole_org_admin_blockers(inv, opts),
            *replacement_blockers,
            *receiver_blockers(inv, opts),
            *unplaced_blockers(placement),
            *idp_sync_blockers(inv, opts, leaving=leaving),
            *console_receiver_blockers(inv, opts),
        ],
    )
