"""Access review campaigns, ``/console/reviews``: each review run security works through to its
signed-off report (security works them; auditors read them; nobody else sees them).

A campaign is what the review flow recorded (ledger.campaigns): the findings grouped by person
with the evidence (HR status, last login, groups and the roles each gives), and the approval
that decides each actionable item. *Certify* keeps the access (a deny of the item's removal),
*Revoke* removes it (an approval): a decision on the item's approval recorded as every channel
records one (approvals.handler: channel ``console``, the signed-in person's IdP address, how
the IdP authenticated them), then the review's paused run is woken — the review applies what
was revoked through the offboarding runbook, as it does for a Slack click. Who may decide is
the policy's (its ``access-review-removal`` seats), checked per item (``may_decide``).

Pages: the list (``/reviews``), a campaign (``/reviews/<run>``, its progress also as a live
fragment ``/reviews/<run>/progress``), its report (``/reviews/<run>/report`` and
``report.csv``); one POST, ``/reviews/<run>/decide`` (CSRF target ``review:<run>``), takes one
item or a selection.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from approvals.console_roles import Role, may_decide
from approvals.handler import DecisionRefused, record_decision, wake_flow
from approvals.services import Services
from domain.campaign import (
    ITEM_ID,
    REPORT_COLUMNS,
    Campaign,
    CampaignItem,
    ItemDecision,
    by_person,
    item_decision,
    progress,
    report_rows,
    spelled_out,
    state_words,
)
from domain.escaping import csv_cell
from domain.records import ApprovalRequest
from intake.console.base import HEADERS, PREFIX, Console, PageRefused, Viewer, every, one
from ledger.approvals import get_approval
from ledger.campaigns import get_campaign, items_of_campaigns, list_campaigns

READERS = (Role.SECURITY, Role.AUDITOR)
# The console's words → the decision on the item's approval (revoke: approve its removal).
DECISIONS = {"certify": "deny", "revoke": "approve"}


@dataclass(frozen=True)
class Row:
    """One item as the campaign page shows it to this viewer."""

    item: CampaignItem
    approval: ApprovalRequest | None
    decision: ItemDecision
    why_not: str  # why this viewer may not decide it ("": they may)

    @property
    def value(self) -> str:
        """What the item's form sends: the item and the plan its approval asks about."""
        plan = self.approval.plan_hash[:12] if self.approval else ""
        return f"{self.item.finding_id}@{plan}"


def _approvals(svc: Services, items: list[CampaignItem]) -> dict[str, ApprovalRequest]:
    out: dict[str, ApprovalRequest] = {}
    for aid in {i.approval_id for i in items if i.approval_id}:
        try:
            out[aid] = get_approval(svc.ledger, aid)
        except KeyError:  # not stored yet (being opened): undecided
            continue
    return out


def _shared(items: list[CampaignItem]) -> set[str]:
    """Approvals deciding more than one item (a bulk review): not decided item by item."""
    seen: dict[str, int] = {}
    for i in items:
        if i.approval_id:
            seen[i.approval_id] = seen.get(i.approval_id, 0) + 1
    return {a for a, n in seen.items() if n > 1}


def _why_not(
    svc: Services, who: Viewer, item: CampaignItem, appr: ApprovalRequest | None, shared: set[str]
) -> str:
    """Why ``who`` may not decide ``item`` now ("": they may)."""
    if not item.actionable:
        return "reported only: nothing to decide"
    if appr is None:
        return "its approval is not open yet"
    if appr.id in shared:
        return "decided as one with the whole review, on its approval"
    if not who.has(Role.SECURITY):
        return "auditors read; they decide nothing"
    if any(who.is_one_of(d.approver) and d.plan_hash == appr.plan_hash for d in appr.decisions):
        return "you decided it"
    return may_decide(svc, who, appr) or ""


def _load(
    svc: Services, run: str
) -> tuple[Campaign, list[CampaignItem], dict[str, ApprovalRequest]]:
    """The campaign, its items and their approvals.

    Raises:
        PageRefused: no such campaign (404).
    """
    try:
        campaign, items = get_campaign(svc.ledger, run)
    except KeyError:
        raise PageRefused(404, "No such review", "There is no such review campaign.") from None
    return campaign, items, _approvals(svc, items)


def _rows(c: Console, who: Viewer, run: str) -> tuple[Campaign, list[Row], dict[str, Any]]:
    campaign, items, approvals = _load(c.svc, run)
    shared = _shared(items)
    rows = [
        Row(
            i,
            approvals.get(i.approval_id),
            item_decision(i, approvals),
            _why_not(c.svc, who, i, approvals.get(i.approval_id), shared),
        )
        for i in items
    ]
    ctx = {"campaign": campaign, "progress": progress(items, approvals), "run": run}
    return campaign, rows, ctx


def _decide(
    svc: Services, who: Viewer, run: str, picked: list[str], decision: str, note: str
) -> int:
    """Record ``who``'s ``decision`` on each picked item (``<finding id>@<plan hash>``), all
    checked first (nothing is recorded when one is refused), then wake the review's run."""
    _, items, approvals = _load(svc, run)
    by_id = {i.finding_id: i for i in items}
    shared = _shared(items)
    chosen: list[tuple[ApprovalRequest, str]] = []
    for value in picked:
        fid, _, plan = value.partition("@")
        item = by_id.get(fid) if ITEM_ID.match(fid) else None
        if item is None:
            raise PageRefused(400, "Refused", f"{value[:40]!r} is not an item of this review.")
        appr = approvals.get(item.approval_id)
        why = _why_not(svc, who, item, appr, shared)
        if why or appr is None:
            raise PageRefused(403, "Refused", f"{item.subject} ({item.kind}): {why}.")
        chosen.append((appr, plan))
    recorded: list[ApprovalRequest] = []
    for appr, plan in chosen:
        try:
            out = record_decision(
                svc,
                appr.id,
                approver=who.email,
                decision=DECISIONS[decision],
                plan_hash=plan,
                verified=who.verified,
                channel="console",
                comment=note,
            )
        except DecisionRefused as exc:  # e.g. the plan changed since the page was drawn
            raise PageRefused(409, "Refused", f"{appr.subject}: {exc}") from None
        if out.recorded and out.approval is not None:
            recorded.append(out.approval)
    # Every item's approval wakes the same run: once is enough (it re-reads the ledger, and
    # a wake-up that finds it between two waits is seen by its own recheck).
    for flow_run in {a.flow_run_id for a in recorded}:
        wake_flow(next(a for a in recorded if a.flow_run_id == flow_run))
    return len(recorded)


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
    w.writeheader()
    # Findings quote names, emails and notes from the org and HR: never a formula.
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return out.getvalue()


def routes(router: APIRouter, c: Console) -> None:
    c.env.globals["state_words"] = state_words
    c.env.filters["spelled_out"] = spelled_out

    @router.get("/reviews")
    def campaigns(request: Request) -> Response:
        """Every review campaign with its progress, state, and who started it when."""
        who = c.need(request, *READERS)
        found = list_campaigns(c.svc.ledger)
        items = items_of_campaigns(c.svc.ledger, [x.run for x in found])
        shown = [(x, progress(items[x.run], _approvals(c.svc, items[x.run]))) for x in found]
        return c.render(who, "reviews.html", title="Access reviews", campaigns=shown)

    @router.get("/reviews/{run}")
    def campaign(request: Request, run: str, decided: int | None = None) -> Response:
        """A campaign: the findings by person with their evidence, a decision per item and in
        bulk, the progress, and the report once it has ended."""
        who = c.need(request, *READERS)
        campaign, rows, ctx = _rows(c, who, run)
        people = [
            (subject, org, [next(r for r in rows if r.item is i) for i in its])
            for subject, org, its in by_person(r.item for r in rows)
        ]
        flash = f"{decided} decision(s) recorded." if decided is not None else ""
        return c.render(
            who,
            "review.html",
            title=campaign.title,
            people=people,
            decidable=[r for r in rows if not r.why_not],
            flash=flash,
            **ctx,
        )

    @router.get("/reviews/{run}/progress")
    def live_progress(request: Request, run: str) -> Response:
        """The campaign's progress alone (htmx refreshes it while the campaign runs)."""
        who = c.need(request, *READERS)
        _, _, ctx = _rows(c, who, run)
        return c.render(who, "review_progress.html", title="", **ctx)

    @router.post("/reviews/{run}/decide")
    async def decide(request: Request, run: str) -> Response:
        """Certify (keep) or Revoke (remove) one item or a selection, as the signed-in person."""
        who, form = await c.posted(request, f"review:{run}", Role.SECURITY)
        decision = one(form, "decision")
        if decision not in DECISIONS:
            raise PageRefused(400, "Refused", "Choose Certify or Revoke.")
        picked = every(form, "item")
        if not picked:
            raise PageRefused(400, "Nothing selected", "Select at least one item to decide.")
        n = await run_in_threadpool(
            _decide, c.svc, who, run, picked, decision, one(form, "note", 2000)
        )
        return c.redirect(f"{PREFIX}/reviews/{run}?decided={n}")

    @router.get("/reviews/{run}/report")
    def report(request: Request, run: str) -> Response:
        """The report: each item's decision, who decided it and when, and what happened."""
        who = c.need(request, *READERS)
        campaign, items, approvals = _load(c.svc, run)
        decisions = [item_decision(i, approvals) for i in items]  # items in the report's order
        deciders = sorted({d.approver for x in decisions for d in x.by})
        return c.render(
            who,
            "review_report.html",
            title=f"{campaign.title}: report",
            campaign=campaign,
            lines=list(zip(report_rows(items, approvals), decisions, strict=True)),
            deciders=deciders,
            progress=progress(items, approvals),
            run=run,
        )

    @router.get("/reviews/{run}/report.csv")
    def report_csv(request: Request, run: str) -> Response:
        """The report as CSV (the same rows)."""
        c.need(request, *READERS)
        campaign, items, approvals = _load(c.svc, run)
        name = f"{campaign.title.lower().replace(' ', '-')}.csv"
        return Response(
            _csv(report_rows(items, approvals)),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )
