"""An access review as a *campaign* security works through (the console's review pages): each
finding with the evidence behind it, each actionable item's decision (certify: keep the access;
revoke: remove it), the campaign's progress, and the signed-off report. Pure: no I/O.

An actionable item (a removal or an invitation revocation) is decided on its own approval
(``flows.review`` with ``approve="per_item"``): *revoke* is an approval of the item's removal,
*certify* a denial of it. :func:`decision_of` reads an item's decision from its approval, as the
flow will tally it: a closed approval says it outright; a pending one whose recorded decisions
already settle it (a deny, or approvals enough for the quorum) is decided and waits for the flow
to apply it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from domain.models import Frozen, Invitation, Member, PermissionGroup, ProjectGrant, RosterEntry
from domain.records import ApprovalRequest, ApprovalState, Decision

ITEM_ID = re.compile(r"^rv-[0-9a-f]{12}$")
# What a campaign's state is while it runs; the flow's outcome (done, failed, denied,
# nothing_to_do, planned) once it has ended.
DECIDING, APPLYING = "deciding", "applying"
ENDED = ("done", "failed", "denied", "nothing_to_do", "planned")


class GroupGrant(Frozen):
    """A permission group the person is in, and the role it gives them in one project."""

    group: str
    project: str
    role: str


class Evidence(Frozen):
    """What the review saw of one person: HR's word, the org's, and their groups."""

    subject: str
    org: str = ""
    on_roster: bool = False
    hr_status: str = ""  # active | terminated | leave; "" when not on the roster
    hr_end_date: date | None = None
    hr_manager: str = ""
    hr_department: str = ""
    member_status: str = ""  # joined | pending; "" when not a member
    org_role: str = ""  # "" where the org does not say
    last_login_at: datetime | None = None
    invited_at: datetime | None = None
    groups: tuple[str, ...] = ()
    group_grants: tuple[GroupGrant, ...] = ()
    # Project → the person's own (individual) grant, where the org says.
    individual: dict[str, str] = Field(default_factory=dict)
    effective: tuple[ProjectGrant, ...] = ()  # project roles and where they come from
    invitation_state: str = ""
    invitation_sent_at: datetime | None = None
    invited_by: str = ""


def evidence_for(
    subject: str,
    *,
    org: str,
    member: Member | None,
    entry: RosterEntry | None,
    groups: Sequence[PermissionGroup],
    individual: Mapping[str, Any] | None,
    invitation: Invitation | None,
) -> Evidence:
    """The evidence about ``subject`` in ``org`` (``""``: the main one): their roster
    ``entry``, the org's ``member`` record and ``invitation``, the permission ``groups`` they
    are in with the roles each gives (the group union's evidence), their ``individual``
    grants where known."""
    mine = [g for g in groups if subject.lower() in {e.lower() for e in g.members}]
    return Evidence(
        subject=subject,
        org=org,
        on_roster=entry is not None,
        hr_status=str(entry.status) if entry else "",
        hr_end_date=entry.end_date if entry else None,
        hr_manager=(entry.manager or "") if entry else "",
        hr_department=entry.department if entry else "",
        member_status=member.status if member else "",
        org_role=member.org_role.value if member and member.org_role else "",
        last_login_at=member.last_login_at if member else None,
        invited_at=member.invited_at if member else None,
        groups=tuple(sorted(g.name for g in mine)),
        group_grants=tuple(
            GroupGrant(group=g.name, project=p, role=r.value)
            for g in sorted(mine, key=lambda g: g.name)
            for p, r in sorted(g.projects.items())
        ),
        individual={p: getattr(r, "value", str(r)) for p, r in (individual or {}).items()},
        effective=member.projects if member else (),
        invitation_state=invitation.state if invitation else "",
        invitation_sent_at=invitation.sent_at if invitation else None,
        invited_by=invitation.invited_by if invitation else "",
    )


class CampaignItem(Frozen):
    """One finding of a campaign, what backs it, and (once applied) what became of it."""

    finding_id: str
    position: int = 0  # the review's order
    kind: str
    subject: str
    org: str = ""
    project: str = ""
    group: str = ""
    detail: str
    action: str  # remove | revoke_invitation | review | none
    reason: str = ""
    actionable: bool = False
    approval_id: str = ""  # the approval that decides it (actionable items)
    evidence: Evidence | None = None
    outcome: str = ""  # as the review's report says it: offboard done, revoke_invitation …
    offboarding_run: str = ""  # the offboarding subflow run of a removal
    ticket: str = ""  # its case's ticket


class Campaign(Frozen):
    """One access review run, as security works it."""

    run: str  # the review's flow run id
    title: str
    started_at: datetime
    started_by: str
    approve: str  # per_item | bulk
    state: str = DECIDING
    finished_at: datetime | None = None
    reports: dict[str, str] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        return self.state in ENDED


class Decided(StrEnum):
    UNDECIDED = "undecided"
    CERTIFIED = "certified"  # the access is kept: the removal was denied
    REVOKED = "revoked"  # the removal (or revocation) was approved
    TIMED_OUT = "timed out"  # nobody decided before the deadline: kept
    CANCELLED = "cancelled"
    REPORTED = "reported"  # not actionable: reported only


@dataclass(frozen=True)
class ItemDecision:
    """An item's decision, the decisions that made it, and whether the flow has tallied it
    (``settled``: its approval is closed)."""

    state: Decided
    by: tuple[Decision, ...] = ()
    settled: bool = False

    @property
    def decided(self) -> bool:
        return self.state is not Decided.UNDECIDED


def _standing(appr: ApprovalRequest) -> list[Decision]:
    """The decisions on the approval's current plan that count or will: counted by the flow's
    tally, or not tallied yet and by one of the seats' candidates (a refused one never)."""
    seats = {c.lower() for seat in appr.required for c in seat}
    return [
        d
        for d in appr.decisions
        if d.plan_hash == appr.plan_hash
        and not d.reason
        and (d.counted or d.approver.lower() in seats)
    ]


def decision_of(appr: ApprovalRequest | None) -> ItemDecision:
    """An actionable item's decision, read from its approval (None: not asked yet)."""
    if appr is None:
        return ItemDecision(Decided.UNDECIDED)
    standing = _standing(appr)
    denies = tuple(d for d in standing if d.decision == "deny")
    approves = tuple(d for d in standing if d.decision == "approve")
    if appr.state is ApprovalState.APPROVED:
        return ItemDecision(Decided.REVOKED, tuple(d for d in approves if d.counted), True)
    if appr.state is ApprovalState.DENIED:
        counted = tuple(d for d in denies if d.counted)
        return ItemDecision(Decided.CERTIFIED, counted or denies, True)
    if appr.state is ApprovalState.EXPIRED:
        return ItemDecision(Decided.TIMED_OUT, (), True)
    if appr.state is ApprovalState.CANCELLED:
        return ItemDecision(Decided.CANCELLED, (), True)
    if denies:
        return ItemDecision(Decided.CERTIFIED, denies[:1])
    if len({d.approver for d in approves}) >= max(1, appr.quorum):
        return ItemDecision(Decided.REVOKED, approves)
    return ItemDecision(Decided.UNDECIDED, approves)


def item_decision(item: CampaignItem, approvals: Mapping[str, ApprovalRequest]) -> ItemDecision:
    """The decision of any campaign item (one not actionable is reported only)."""
    if not item.actionable:
        return ItemDecision(Decided.REPORTED, (), True)
    return decision_of(approvals.get(item.approval_id))


@dataclass(frozen=True)
class Progress:
    decided: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.decided / self.total)


def progress(items: Iterable[CampaignItem], approvals: Mapping[str, ApprovalRequest]) -> Progress:
    """How many of the campaign's actionable items are decided, of how many."""
    actionable = [i for i in items if i.actionable]
    done = sum(1 for i in actionable if item_decision(i, approvals).decided)
    return Progress(done, len(actionable))


REPORT_COLUMNS = (
    "id",
    "kind",
    "subject",
    "org",
    "project",
    "group",
    "detail",
    "action",
    "decision",
    "decided_by",
    "decided_at",
    "channel",
    "authenticated_by",
    "outcome",
    "offboarding_run",
    "ticket",
)


def report_rows(
    items: Iterable[CampaignItem], approvals: Mapping[str, ApprovalRequest]
) -> list[dict[str, str]]:
    """The signed-off report: each item, its decision, who decided it (as the channel
    authenticated them) and when, and what happened."""
    rows = []
    for i in sorted(items, key=lambda i: i.position):
        d = item_decision(i, approvals)
        rows.append(
            {
                "id": i.finding_id,
                "kind": i.kind,
                "subject": i.subject,
                "org": i.org,
                "project": i.project,
                "group": i.group,
                "detail": i.detail,
                "action": i.action,
                "decision": d.state.value,
                "decided_by": ", ".join(x.approver for x in d.by),
                "decided_at": ", ".join(x.at.isoformat(timespec="seconds") for x in d.by),
                "channel": ", ".join(sorted({x.channel for x in d.by})),
                "authenticated_by": ", ".join(sorted({x.auth for x in d.by if x.auth})),
                "outcome": i.outcome,
                "offboarding_run": i.offboarding_run,
                "ticket": i.ticket,
            }
        )
    return rows


def by_person(items: Iterable[CampaignItem]) -> list[tuple[str, str, list[CampaignItem]]]:
    """The items grouped by person (and org), in the review's order: (subject, org, items)."""
    groups: dict[tuple[str, str], list[CampaignItem]] = {}
    for i in sorted(items, key=lambda i: i.position):
        groups.setdefault((i.subject, i.org), []).append(i)
    return [(s, o, its) for (s, o), its in groups.items()]


STATE_WORDS = {
    DECIDING: "waiting for decisions",
    APPLYING: "applying the decisions",
    "done": "done",
    "failed": "ended with failures",
    "denied": "done: nothing revoked",
    "nothing_to_do": "done: nothing to decide",
    "planned": "dry run: nothing to decide",
}


def state_words(state: str) -> str:
    """A campaign's state as the console says it."""
    return STATE_WORDS.get(state, state)


def spelled_out(address: str) -> str:
    """An address with characters beyond ASCII, spelled out (``j\\u043en.smith@acme.com``):
    a look-alike reads like the real one; ``""`` for a plain ASCII address."""
    return "" if address.isascii() else address.encode("ascii", "backslashreplace").decode()
