"""Cases, ``/console/cases``: every runbook run, filterable, and each one as a timeline read
from the audit log (ledger/case_views.py says how its events are found), with links to its
Prefect flow runs.

Who sees what: IT admins, security and auditors every case; anyone else the cases they are the
subject or the requester of (under any of their addresses); another person's case is 403.
``/console/cases?run=<flow run id>`` goes to the case that run worked on (the approval page
links there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from approvals.console_roles import ConsolePerson, Role
from approvals.gate import approval_id_for
from domain.records import ApprovalRequest, AuditRecord
from domain.runbook import Case
from intake.console.base import PREFIX, Console, PageRefused
from intake.console.query import PAGE_SIZE, Filters
from ledger.approvals import get_approval
from ledger.case_views import (
    CaseQuery,
    approvals_of_run,
    case_by_events_of_run,
    case_choices,
    case_events,
    cases_of,
    get_case,
    list_cases,
)

STATES = ["open", "closed"]
SHORT = 200  # a step's before/after is shown when its JSON is at most this long
TRIGGERS = ("emergency_declared", "trigger_refused", "safety_valve")


def may_see(who: ConsolePerson, case: Case) -> bool:
    """IT admins, security and auditors see every case; anyone else their own (subject or
    requester)."""
    return who.sees_all or who.is_one_of(case.subject, case.requester)


def prefect_ui(configured: str) -> str:
    """Where people's browsers reach Prefect's UI: ``HANDOVER_PREFECT_UI_URL``, else what
    Prefect itself derives (``PREFECT_UI_URL``, or ``PREFECT_API_URL`` without ``/api``);
    "" when neither is known."""
    if configured:
        return configured.rstrip("/")
    from prefect.settings import get_current_settings  # only prefect: never the flows

    return (get_current_settings().ui_url or "").rstrip("/")


def short(data: Any, *, leave: tuple[str, ...] = ("reason",)) -> str:
    """``data`` as compact JSON when it is short ("" when empty or too long to read here)."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in leave}
    if not data:
        return ""
    text = json.dumps(data, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= SHORT else ""


@dataclass
class Timeline:
    """A case's events grouped as a person reads the case."""

    trigger: list[AuditRecord] = field(default_factory=list)
    approval: list[AuditRecord] = field(default_factory=list)
    steps: list[AuditRecord] = field(default_factory=list)
    record: list[AuditRecord] = field(default_factory=list)
    other: list[AuditRecord] = field(default_factory=list)
    plan_hashes: list[str] = field(default_factory=list)
    verification: dict[str, str] = field(default_factory=dict)


def timeline(case: Case, events: list[AuditRecord]) -> Timeline:
    """Each event in its group: triggered by, approved by, steps (human tasks among them),
    record (the verification comes from it), anything else."""
    t = Timeline()
    own = f"{case.runbook}."
    for e in events:
        if e.plan_hash and e.plan_hash not in t.plan_hashes:
            t.plan_hashes.append(e.plan_hash)
        if e.action.endswith(TRIGGERS):
            t.trigger.append(e)
        elif e.action.startswith("approval."):
            t.approval.append(e)
        elif e.action in (f"{own}recorded", f"{own}rejected"):
            t.record.append(e)
            t.verification.update((e.after or {}).get("verification") or {})
        elif e.action.startswith((own, "task.")):
            t.steps.append(e)
        else:
            t.other.append(e)
    return t


def _approval(c: Console, case: Case) -> ApprovalRequest | None:
    try:
        return get_approval(c.svc.ledger, approval_id_for(case.key, case.runbook, case.subject))
    except KeyError:
        return None


def _case_page(c: Console, request: Request, case_id: str) -> tuple[Any, dict[str, Any]]:
    """The viewer and what the case's page and its live part show.

    Raises:
        PageRefused: no such case (404), or not the viewer's (403).
    """
    who = c.need(request)
    case = get_case(c.svc.ledger, int(case_id)) if case_id.isdigit() and len(case_id) < 18 else None
    if case is None:
        raise PageRefused(404, "No such case", f"There is no case {case_id}.")
    if not may_see(who, case):
        raise PageRefused(403, "Not your case", "This case is about someone else.")
    aid = approval_id_for(case.key, case.runbook, case.subject)
    declared = timedelta(hours=c.svc.policy.timeout_hours)
    events, runs = case_events(c.svc.ledger, case, approval_id=aid, declared=declared)
    appr = _approval(c, case)
    if appr is not None and appr.flow_run_id and appr.flow_run_id not in runs:
        runs.append(appr.flow_run_id)
    ticket_url = f"{c.svc.ticket_base_url}{case.ticket}" if case.ticket else ""
    return who, {
        "case": case,
        "t": timeline(case, events),
        "appr": appr,
        "runs": runs,
        "prefect": prefect_ui(c.svc.settings.prefect_ui_url),
        "ticket_url": ticket_url if c.svc.ticket_base_url else "",
        "short": short,
        "sees_audit": who.has(Role.SECURITY, Role.AUDITOR),
    }


def _by_run(c: Console, who: ConsolePerson, run: str) -> Response:
    """To the case the flow run ``run`` worked on (303), or a page saying there is none."""
    found: Case | None = None
    asked = approvals_of_run(c.svc.ledger, run)
    for a in asked:
        for case in cases_of(c.svc.ledger, runbook=a.runbook, subject=a.subject):
            if approval_id_for(case.key, case.runbook, case.subject) == a.id:
                found = case
                break
    if found is None:
        found = case_by_events_of_run(c.svc.ledger, run)
    if found is None:
        why = (
            f"Flow run {run} asked for approval {', '.join(a.id for a in asked)}, but no case "
            "of that approval is recorded: it was asked outside a runbook's case (an access "
            "review or a bulk run), or its case was never opened."
            if asked
            else f"No case recorded by flow run {run} is known (yet)."
        )
        raise PageRefused(404, "No case for this run", why)
    if not may_see(who, found):
        raise PageRefused(403, "Not your case", "This case is about someone else.")
    return c.redirect(f"{PREFIX}/cases/{found.id}")


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/cases")
    def cases(request: Request) -> Response:
        """Every case this person may see, newest first, filtered by the query string."""
        who = c.need(request)
        run = (request.query_params.get("run") or "").strip()[:64]
        if run:
            return _by_run(c, who, run)
        runbooks, outcomes = case_choices(c.svc.ledger)
        f = Filters(request.query_params)
        since, until = f.day("from", "Opened from"), f.day("to", "Opened to", end=True)
        if not f.times_ok(since, until, "Opened"):
            since = until = None
        q = CaseQuery(
            person=f.text("person"),
            runbook=f.choice("runbook", runbooks, "Runbook"),
            state=f.choice("state", STATES, "State"),
            outcome=f.choice("outcome", outcomes, "Outcome"),
            since=since,
            until=until,
            people=None if who.sees_all else who.addresses,
        )
        page = f.page()
        found, total = list_cases(c.svc.ledger, q, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        return c.render(
            who,
            "cases.html",
            status=400 if f.problems else 200,
            title="Cases",
            cases=found,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            f=f,
            runbooks=runbooks,
            outcomes=outcomes,
            states=STATES,
        )

    @router.get("/cases/{case_id}")
    def case_page(request: Request, case_id: str) -> Response:
        """One case as a timeline; while it is open its live part refreshes itself."""
        who, ctx = _case_page(c, request, case_id)
        return c.render(who, "case.html", title=f"Case {case_id}", **ctx)

    @router.get("/cases/{case_id}/timeline")
    def case_timeline(request: Request, case_id: str) -> Response:
        """The live part of a case's page (htmx asks for it every 2 s while the case is open;
        once it is closed the part it gets back asks no more)."""
        who, ctx = _case_page(c, request, case_id)
        return c.render(who, "case_timeline.html", title=f"Case {case_id}", **ctx)
