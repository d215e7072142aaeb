"""The quarterly access review (issue 7; seed 004 "Quarterly access review cleanup"): the org's
members and invitations against the HR roster, as a list of findings. Pure: no I/O.

Kinds, and what each recommends:

- ``terminated_still_in_org``: HR says terminated, the person is still a member (or invited) →
  ``remove`` (offboarding reason ``termination``), or ``revoke_invitation`` when only invited;
- ``unknown_to_hr``: a *joined* member HR does not know → ``remove`` (reason ``termination``:
  nobody vouches for them). A pending invitee HR does not know is not in the org yet (partners
  are invited without being employees): flagged only when the address looks like someone on the
  roster or in the org (``j\\u043en.smith@acme.com``) → ``revoke_invitation``;
- ``inactive``: a joined member, active on the roster, with no login for ``inactive_days``
  (never logged in: counted from the invitation) → ``remove`` (reason ``inactivity``);
- ``on_leave``: on leave per HR *and* inactive that long → ``review`` (people on leave are not
  removed; someone should confirm the return date). On leave but active: nothing;
- ``admins``: one informational finding, the org Admins counted and named → ``none``;
- ``over_privileged_by_group``: the group-union trap — a member in two or more groups that each
  raise their role in a project above their individual grant (or who has none), with different
  roles: the effective role is the highest of them, so whoever looks at one group (or at the
  individual grant) sees the wrong one → ``review``, naming the group that gives it. One group
  raising a role (or several agreeing) is what groups are for, and is not flagged; nor is a
  group that grants no more than the individual grant (an IdP-mapped viewer group);
- ``stale_invitation``: a pending (or expired, never revoked) invitation first sent more than
  14 days ago → ``revoke_invitation``.

Each finding has a stable id (the same fact gives the same id in every run).

:func:`review_findings` is a short sequence of named rules, each a small pure function with its
own table of cases (``tests/domain/test_review_rules.py``): per member or invitee, what the
roster says (:func:`roster_finding`: :func:`terminated_finding`, :func:`unknown_finding` or
:func:`idle_finding`) and, for a joined member, :func:`over_privileged_findings`; then
:func:`admins_finding`, :func:`stale_invitation_findings`, and :func:`review_order`. The rules
take an aware ``now`` (:func:`review_findings` reads a naive one as UTC).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.models import Frozen, Invitation, Member, PermissionGroup, Role, RosterEntry
from domain.plan import find_lookalikes

STALE_INVITATION = timedelta(days=14)
ADMINS_SUBJECT = "org"


class Kind(StrEnum):
    TERMINATED = "terminated_still_in_org"
    UNKNOWN = "unknown_to_hr"
    INACTIVE = "inactive"
    ON_LEAVE = "on_leave"
    ADMINS = "admins"
    OVER_PRIVILEGED = "over_privileged_by_group"
    STALE_INVITATION = "stale_invitation"


class Recommendation(StrEnum):
    REMOVE = "remove"
    REVIEW = "review"
    REVOKE_INVITATION = "revoke_invitation"
    NONE = "none"


class Finding(Frozen):
    """One thing the review found, and what it recommends."""

    id: str
    kind: Kind
    subject: str  # an email, or "org" for the admins finding
    detail: str
    action: Recommendation
    reason: str = ""  # offboarding reason for ``remove``: termination | inactivity
    project: str = ""
    group: str = ""
    org: str = ""  # "": the main org

    @property
    def actionable(self) -> bool:
        return self.action in (Recommendation.REMOVE, Recommendation.REVOKE_INVITATION)

    @property
    def target(self) -> str:
        """Whom it is about, and in which org when not the main one."""
        return f"{self.subject} ({self.org})" if self.org else self.subject


def in_org(findings: Iterable[Finding], org: str) -> list[Finding]:
    """The findings of another org than the main one, said so and with ids of their own (the
    same fact in two orgs is two findings)."""
    return [
        f.model_copy(update={"org": org, "id": finding_id(f.kind, f"{org}:{f.subject}", f.project)})
        for f in findings
    ]


def finding_id(kind: Kind | str, subject: str, project: str = "") -> str:
    """Stable: the kind, the subject (case-folded) and, where it matters, the project."""
    key = f"{kind}|{subject.strip().lower()}|{project}"
    return "rv-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // 86400)


def _make(
    kind: Kind,
    subject: str,
    detail: str,
    action: Recommendation,
    *,
    reason: str = "",
    project: str = "",
    group: str = "",
) -> Finding:
    return Finding(
        id=finding_id(kind, subject, project),
        kind=kind,
        subject=subject,
        detail=detail,
        action=action,
        reason=reason,
        project=project,
        group=group,
    )


def _idle_days(m: Member, now: datetime) -> int | None:
    """Days since the last login (or since the invitation, never logged in); None: unknown."""
    since = m.last_login_at or m.invited_at
    return None if since is None else _days(now - _utc(since))


def terminated_finding(m: Member, entry: RosterEntry) -> Finding:
    """HR says terminated and the person is still here: a member is removed (offboarding reason
    ``termination``), an invitee's invitation revoked. A member whose status the org does not
    say (SCIM) is removed: the offboarding handles an invitee too."""
    joined = m.status != "pending"
    when = f" on {entry.end_date.isoformat()}" if entry.end_date else ""
    return _make(
        Kind.TERMINATED,
        m.email,
        f"terminated by HR{when}; still " + ("in the org" if joined else "invited (pending)"),
        Recommendation.REMOVE if joined else Recommendation.REVOKE_INVITATION,
        reason="termination" if joined else "",
    )


def unknown_finding(m: Member, known: Collection[str]) -> Finding | None:
    """Not on the HR roster: a joined member is removed (nobody vouches for them); a pending
    invitee only when the address looks like someone ``known`` (partners are invited without
    being employees).

    Args:
        m: the member or invitee.
        known: the lower-cased emails of the roster and of the joined members.
    """
    alike = find_lookalikes(m.email, sorted(set(known) - {m.email.lower()}))
    like = f"; looks like {', '.join(alike)}" if alike else ""
    if m.status == "joined":
        role = m.org_role.value if m.org_role else "member"
        detail = f"a {role} in the org, not on the HR roster{like}"
        return _make(Kind.UNKNOWN, m.email, detail, Recommendation.REMOVE, reason="termination")
    if m.status != "pending":  # the org does not say (SCIM): a person looks, nobody is removed
        if not alike:
            return None
        detail = f"in the org (joined or invited: the org does not say), not on the HR roster{like}"
        return _make(Kind.UNKNOWN, m.email, detail, Recommendation.REVIEW)
    if alike:
        detail = f"a pending invitation, not on the HR roster{like}"
        return _make(Kind.UNKNOWN, m.email, detail, Recommendation.REVOKE_INVITATION)
    return None


def idle_finding(
    m: Member, entry: RosterEntry, *, now: datetime, inactive_days: int
) -> Finding | None:
    """A joined member on the roster with no login for ``inactive_days`` (never logged in:
    counted from the invitation): removed for inactivity, or only reviewed when HR says they
    are on leave (someone should confirm the return). Invitees are never idle."""
    idle = _idle_days(m, now) if m.status == "joined" else None
    if idle is None or idle < inactive_days:
        return None
    idle_txt = "never logged in" if m.last_login_at is None else f"last login {idle} days ago"
    if entry.status == "leave":
        detail = f"on leave per HR and {idle_txt}: not removed; confirm the return"
        return _make(Kind.ON_LEAVE, m.email, detail, Recommendation.REVIEW)
    detail = f"{idle_txt} (threshold {inactive_days} days)"
    return _make(Kind.INACTIVE, m.email, detail, Recommendation.REMOVE, reason="inactivity")


def roster_finding(
    m: Member,
    entry: RosterEntry | None,
    *,
    now: datetime,
    known: Collection[str],
    inactive_days: int,
) -> Finding | None:
    """What the HR roster says about one member or invitee, at most one finding: terminated
    comes first (a terminated and inactive member is one finding), then unknown, then idle."""
    if entry is not None and entry.status == "terminated":
        return terminated_finding(m, entry)
    if entry is None:
        return unknown_finding(m, known)
    return idle_finding(m, entry, now=now, inactive_days=inactive_days)


def over_privileged_findings(
    m: Member,
    groups: Sequence[PermissionGroup],
    *,
    individual: Mapping[str, Role] | None,
) -> list[Finding]:
    """The group-union trap, per project of a joined member: two or more of their groups raise
    the role above their own grant (or all do, when the grant is unknown) with different roles,
    and the highest of them gives the effective role → ``review``, naming that group.

    Args:
        m: the member, with each project grant's sources.
        groups: the permission groups.
        individual: per project, the member's own (individual) grant.
    """
    mine = [g for g in groups if m.email in {e.lower() for e in g.members}]
    out: list[Finding] = []
    for grant in m.projects:
        has_individual = "individual" in grant.sources
        own = (individual or {}).get(grant.project) if has_individual else None
        floor = own.rank if own is not None else -1
        # Groups that raise the role above the member's own grant (unknown own grant: all).
        granting = [
            (g, g.projects[grant.project])
            for g in mine
            if grant.project in g.projects and g.projects[grant.project].rank > floor
        ]
        if len({r for _g, r in granting}) < 2:
            continue  # one raising group (or several agreeing): what groups are for
        top_group, top = max(granting, key=lambda gr: (gr[1].rank, gr[0].name))
        if top.rank < grant.role.rank:
            continue  # something else gives the effective role
        if own is not None:
            mine_txt = f"individual grant {own.value}"
        elif has_individual:
            mine_txt = "individual grant of unknown role"
        else:
            mine_txt = "no individual grant"
        others = ", ".join(f"{g.name} ({r.value})" for g, r in granting if g is not top_group)
        out.append(
            _make(
                Kind.OVER_PRIVILEGED,
                m.email,
                f"effective {grant.role.value} in {grant.project} through group "
                f"'{top_group.name}' ({mine_txt}; also in {others})",
                Recommendation.REVIEW,
                project=grant.project,
                group=top_group.name,
            )
        )
    return out


def admins_finding(people: Sequence[Member]) -> Finding | None:
    """One informational finding: the joined org Admins, counted and named; the members whose
    role the org does not say are counted apart; none at all when it says nobody's (SCIM
    without the console's export: "0 Admins" would be a claim nobody checked)."""
    joined = [m for m in people if m.status == "joined"]
    unknown = [m for m in people if m.org_role is None]
    if people and len(unknown) == len(people):
        return None
    admins = sorted(m.email for m in joined if m.org_role is Role.ADMIN)
    tail = f" (the org role of {len(unknown)} member(s) is unknown)" if unknown else ""
    return _make(
        Kind.ADMINS,
        ADMINS_SUBJECT,
        f"{len(admins)} org Admin{'s' * (len(admins) != 1)}: {', '.join(admins) or 'none'}{tail}",
        Recommendation.NONE,
    )


def stale_invitation_findings(invitations: Iterable[Invitation], now: datetime) -> list[Finding]:
    """A pending (or expired, never revoked) invitation first sent more than
    ``STALE_INVITATION`` ago → ``revoke_invitation``; accepted and revoked ones are done with."""
    out: list[Finding] = []
    for inv in invitations:
        if inv.state not in ("pending", "expired"):
            continue
        age = now - _utc(inv.sent_at)
        if age > STALE_INVITATION:
            detail = (
                f"invitation {inv.state}, first sent {_days(age)} days ago "
                f"({inv.sent_at.date().isoformat()}) by {inv.invited_by or 'unknown'}"
            )
            out.append(
                _make(Kind.STALE_INVITATION, inv.email, detail, Recommendation.REVOKE_INVITATION)
            )
    return out


def review_order(findings: Iterable[Finding]) -> list[Finding]:
    """The admins finding first, then by subject, by kind (in :class:`Kind`'s order) and by
    project; ties keep the order they were found in."""
    order = list(Kind)
    return sorted(
        findings,
        key=lambda f: (f.subject != ADMINS_SUBJECT, f.subject, order.index(f.kind), f.project),
    )


def review_findings(
    members: Iterable[Member],
    roster_entries: Iterable[RosterEntry],
    invitations: Iterable[Invitation],
    now: datetime,
    *,
    inactive_days: int = 90,
    groups: Sequence[PermissionGroup] = (),
    individual_roles: Mapping[str, Mapping[str, Role]] | None = None,
) -> list[Finding]:
    """Everything the access review flags, in a stable order (by subject, then kind).

    Args:
        members: every member and pending invitee (project grants with their sources where
            known: the group-union check needs them).
        roster_entries: the HR roster.
        invitations: the org's invitations (any state).
        now: the org's time.
        inactive_days: no login for this many days makes a member inactive.
        groups: the permission groups (members and the roles they grant per project).
        individual_roles: per email, per project, the member's own (individual) grant.

    Returns:
        The findings (see the module docstring).

    Raises:
        ValueError: ``inactive_days`` is not positive.
    """
    if inactive_days < 1:
        raise ValueError("inactive_days must be at least 1")
    now = _utc(now)
    roster = {e.email.lower(): e for e in roster_entries}
    people = list(members)
    known = set(roster) | {m.email.lower() for m in people if m.status == "joined"}
    out: list[Finding] = []
    for m in people:
        email = m.email.lower()
        found = roster_finding(
            m, roster.get(email), now=now, known=known, inactive_days=inactive_days
        )
        out += [found] if found is not None else []
        if m.status == "joined":
            individual = (individual_roles or {}).get(email)
            out += over_privileged_findings(m, groups, individual=individual)
    admins = admins_finding(people)
    out += [admins] if admins is not None else []
    out += stale_invitation_findings(invitations, now)
    return review_order(out)


# --- a SCIM-only org: what the console's Members export adds --------------------------------------
class ConsoleRecord(Frozen):
    """One row of the console's Members export (``connectors.org.export``)."""

    email: str  # lower-case
    org_role: Role | None = None
    status: str | None = None  # joined | pending; None: the export does not say
    last_login: datetime | None = None


NO_EXPORT = (
    "this org (SCIM only) says neither last logins, nor org roles, nor who has joined: without "
    "--members-export FILE (the console's Members export) inactive and on-leave people, joined "
    "members unknown to HR and the Admins were not checked"
)


def with_console_export(
    members: Sequence[Member], export: Sequence[ConsoleRecord] | None
) -> tuple[list[Member], list[str]]:
    """The members a SCIM-only org lists, with what the console's export says of each (org
    role, status, last login); what could not be checked, as warnings.

    A member missing from the export keeps what SCIM says (no role, status unknown) and is
    named; an exported address SCIM does not list is left out (removed since the export?).
    """
    if export is None:
        return list(members), [NO_EXPORT]
    rows = {r.email.casefold(): r for r in export}
    out: list[Member] = []
    missing: list[str] = []
    for m in members:
        r = rows.get(m.email.casefold())
        if r is None:
            missing.append(m.email)
            out.append(m)
            continue
        status = r.status or ("joined" if r.last_login is not None else m.status)
        out.append(
            m.model_copy(
                update={"org_role": r.org_role, "status": status, "last_login_at": r.last_login}
            )
        )
    warnings: list[str] = []
    if missing:
        names = ", ".join(sorted(missing)[:10]) + (" …" if len(missing) > 10 else "")
        warnings.append(
            f"{len(missing)} member(s) are not in the members export (exported before they "
            f"joined?): not checked for inactivity, role or joining: {names}"
        )
    listed = {m.email.casefold() for m in members}
    gone = sorted(e for e in rows if e not in listed)
    if gone:
        warnings.append(
            f"{len(gone)} address(es) of the export are not members by SCIM (removed since?): "
            "left out"
        )
    return out, warnings
