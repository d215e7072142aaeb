"""Temporary-access expiry (issue 7, the "Expiry" runbook), pure.

The rules, per active grant of the ledger, given the time and each grantee's current access:

- due (``end <= now``) → revoked: a project grant removes the individual project role and,
  for an IdP-managed grant, the person's membership of the grant's IdP group (the IdP wins,
  seed 003: the org role alone would be pushed back); a module grant revokes the module. When
  nothing else of the person's remains active in the ledger and they have no other access in
  the org (another project, a role through another group, a module, the org Admin role), the
  whole membership goes instead, through the offboarding runbook (``flows.expire``: content
  transferred, IdP first). A grant that expired while nothing ran is revoked at the next
  sweep, and the reason says how late ("expired 2 days 3 hours ago, revoked at the next
  sweep");
- due within N days for a reminder day N (policy ``reminder_days``, default ``[3, 1]``) →
  one reminder to the person and the sponsor: the tightest reminder that applies, once
  (``grant.last_reminder`` says which was sent last: a missed 3-day reminder is not sent
  when the 1-day one is already due);
- otherwise nothing.

Drift: a project role of a temporary grantee (anyone with a grant in the ledger) that neither
an active grant nor an IdP mapping (a ``group:amplitude-…`` source) explains is reported, never
changed.

:func:`expiry_actions` is a short sequence of named rules, each a small pure function with its
own table of cases (``tests/domain/test_expiry_rules.py``): per grantee's active grants
(:func:`active_by_subject`), either one :func:`membership_removal` (when
:func:`removes_membership`, after :func:`other_access`) or a :func:`revocation` per due grant,
then a :func:`reminder` per grant not yet due; :func:`sweep_order` orders them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.models import Frozen, Member, Role
from domain.onboard import project_group
from domain.records import Grant, GrantStatus

REMINDER_DAYS = (3, 1)
LATE_AFTER = timedelta(minutes=20)  # a sweep runs every 15 minutes: later than this is "late"
IDP_GROUP_PREFIX = "group:amplitude-"


class ExpiryKind(StrEnum):
    REVOKE_ROLE = "revoke_role"
    REVOKE_MODULE = "revoke_module"
    REMOVE_MEMBER = "remove_member"
    REMIND = "remind"


class ExpiryAction(Frozen):
    """One thing the sweep does about one grant (or, for a membership removal, several)."""

    kind: ExpiryKind
    subject: str
    grant_ids: tuple[int, ...]
    what: str  # "Staging manager", "module experiment", "membership"
    project: str | None = None
    role: str | None = None
    module: str | None = None
    ends_at: datetime
    reason: str
    late_by: timedelta | None = None  # revocations: how long after the end (None: on time)
    reminder: str = ""  # reminders: "3d", "1d"
    sponsor: str = ""
    ticket: str = ""

    @property
    def target(self) -> str:
        return f"{self.subject} ({self.what})"

    @property
    def id(self) -> str:
        """The step id, as in the other runbooks' results (``kind:target``)."""
        return f"{self.kind.value}:{self.target}"

    @property
    def key(self) -> str:
        """What the ledger remembers the action by: the grants and the end they had."""
        ids = ",".join(str(i) for i in self.grant_ids)
        return f"{ids}@{self.ends_at.isoformat()}"


def utc(t: datetime) -> datetime:
    """Aware UTC (the ledger's SQLite gives naive times, meant as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def duration(delta: timedelta) -> str:
    """``2 days 3 hours``, ``5 hours 10 minutes``, ``12 minutes`` (two largest units)."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    shown = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n][:2]
    return " ".join(shown) or "less than a minute"


def describe(g: Grant) -> str:
    """What a grant gives, in words."""
    if g.project:
        return f"{g.project} {g.role or 'access'}"
    if g.module:
        return f"module {g.module}"
    return "membership"


def reminder_label(days: int) -> str:
    return f"{days}d"


def _label_days(label: str) -> int | None:
    try:
        return int(label.removesuffix("d")) if label.endswith("d") else None
    except ValueError:
        return None


# --- the rules -----------------------------------------------------------------------------------
# Each rule is a small pure function; expiry_actions runs them per grantee. They take an aware
# ``now`` (expiry_actions reads a naive one as UTC).


def grant_group(project: str, role: str | None) -> str:
    """The IdP group an IdP-managed grant of ``role`` in ``project`` was given through (what
    onboarding adds the person to), as a member's project source names it."""
    return f"group:{project_group(project, Role(role or Role.VIEWER.value))}"


def grant_sources(g: Grant) -> set[str]:
    """The sources of a project role that are the grant's own: the individual role, or its
    IdP group (an IdP-managed grant); any other source (another group) is not the grant's."""
    return {"individual", grant_group(g.project, g.role)} if g.project else set()


def other_access(member: Member, due: Sequence[Grant]) -> list[str]:
    """What the member keeps once the due grants are revoked (empty: nothing): the org Admin
    role, a project the due grants do not cover or that something besides the grants' own
    sources (:func:`grant_sources`) gives (unknown sources count as something), a module not
    due."""
    own: dict[str, set[str]] = {}
    for g in due:
        if g.project:
            own.setdefault(g.project, set()).update(grant_sources(g))
    due_modules = {g.module for g in due if g.module}
    left: list[str] = []
    if member.org_role is Role.ADMIN:
        left.append("org Admin")
    for p in member.projects:
        others = [s for s in p.sources if s not in own.get(p.project, set())]
        if p.project not in own or others or not p.sources:
            left.append(f"{p.project} {p.role.value}")
    left += [f"module {m.value}" for m in member.modules if m.value not in due_modules]
    return left


def active_by_subject(grants: Iterable[Grant]) -> dict[str, list[Grant]]:
    """The active grants the ledger has stored (with an id), per grantee, in the order given."""
    by_subject: dict[str, list[Grant]] = {}
    for g in grants:
        if g.status is GrantStatus.ACTIVE and g.id is not None:
            by_subject.setdefault(g.subject, []).append(g)
    return by_subject


def removes_membership(
    due: Sequence[Grant], remaining: Sequence[Grant], *, member: Member | None
) -> bool:
    """Whether the due grants take the whole membership: one of them is the membership itself,
    or nothing else of the person's stays active in the ledger and, by their member record
    (``None``: unknown, never removed), nothing else in the org either."""
    if not due:
        return False
    if any(not g.project and not g.module for g in due):
        return True
    return not remaining and member is not None and not other_access(member, due)


def _late_by(late: timedelta, late_after: timedelta) -> timedelta | None:
    return late if late > late_after else None


def _due_reason(what: str, late: timedelta, late_after: timedelta, *, whole: bool) -> str:
    tail = " (nothing else remains: the membership is removed)" if whole else ""
    if late > late_after:
        return f"{what}: expired {duration(late)} ago, revoked at the next sweep{tail}"
    return f"{what}: expired{tail}"


def membership_removal(
    subject: str, due: Sequence[Grant], *, now: datetime, late_after: timedelta
) -> ExpiryAction:
    """One removal of the membership for all the due grants (the earliest end names it)."""
    first = min(due, key=lambda g: utc(g.end))
    late = now - utc(first.end)
    what = ", ".join(describe(g) for g in due)
    return ExpiryAction(
        kind=ExpiryKind.REMOVE_MEMBER,
        subject=subject,
        grant_ids=tuple(sorted(g.id for g in due if g.id is not None)),
        what="membership",
        ends_at=utc(first.end),
        reason=_due_reason(what, late, late_after, whole=True),
        late_by=_late_by(late, late_after),
        sponsor=first.sponsor,
        ticket=first.ticket,
    )


def revocation(g: Grant, *, now: datetime, late_after: timedelta) -> ExpiryAction:
    """A due grant's own project role or module, revoked."""
    late = now - utc(g.end)
    return grant_action(
        g,
        ExpiryKind.REVOKE_ROLE if g.project else ExpiryKind.REVOKE_MODULE,
        reason=_due_reason(describe(g), late, late_after, whole=False),
        late_by=_late_by(late, late_after),
    )


def reminder(g: Grant, *, now: datetime, days: Sequence[int]) -> ExpiryAction | None:
    """The tightest reminder day that applies to a grant not yet due, unless that reminder (or
    a tighter one) was sent already (``last_reminder``); a missed wider one is never sent."""
    left = utc(g.end) - now
    applies = [d for d in days if left <= timedelta(days=d)]
    if not applies:
        return None
    tightest = min(applies)
    sent = _label_days(g.last_reminder)
    if sent is not None and sent <= tightest:
        return None  # this reminder (or a tighter one) was sent already
    return grant_action(
        g,
        ExpiryKind.REMIND,
        reason=(
            f"ends in {duration(left)} ({utc(g.end).isoformat(timespec='minutes')}):"
            f" {tightest}-day reminder"
        ),
        reminder=reminder_label(tightest),
    )


def grant_action(g: Grant, kind: ExpiryKind, *, reason: str, **extra: Any) -> ExpiryAction:
    """An action on one stored grant, naming it as the sweep reports it."""
    assert g.id is not None  # only stored grants are acted on (active_by_subject)
    return ExpiryAction(
        kind=kind,
        subject=g.subject,
        grant_ids=(g.id,),
        what=describe(g),
        project=g.project,
        role=g.role,
        module=g.module,
        ends_at=utc(g.end),
        reason=reason,
        sponsor=g.sponsor,
        ticket=g.ticket,
        **extra,
    )


SWEEP_ORDER = {
    ExpiryKind.REMOVE_MEMBER: 0,
    ExpiryKind.REVOKE_ROLE: 1,
    ExpiryKind.REVOKE_MODULE: 1,
    ExpiryKind.REMIND: 2,
}


def sweep_order(actions: Iterable[ExpiryAction]) -> list[ExpiryAction]:
    """Membership removals, then role and module revocations, then reminders; within each, by
    end, grantee and grants."""
    return sorted(actions, key=lambda a: (SWEEP_ORDER[a.kind], a.ends_at, a.subject, a.grant_ids))


def expiry_actions(
    grants: Iterable[Grant],
    now: datetime,
    *,
    reminder_days: Sequence[int] = REMINDER_DAYS,
    active_access: Mapping[str, Member] | None = None,
    late_after: timedelta = LATE_AFTER,
) -> list[ExpiryAction]:
    """What the sweep does at ``now``: revocations (and membership removals), then reminders.

    Args:
        grants: the ledger's grants (any status; only active ones are acted on).
        now: the org's time (aware; a naive time is read as UTC).
        reminder_days: remind this many days before the end (each once).
        active_access: each grantee's current member record (project roles with their sources,
            modules, org role). A grantee missing here (or ``None``) is never removed from the
            org: only the grant's own role or module is revoked.
        late_after: a revocation later than this after the end says how late it is.
    """
    now = utc(now)
    days = sorted({int(d) for d in reminder_days if int(d) > 0})
    out: list[ExpiryAction] = []
    for subject, theirs in sorted(active_by_subject(grants).items()):
        due = [g for g in theirs if utc(g.end) <= now]
        remaining = [g for g in theirs if utc(g.end) > now]
        member = (active_access or {}).get(subject)
        if removes_membership(due, remaining, member=member):
            out.append(membership_removal(subject, due, now=now, late_after=late_after))
        else:
            out += [revocation(g, now=now, late_after=late_after) for g in due]
        out += [r for g in remaining if (r := reminder(g, now=now, days=days)) is not None]
    return sweep_order(out)


def drift(
    grants: Iterable[Grant],
    access: Mapping[str, Member],
    *,
    revoked: Iterable[ExpiryAction] = (),
) -> list[str]:
    """Project roles of temporary grantees that neither an active grant nor an IdP mapping
    explains (reported, never changed).

    Args:
        grants: the ledger's grants (any status): their subjects are the temporary grantees.
        access: the grantees' current member records.
        revoked: this sweep's revocations (their grants no longer explain anything).
    """
    gone = {i for a in revoked if a.kind is not ExpiryKind.REMIND for i in a.grant_ids}
    removed = {a.subject for a in revoked if a.kind is ExpiryKind.REMOVE_MEMBER}
    all_grants = list(grants)
    explained: dict[str, set[str]] = {}
    for g in all_grants:
        if g.status is GrantStatus.ACTIVE and g.project and g.id not in gone:
            explained.setdefault(g.subject, set()).add(g.project)
    out = []
    for subject in sorted({g.subject for g in all_grants}):
        member = access.get(subject)
        if member is None or subject in removed:
            continue
        for p in member.projects:
            if p.project in explained.get(subject, set()):
                continue
            if any(s.startswith(IDP_GROUP_PREFIX) for s in p.sources):
                continue
            if p.project in {a.project for a in revoked if a.subject == subject} and set(
                p.sources
            ) <= {"individual"}:
                continue  # revoked by this sweep
            how = ", ".join(p.sources) or "unknown source"
            out.append(
                f"{subject}: {p.project} {p.role.value} ({how}) is explained by no active grant "
                "and no IdP mapping: check it (not changed)"
            )
    return out


class Extension(Frozen):
    """Extending one temporary grant by ``days`` from its current end (runbook ``extend``):
    what the approvers approve, and how the run names it."""

    grant: Grant
    days: int
    requester: str

    @property
    def old_end(self) -> datetime:
        return utc(self.grant.end)

    @property
    def new_end(self) -> datetime:
        return self.old_end + timedelta(days=self.days)

    @property
    def target(self) -> str:
        return f"{self.grant.subject} ({describe(self.grant)})"

    @property
    def step_id(self) -> str:
        """The step id, as in the other runbooks' results (``kind:target``)."""
        return f"extend:{self.target}"

    @property
    def blockers(self) -> list[str]:
        g = self.grant
        if g.status is GrantStatus.ACTIVE:
            return []
        return [f"grant {g.id} is {g.status.value}: only an active grant can be extended"]

    @property
    def hash(self) -> str:
        """What approvers approve: this grant, from this end to that one."""
        facts = [self.grant.id, self.old_end.isoformat(), self.new_end.isoformat()]
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()

    def _ends(self) -> tuple[str, str]:
        return self.old_end.isoformat(timespec="minutes"), self.new_end.isoformat(
            timespec="minutes"
        )

    def plan(self) -> dict[str, Any]:
        """The ``--json`` outcome's ``plan``: one ``extend`` step and the blockers."""
        old, new = self._ends()
        reason = f"end {old} → {new} (+{self.days} days), asked by {self.requester}"
        step = {"kind": "extend", "target": self.target, "reason": reason}
        return {"hash": self.hash, "steps": [step], "blockers": self.blockers}

    def summary(self) -> str:
        """What the approvers are shown."""
        (old, new), g = self._ends(), self.grant
        sponsor = f" (sponsor {g.sponsor})" if g.sponsor else ""
        return (
            f"{self.target}: {describe(g)} (grant {g.id}) ends {old}; extend by {self.days} "
            f"days to {new}{sponsor}"
        )

    def comment(self, approved_by: Sequence[str]) -> str:
        """The ticket's comment once the end has moved."""
        (old, new), g = self._ends(), self.grant
        return (
            f"Handover extended the temporary access of {g.subject} ({describe(g)}; grant "
            f"{g.id}) from {old} to {new}, asked by {self.requester}, approved by "
            f"{', '.join(approved_by) or 'policy'}."
        )

    def moved(self, now: Grant) -> bool:
        """Whether ``now`` (the grant as it is now) has this extension's end, still active."""
        return utc(now.end) == self.new_end and now.status is GrantStatus.ACTIVE

    def still_due(self, now: Grant) -> bool:
        """Whether ``now`` is still the active grant with the end this extension moves
        (another run, a second click, may have moved it meanwhile)."""
        return now.status is GrantStatus.ACTIVE and utc(now.end) == self.old_end


# What an extension's plan line says of its days (``Extension.summary``).
_EXTEND_BY = re.compile(r"; extend by (\d+) days to ")


def extends(grant: Grant, *, plan_hash: str, plan_lines: Sequence[str]) -> bool:
    """Whether an ``extend`` approval (its plan hash and lines) is about ``grant`` as it stands:
    the days its line names, over this grant and its end, must give the approval's plan hash
    (:attr:`Extension.hash`), so a line's words alone never tie an approval to a grant."""
    for line in plan_lines:
        for days in _EXTEND_BY.findall(line):
            if Extension(grant=grant, days=int(days), requester="").hash == plan_hash:
                return True
    return False


EXTEND_ACTION = "extend"  # the Extend button of a reminder (domain.blocks.reminder_blocks)


def parse_extend_value(value: str) -> int:
    """The grant id of an Extend button's value (``grant:<id>``); ValueError when malformed."""
    prefix, sep, rest = value.partition(":")
    if prefix != "grant" or not sep or not rest.isdigit() or len(rest) > 12:
        raise ValueError("an Extend button value is grant:<id>")
    return int(rest)
