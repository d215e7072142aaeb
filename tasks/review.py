"""The access review's tasks: read the HR roster and what the review needs from the org,
revoke an invitation (recorded), write the CSV and HTML reports, and keep the review's campaign
(its findings with their evidence, the approval deciding each item, the outcomes) in the ledger
for the console (ledger.campaigns). The rules are in :mod:`domain.review`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task

from connectors.capabilities import (
    Invitations,
    MemberDirectory,
    PermissionGroups,
    Roster,
    has,
    require,
)
from connectors.hris import RosterFile
from connectors.org.export import read_members_export
from domain.campaign import Campaign, CampaignItem, Evidence, evidence_for
from domain.escaping import csv_cell, html_text
from domain.models import Invitation, Member, PermissionGroup, Role, RosterEntry
from domain.review import ADMINS_SUBJECT, ConsoleRecord, Finding, with_console_export
from ledger import campaigns
from ledger.reviews import ReviewItem, record_items
from tasks.backend import roles_by_api
from tasks.runtime import UNCACHED, Runtime
from tasks.sweeps import audit

REPORT_COLUMNS = ("id", "kind", "subject", "org", "project", "group", "detail", "action", "outcome")


@dataclass(frozen=True)
class ReviewInputs:
    """The org as the review sees it."""

    members: list[Member]
    invitations: list[Invitation]
    groups: list[PermissionGroup]
    individual_roles: dict[str, dict[str, Role]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _individual_roles(org: MemberDirectory, email: str) -> dict[str, Role] | None:
    """The member's own project grants, where the backend says (the sandbox's admin API);
    None where it does not (then the domain says "individual grant of unknown role")."""
    admin = getattr(org, "admin", None)
    if admin is None or not hasattr(admin, "json"):
        return None
    from connectors.org.client import segment

    data = admin.json(
        "GET",
        f"/members/{segment(email)}/effective-roles",
        operation="effective_access",
        subject=email,
    )
    rows = data.get("projects", []) if isinstance(data, dict) else []
    out: dict[str, Role] = {}
    for row in rows or []:
        for src in row.get("sources", []):
            if src.get("source") == "individual":
                out[row["project"]] = Role(src["role"])
    return out


@task(name="read_roster")
def read_roster(path: str) -> list[RosterEntry]:
    """The HR roster file's people (CSV or JSON; :class:`connectors.hris.RosterFile`).

    Raises:
        RosterError: the file is missing or invalid (its row and field problems named).
    """
    return RosterFile(path).entries()


@task(name="read_hr_roster", cache_policy=UNCACHED)
def read_hr_roster(rt: Runtime) -> list[RosterEntry]:
    """The runtime's roster (the HR system's API, ``HANDOVER_HR_API``, when no file is set).

    Raises:
        CapabilityMissing: no roster is configured (neither a file nor an HR API).
        ConnectorError: the HR system refused or could not answer.
    """
    roster = require(rt.roster, Roster, system="hr", operation="read the roster")
    return roster.entries()


@task(name="read_members_export")
def read_export(path: str) -> list[ConsoleRecord]:
    """The console's Members export (``connectors.org.export``).

    Raises:
        MembersExportError: the file is missing or invalid (its row problems named).
    """
    return read_members_export(path)


@task(name="read_review_inputs", cache_policy=UNCACHED)
def read_review_inputs(rt: Runtime, export: list[ConsoleRecord] | None = None) -> ReviewInputs:
    """Every member and invitation, the permission groups and — for the members in two or more
    groups (the only ones the group-union check concerns) — their project grants. On a
    SCIM-only org: the members SCIM lists, with what the console's Members ``export`` says of
    each (org role, status, last login), and what could not be checked as warnings."""
    org = rt.org
    if not roles_by_api(rt):
        members, warnings = with_console_export(list(org.list_members()), export)
        warnings.append(
            "this org (SCIM only) says nobody's project roles: over-privilege through groups "
            "was not checked"
        )
        if not has(org, Invitations):
            warnings.append("this org (SCIM only) cannot list invitations: not reviewed")
        return ReviewInputs(members, [], [], {}, warnings)
    warnings = (
        ["--members-export is not needed here (the org's API says last logins): not used"]
        if export is not None
        else []
    )
    members = list(org.list_members())
    invitations = org.list_invitations() if has(org, Invitations) else []
    if not has(org, Invitations):
        warnings.append(f"{type(org).__name__} cannot list invitations: not reviewed")
    groups = org.list_groups() if has(org, PermissionGroups) else []
    if not has(org, PermissionGroups):
        warnings.append(f"{type(org).__name__} cannot list permission groups: not reviewed")
    count: dict[str, int] = {}
    for g in groups:
        for e in g.members:
            count[e.lower()] = count.get(e.lower(), 0) + 1
    detailed: list[Member] = []
    individual: dict[str, dict[str, Role]] = {}
    for m in members:
        if m.status == "joined" and count.get(m.email.lower(), 0) >= 2:
            full = org.get_member(m.email)
            if full is None:
                continue
            detailed.append(full)
            roles = _individual_roles(org, m.email)
            if roles is not None:
                individual[m.email.lower()] = roles
        else:
            detailed.append(m)
    return ReviewInputs(detailed, invitations, groups, individual, warnings)


@task(name="record_review_items", cache_policy=UNCACHED)
def record_approved_items(
    rt: Runtime, approval_id: str, findings: list[Finding], *, approvers: list[str], run: str
) -> None:
    """Record the items ``approval_id`` approved (ledger.reviews): what an offboarding may
    stand on, each once, for the policy's ``review_approval_max_days``."""
    now = rt.clock()
    record_items(
        rt.ledger,
        [
            ReviewItem(
                approval_id=approval_id,
                item_id=f.id,
                review_run=run,
                subject=f.subject,
                org=f.org,
                action=f.action.value,
                approved_at=now,
                approvers=approvers,
            )
            for f in findings
        ],
    )


@task(name="revoke_review_invitation", cache_policy=UNCACHED)
def revoke_invitation(
    rt: Runtime, finding: Finding, *, flow_run_id: str, approvers: list[str], plan_hash: str
) -> str:
    """Revoke the invitation a finding names; the effect (``deleted`` or ``noop(…)``). A
    SCIM-only org has no invitations API: the pending user is deleted over SCIM, which is what
    revokes an invitation there."""
    if has(rt.org, Invitations):
        res = rt.org_as(Invitations, "revoke_invitation").revoke_invitation(finding.subject)
    else:
        res = rt.org.remove_member(finding.subject)
    effect = str(res)
    audit(
        rt,
        "org.revoke_invitation",
        subject=finding.subject,
        target=f"invitation ({finding.kind.value})",
        on_behalf_of=", ".join(approvers),
        after={"finding": finding.id, "detail": finding.detail},
        effect=effect,
        flow_run_id=flow_run_id,
        plan_hash=plan_hash,
    )
    return effect


def _rows(findings: list[Finding], outcomes: dict[str, str]) -> list[dict[str, str]]:
    return [
        {
            "id": f.id,
            "kind": f.kind.value,
            "subject": f.subject,
            "org": f.org,
            "project": f.project,
            "group": f.group,
            "detail": f.detail,
            "action": f.action.value,
            "outcome": outcomes.get(f.id, ""),
        }
        for f in findings
    ]


@task(name="write_review_reports")
def write_reports(
    findings: list[Finding], outcomes: dict[str, str], *, directory: Path, stem: str, title: str
) -> dict[str, str]:
    """The findings as ``STEM.csv`` and ``STEM.html`` in ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = _rows(findings, outcomes)
    csv_path, html_path = directory / f"{stem}.csv", directory / f"{stem}.html"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS)
        w.writeheader()
        # Findings quote names, emails and notes from the org and HR: never a formula.
        w.writerows({c: csv_cell(v) for c, v in r.items()} for r in rows)
    head = "".join(f"<th>{html_text(c)}</th>" for c in REPORT_COLUMNS)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html_text(r[c])}</td>" for c in REPORT_COLUMNS) + "</tr>"
        for r in rows
    )
    html_path.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html_text(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head>\n"
        f"<body><h1>{html_text(title)}</h1><p>{len(rows)} findings</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
        "</body></html>\n",
        encoding="utf-8",
    )
    return {"csv": str(csv_path), "html": str(html_path)}


def _evidence(f: Finding, org: ReviewInputs, roster: dict[str, RosterEntry]) -> Evidence | None:
    """What the review saw of the finding's person (none for the org-wide Admins finding)."""
    if f.subject == ADMINS_SUBJECT:
        return None
    email = f.subject.lower()
    invitations = sorted(
        (i for i in org.invitations if i.email.lower() == email), key=lambda i: i.sent_at
    )
    return evidence_for(
        f.subject,
        org=f.org,
        member=next((m for m in org.members if m.email.lower() == email), None),
        entry=roster.get(email),
        groups=org.groups,
        individual=org.individual_roles.get(email),
        invitation=invitations[-1] if invitations else None,
    )


@task(name="record_review_campaign", cache_policy=UNCACHED)
def record_campaign(
    rt: Runtime,
    *,
    run: str,
    title: str,
    findings: list[Finding],
    orgs: dict[str, ReviewInputs],
    people: list[RosterEntry],
    requester: str,
    approve: str,
    state: str,
    warnings: list[str],
) -> None:
    """Record the review as a campaign (ledger.campaigns): every finding with the evidence
    about its person — what HR says, the org's record, the groups and the roles each gives —
    for the console's review pages. A resumed review keeps the campaign it recorded."""
    roster = {p.email.lower(): p for p in people}
    items = [
        CampaignItem(
            finding_id=f.id,
            position=n,
            kind=f.kind.value,
            subject=f.subject,
            org=f.org,
            project=f.project,
            group=f.group,
            detail=f.detail,
            action=f.action.value,
            reason=f.reason,
            actionable=f.actionable,
            evidence=_evidence(f, orgs[f.org], roster) if f.org in orgs else None,
        )
        for n, f in enumerate(findings)
    ]
    campaign = Campaign(
        run=run,
        title=title,
        started_at=rt.clock(),
        started_by=requester,
        approve=approve,
        state=state,
        warnings=tuple(warnings),
    )
    campaigns.open_campaign(rt.ledger, campaign, items)


@task(name="record_review_campaign_approvals", cache_policy=UNCACHED)
def record_campaign_approvals(rt: Runtime, run: str, approval_of: dict[str, str]) -> None:
    """Name the approval deciding each item (finding id → approval id): what the console
    decides the item on."""
    campaigns.set_approvals(rt.ledger, run, approval_of)


@task(name="record_review_campaign_state", cache_policy=UNCACHED)
def record_campaign_state(rt: Runtime, run: str, state: str) -> None:
    """The campaign's state while the review runs (``applying``: every item is decided)."""
    campaigns.set_state(rt.ledger, run, state)


@task(name="finish_review_campaign", cache_policy=UNCACHED)
def finish_campaign(
    rt: Runtime,
    run: str,
    *,
    state: str,
    outcomes: dict[str, str],
    offboardings: dict[str, dict[str, str]],
    reports: dict[str, str],
) -> None:
    """The campaign's end: its state (the review's status), each item's outcome, each
    removal's offboarding run and ticket, the report files."""
    campaigns.finish_campaign(
        rt.ledger,
        run,
        state=state,
        at=rt.clock(),
        outcomes=outcomes,
        offboardings=offboardings,
        reports=reports,
    )
