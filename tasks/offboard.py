"""The offboarding runbook's tasks: take the inventory, apply one step, verify, record.

Tasks are thin (STYLE.md point 7): the rules are in ``domain.plan``; here each step reads or
writes through a connector, is skipped when the case already did it, and leaves an audit event.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, assert_never

from prefect import task
from pydantic import SecretStr

from approvals.secret_links import erase_expired_secrets, link_of, link_ttl, secret_box
from connectors.capabilities import (
    AssetOwnership,
    Invitations,
    KeyManagement,
    MemberDirectory,
    ModuleAccess,
    OrgActivityLog,
    PermissionGroups,
    ProjectAccess,
    SessionControl,
    has,
    require,
)
from connectors.errors import ConnectorError
from domain.models import ApiKey, Member, Project, Role, RosterStatus, WriteResult
from domain.plan import (
    ACTIVITY_DAYS,
    Inventory,
    Plan,
    Step,
    StepKind,
    eligible,
    find_lookalikes,
    is_mapped_idp_group,
)
from domain.records import ApprovalState
from domain.steps import (
    CollectActivity,
    DeactivateIdpUser,
    EndIdpSessions,
    GrantProjectAccess,
    HumanTask,
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
from domain.tasks import REPORTED
from ledger.approvals import get_approval
from ledger.cases import done_steps
from ledger.reviews import claim_item
from ledger.rotated_secrets import Rotation, mark_told, seal_secret
from tasks.human import do_human_task, task_checks
from tasks.runtime import UNCACHED, Runtime
from tasks.steps import StepScope, executor

# The org's member emails, for the look-alike warning only, read at most once a minute per
# process: a bulk offboarding otherwise lists the whole org (5 000 members: 5 pages) for every
# leaver, which cost more API budget and backend CPU than the offboarding itself (bench/
# offboard_bulk.py). A member who joined in the last minute is at worst one warning short.
_MEMBER_TTL_S = 60.0
# Per connector object (weakly: a runtime replaced is forgotten, never mistaken for another).
_members: weakref.WeakKeyDictionary[MemberDirectory, tuple[float, list[str]]] = (
    weakref.WeakKeyDictionary()
)
_members_lock = threading.Lock()


def _member_emails(org: MemberDirectory) -> list[str]:
    with _members_lock:  # one read at a time: concurrent leavers share it
        hit = _members.get(org)
        if hit is None or time.monotonic() - hit[0] > _MEMBER_TTL_S:
            hit = (time.monotonic(), [m.email for m in org.list_members()])
            _members[org] = hit
        return hit[1]


class OrgReads(Protocol):
    """The reads of an inventory that are not about the leaver alone: live for one offboarding
    (:class:`LiveReads`), shared by a batch (``tasks.offboard_bulk.BatchReader``)."""

    def member_emails(self) -> list[str]: ...

    def group_names(self) -> dict[str, str]: ...

    def projects(self) -> list[Project]: ...

    def keys_of(self, email: str) -> list[ApiKey]: ...

    def person(self, email: str) -> Member | None: ...

    def org_admins(self) -> list[str]: ...


def joined_admins(members: Iterable[Member]) -> list[str]:
    """The org's joined Admins, of a member list."""
    return sorted(m.email for m in members if m.org_role is Role.ADMIN and m.status == "joined")


class LiveReads:
    """Each read from ``org`` as it is now (the member list: at most a minute old)."""

    def __init__(self, org: MemberDirectory) -> None:
        self.org = org

    def member_emails(self) -> list[str]:
        return _member_emails(self.org)

    def group_names(self) -> dict[str, str]:
        groups = require(self.org, PermissionGroups, system="org", operation="list_groups")
        return {g.id: g.name for g in groups.list_groups()}

    def projects(self) -> list[Project]:
        org = self.org
        return org.list_projects() if has(org, ProjectAccess) else []

    def keys_of(self, email: str) -> list[ApiKey]:
        org = self.org
        return org.list_keys(manager=email) if has(org, KeyManagement) else []

    def person(self, email: str) -> Member | None:
        return self.org.get_member(email)

    def org_admins(self) -> list[str]:
        # Read now, never from the minute-old member list: whether someone is the last Admin
        # must not be an old answer. Only asked when the leaver is an Admin.
        return joined_admins(self.org.list_members())


# What an offboarding reads besides the member, and the capability it takes to read it: an org
# without one (real Amplitude's SCIM API) gets a human task in the plan instead of a step.
_READS: tuple[tuple[str, type], ...] = (
    ("assets", AssetOwnership),
    ("keys", KeyManagement),
    ("projects", ProjectAccess),
    ("activity", OrgActivityLog),
)


def unreadable(org: object) -> list[str]:
    """What ``org`` has no API to read, of what an offboarding needs."""
    return [name for name, capability in _READS if not has(org, capability)]


def read_inventory(
    rt: Runtime, email: str, reads: OrgReads, *, receiver: str | None = None
) -> Inventory:
    """Everything the systems say about ``email`` and about who could receive their content."""
    org, now = rt.org, rt.clock()
    member = org.get_member(email)
    lookalikes = find_lookalikes(email, reads.member_emails())
    group_names = reads.group_names() if member and member.groups else {}
    idp_user = rt.idp.find_user(email)
    idp_groups = rt.idp.groups_of(idp_user.id) if idp_user else []
    assets, activity = [], []
    if has(org, AssetOwnership):
        assets = org.list_assets(held_by=email)
    keys = reads.keys_of(email)
    projects = reads.projects()
    if has(org, OrgActivityLog):
        activity = org.events(actor=email, since=now - timedelta(days=ACTIVITY_DAYS))
    roster = rt.roster.get(email) if rt.roster else None
    # Whether they are the org's last Admin (domain.plan.sole_org_admin_blockers); None where
    # they are no Admin, or the org does not say (a SCIM-only org gives no org role).
    admins = reads.org_admins() if member and member.org_role is Role.ADMIN else None

    def may_receive(e: str, m: Member) -> bool:
        # receiver_problem's rules, before the inventory exists: the product's and HR's.
        left = rt.roster.get(e) if rt.roster else None
        return eligible(m, now) is None and not (left and left.status is RosterStatus.TERMINATED)

    manager = roster.manager if roster else None
    people = _people(email, reads, (receiver or manager, manager), projects, may_receive)
    departed = sorted(
        e
        for e in people
        if rt.roster and (r := rt.roster.get(e)) is not None and r.status is RosterStatus.TERMINATED
    )
    return Inventory(
        subject=email,
        member=member,
        lookalikes=lookalikes,
        org_groups=[(g, group_names.get(g, g)) for g in (member.groups if member else ())],
        idp_user=idp_user,
        idp_groups=idp_groups,
        assets=assets,
        api_keys=keys,
        projects=projects,
        people=people,
        roster=roster,
        departed=departed,
        activity=activity,
        org_admins=admins,
        unreadable=unreadable(org),
        idp_ends_sessions=has(rt.idp, SessionControl),
        taken_at=now,
    )


def _people(
    email: str,
    reads: OrgReads,
    named: tuple[str | None, str | None],
    projects: list[Project],
    may_receive: Callable[[str, Member], bool],
) -> dict[str, Member]:
    """The possible receivers, read: ``named`` (who would receive everything: the receiver
    named, else the manager; and the manager) first, the projects' admins only when the plan
    may need them: the leaver administers a project (it may want a replacement), or the first
    of ``named`` may not receive content (each asset then goes to an admin of its project).
    A leaver whose manager takes everything costs one read here, not one per project admin."""

    def read(emails: set[str]) -> dict[str, Member]:
        return {e: m for e in sorted(emails - {email}) if (m := reads.person(e)) is not None}

    people = read({x for x in named if x})
    first = named[0]
    administers = any(email in p.admins for p in projects)
    if administers or first is None or first not in people or not may_receive(first, people[first]):
        people |= read({a for p in projects for a in p.admins} - set(people))
    return people


@task(name="take_inventory", cache_policy=UNCACHED)
def take_inventory(rt: Runtime, email: str, *, receiver: str | None = None) -> Inventory:
    """Read everything the systems say about ``email`` and about who could receive content."""
    return read_inventory(rt, email, LiveReads(rt.org), receiver=receiver)


@task(name="is_member", cache_policy=UNCACHED)
def is_member(rt: Runtime, email: str) -> bool:
    """Whether ``email`` is in ``rt``'s org (joined or invited)."""
    return rt.org.get_member(email) is not None


@executor(Step)
def execute_offboard_step(
    rt: Runtime, step: Step, scope: StepScope
) -> tuple[WriteResult, dict[str, Any]]:
    """Do one offboarding step through its connector; the detail never holds a secret."""
    org, idp, subject = rt.org, rt.idp, scope.subject
    match step.params:
        case GrantProjectAccess(email=email, project=project, role=role):
            return require(
                org, ProjectAccess, system="org", operation="set_project_role"
            ).set_project_role(email, project, role), {}
        case PromoteAdmin(email=email):
            return require(
                org, ProjectAccess, system="org", operation="set_project_role"
            ).set_project_role(email, step.target, Role.ADMIN), {}
        case TransferAssets(asset_ids=ids):
            return require(
                org, AssetOwnership, system="org", operation="transfer_assets"
            ).transfer_assets(ids, step.target), {"assets": len(ids)}
        case RemoveIdpGroup(user_id=user_id):
            return idp.remove_from_group(step.target, user_id), {}
        case DeactivateIdpUser():
            return idp.set_active(step.target, False), {}
        case EndIdpSessions():
            ended = require(idp, SessionControl, system="idp", operation="end_sessions")
            result = ended.end_sessions(step.target)
            # Kept with the done step: what the IdP said (e.g. Graph's sessions-valid-from
            # time), which the verification compares the re-read with.
            return result, dict(result.detail)
        case RevokeKey():
            result = rt.org_as(KeyManagement, "revoke_key").revoke_key(step.target)
            require(
                org, KeyManagement, system="org", operation="remove_key_manager"
            ).remove_key_manager(step.target, subject)
            return result, {}
        case RotateKey() as rotate:
            return _rotate_key(rt, step, rotate, scope)
        case RemoveOwnProjectRole():
            return require(
                org, ProjectAccess, system="org", operation="set_project_role"
            ).set_project_role(subject, step.target, None), {}
        case RemoveGroupMembership():
            groups = rt.org_as(PermissionGroups, "remove_group_members")
            return groups.remove_group_members(step.target, [subject]), {}
        case RevokeModules(modules=modules):
            return rt.org_as(ModuleAccess, "set_modules").set_modules(subject, revoke=modules), {}
        case RevokeInvitation():
            return require(
                org, Invitations, system="org", operation="revoke_invitation"
            ).revoke_invitation(subject), {}
        case RemoveMember():
            return org.remove_member(subject), {}
        case CollectActivity(days=days):
            return WriteResult.noop("read only"), _activity(rt, subject, days)
        case HumanTask() as task:
            return do_human_task(rt, step, task, scope)
        case _:
            assert_never(step.params)


def _rotate_key(
    rt: Runtime, step: Step, rotate: RotateKey, scope: StepScope
) -> tuple[WriteResult, dict[str, Any]]:
    # Keyed by case and step: a retry after a lost answer, or this step re-run after the
    # worker was killed, gets the same rotation (and secret) back, never a second one.
    result, secret = rt.org_as(KeyManagement, "rotate_key").rotate_key(
        step.target, idempotency_key=f"handover-case-{scope.case_id}-{step.id}"
    )
    told: list[str] = []
    if rotate.notify:
        told = _hand_over_secret(rt, step, rotate, scope, secret)
    # Off the managers only once the link reached them: killed before this, a re-run plans
    # the rotation again, replays it (same key), finds the same sealed secret and link, and
    # tells only those not yet told.
    rt.org_as(KeyManagement, "remove_key_manager").remove_key_manager(step.target, scope.subject)
    return result, {"notified": told}


def _hand_over_secret(
    rt: Runtime, step: Step, rotate: RotateKey, scope: StepScope, secret: SecretStr
) -> list[str]:
    """Seal the new secret in the ledger (``HANDOVER_SECRETS_KEY``) and DM each recipient a
    one-time, signed-in link to it (never the secret: Slack keeps, indexes and exports every
    message); who has the link."""
    erase_expired_secrets(rt)  # whenever a secret is sealed, what expired unread goes
    sealed = seal_secret(
        rt.ledger,
        secret_box(rt.settings),
        Rotation(
            case_id=scope.case_id,
            step_id=step.id,
            subject=scope.subject,
            key_id=step.target,
            key_name=rotate.name,
            recipients=tuple(rotate.notify),
            ticket=scope.ticket,
        ),
        secret,
        now=rt.clock(),
        ttl=link_ttl(rt.settings),
    )
    link = link_of(rt.settings, sealed.id)
    until = sealed.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    told = list(sealed.told)
    for person in rotate.notify:
        if person in told:
            continue  # a re-run: they have this link already
        with contextlib.suppress(ConnectorError):
            rt.messenger.dm(
                person,
                f"The API key {rotate.name!r} was rotated because {scope.subject} left. "
                f"Its new secret waits for you at {link} : sign in there to see it. One "
                f"recipient can open it, once, until {until}.",
            )
            mark_told(rt.ledger, sealed.id, person)
            told.append(person)
    return told


def _activity(rt: Runtime, subject: str, days: int) -> dict[str, Any]:
    """The subject's last ``days`` days for security: counts by action, exports, changes."""
    events = rt.org_as(OrgActivityLog, "events").events(
        actor=subject, since=rt.clock() - timedelta(days=days)
    )
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.action] = kinds.get(e.action, 0) + 1
    return {
        "events": kinds,
        "exports": [
            {"at": e.at.isoformat(), "target": e.target, **e.details}
            for e in events
            if e.action == "export"
        ][:100],
        "changes": [
            {"at": e.at.isoformat(), "action": e.action, "target": e.target}
            for e in events
            if e.action not in ("login", "export")
        ][:100],
    }


@task(name="verify_offboarding", cache_policy=UNCACHED)
def verify_offboarding(
    rt: Runtime, inv: Inventory, plan: Plan, *, narrowed: bool, case_id: int | None = None
) -> dict[str, str]:
    """Re-read the systems: check → ``pass`` or ``fail: why``.

    ``case_id``: a key the case rotated in an earlier (interrupted) run already shows that
    rotation in this run's inventory, so the case's done steps count too.
    """
    org, idp, s = rt.org, rt.idp, inv.subject
    out: dict[str, str] = {}

    def check(name: str, ok: bool, why: str = "") -> None:
        out[name] = "pass" if ok else f"fail: {why}"

    # Each fact read once (one member read, one asset read, the transferred assets by id):
    # verifying a leaver costs a handful of calls, not the receiver's whole portfolio.
    member = org.get_member(s)
    if narrowed:
        keep = {g.project for g in (member.projects if member else ())}
        check(
            "access_narrowed",
            member is not None
            and all(
                st.target not in keep
                for st in plan.steps
                if st.kind is StepKind.REMOVE_PROJECT_ROLE
            ),
            f"still has {sorted(keep)}",
        )
    else:
        check("member_removed", member is None, f"{s} is still in the org")
    user = idp.find_user(s)
    if not narrowed:
        check("idp_user_inactive", user is None or not user.active, "still active in the IdP")
    mapped = [
        g.name for g in (idp.groups_of(user.id) if user else []) if is_mapped_idp_group(g.name)
    ]
    if not narrowed:
        check("idp_no_mapped_group", not mapped, f"still in {mapped}")
        # No mapped group and inactive: the IdP's next sync cannot provision them again.
        check(
            "not_reprovisioned",
            (user is None or not user.active) and not mapped and member is None,
            "an IdP sync could bring them back",
        )
    if has(org, AssetOwnership):
        out.update(asset_checks(org, s, plan, narrowed=narrowed))
    if has(org, KeyManagement) and not narrowed:
        before = {k.id: k for k in inv.api_keys}
        # The keys they managed, read again only if there were any (none: nothing to re-read).
        now_keys = {k.id: k for k in org.list_keys()} if before else {}
        rotated_earlier = done_steps(rt.ledger, case_id) if case_id is not None else {}
        stale = [
            k
            for k in before
            if k in now_keys
            and now_keys[k].status == "active"
            and now_keys[k].rotation_count <= before[k].rotation_count
            and f"{StepKind.ROTATE_KEY.value}:{k}" not in rotated_earlier
        ]
        check("old_keys_rejected", not stale, f"keys {stale} still carry the old secret")
    if user is not None and not narrowed:
        out.update(session_checks(rt, user.id, plan, case_id))
    # What no API could read: the person who did it in the console attests it.
    out.update(task_checks(rt, list(plan.steps), case_id))
    return out


def asset_checks(
    org: MemberDirectory, subject: str, plan: Plan, *, narrowed: bool
) -> dict[str, str]:
    """``nothing_left_unassigned`` (nothing owned or left unassigned by ``subject``, outside
    the projects a narrowing keeps) and ``assets_owned_by_active_people`` (each asset the
    plan transferred is owned by its receiver, a joined member): the transferred assets are
    read by id, never the receivers' whole portfolios."""
    assets = require(org, AssetOwnership, system="org", operation="list_assets")
    leftover = assets.list_assets(held_by=subject)
    if narrowed:
        kept = set(plan.keep_projects)
        leftover = [a for a in leftover if a.project not in kept]
    out = {
        "nothing_left_unassigned": "pass"
        if not leftover
        else f"fail: {len(leftover)} asset(s) still theirs or unassigned"
    }
    moved = [i for ids in plan.receivers.values() for i in ids]
    owner = {a.id: a.owner for a in assets.list_assets(ids=moved)} if moved else {}
    bad = []
    for receiver, ids in plan.receivers.items():
        m = org.get_member(receiver) if ids else None
        if ids and (
            m is None or m.status != "joined" or any(owner.get(i) != receiver for i in ids)
        ):
            bad.append(receiver)
    out["assets_owned_by_active_people"] = "pass" if not bad else f"fail: not with {bad}"
    return out


def session_checks(rt: Runtime, user_id: str, plan: Plan, case_id: int | None) -> dict[str, str]:
    """``idp_sessions_ended`` where the plan ended the leaver's sessions: re-read where the
    IdP's API can say (Graph's sessions-valid-from time), else what the IdP answered when they
    were ended (Okta cannot list a user's sessions) — reported as such, never as a pass."""
    step = next((st for st in plan.steps if isinstance(st.params, EndIdpSessions)), None)
    if step is None:
        return {}
    done = done_steps(rt.ledger, case_id).get(step.id) if case_id is not None else None
    if done is None:
        return {"idp_sessions_ended": "fail: the sessions were never ended"}
    valid_from = done["detail"].get("sessions_valid_from")
    since = datetime.fromisoformat(valid_from) if valid_from else done["at"]
    control = require(rt.idp, SessionControl, system="idp", operation="sessions_ended_since")
    ended = control.sessions_ended_since(user_id, since)
    if ended is None:
        return {
            "idp_sessions_ended": f"{REPORTED}the IdP when ended at {done['at']:%Y-%m-%d %H:%M} "
            "UTC (its API cannot list a user's sessions)"
        }
    return {"idp_sessions_ended": "pass" if ended else "fail: a session older than the end"}


def review_approvers(
    rt: Runtime,
    approval_id: str,
    item_id: str,
    *,
    email: str,
    org: str,
    case_id: int | None,
    check_only: bool = False,
) -> list[str]:
    """Who approved ``email``'s removal in an access review: the approved item ``item_id`` of
    review approval ``approval_id``, claimed for this offboarding's case (ledger.reviews: the
    item is about this person and org, recent per the policy, and used by no other case).
    ``check_only``: only check (``case_id``: the person's open case, if any).

    Raises:
        ValueError: not an approved access review, or the item does not stand for this
            offboarding (the message says why).
    """
    try:
        appr = get_approval(rt.ledger, approval_id)
    except KeyError:
        raise ValueError(f"no approval {approval_id}") from None
    if appr.runbook != "review" or appr.state is not ApprovalState.APPROVED:
        raise ValueError(f"approval {approval_id} is not an approved access review")
    item = claim_item(
        rt.ledger,
        approval_id,
        item_id,
        subject=email,
        org=org,
        case=str(case_id),
        now=rt.clock(),
        max_age=timedelta(days=rt.policy.review_approval_max_days),
        check_only=check_only,
    )
    return list(item.approvers)
