"""The grants page, ``/console/grants``: temporary access (``ledger.grants``) — who has what
until when, on which ticket and whose sponsorship, the time left, the last reminder sent, an
earlier end it was extended from — and the extension requests waiting for approval.

Who sees what: it_admin, security and auditor see every grant; anyone else the grants they are
the subject or the sponsor of. The page decides nothing: an extension is asked by the reminder's
Extend button and decided on its approval page (``/console/approvals/<id>``).

An extension request is an approval of runbook ``extend`` (``flows.expire.extend_grant``); it
is tied to its grant by its plan hash (``domain.expiry.extends``), never by its words alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.expiry import describe, duration, extends, utc
from domain.records import ApprovalRequest, ApprovalState, Grant, GrantStatus
from intake.console.base import Console, PageRefused, Viewer
from ledger.approvals import list_approvals
from ledger.grants import grants

STATES = tuple(s.value for s in GrantStatus)


@dataclass(frozen=True)
class GrantRow:
    """One grant as the page shows it: what it gives, the time left, its extension requests."""

    grant: Grant
    gives: str
    left: str
    extensions: list[ApprovalRequest]


def time_left(g: Grant, now: datetime) -> str:
    """``2 days 3 hours`` left of an active grant, ``ended 5 hours ago``, or ``—`` when it is no
    longer active."""
    if g.status is not GrantStatus.ACTIVE:
        return "—"
    end = utc(g.end)
    return duration(end - now) if end > now else f"ended {duration(now - end)} ago"


def _theirs(who: Viewer, g: Grant) -> bool:
    return who.sees_all or who.is_one_of(g.subject, g.sponsor)


def _rows(c: Console, who: Viewer, state: str, person: str) -> list[GrantRow]:
    now = utc(c.svc.clock())
    found = grants(c.svc.ledger, status=GrantStatus(state) if state else None)
    wanted = person.strip().lower()
    shown = [
        g
        for g in found
        if _theirs(who, g) and (not wanted or wanted in f"{g.subject} {g.sponsor}".lower())
    ]
    asked = [
        a
        for a in list_approvals(c.svc.ledger, state=ApprovalState.PENDING)
        if a.runbook == "extend"
    ]
    return [
        GrantRow(
            grant=g,
            gives=describe(g),
            left=time_left(g, now),
            extensions=[
                a
                for a in asked
                if a.subject == g.subject
                and extends(g, plan_hash=a.plan_hash, plan_lines=a.plan_lines)
            ],
        )
        for g in shown
    ]


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/grants")
    def grants_page(request: Request, state: str = "", person: str = "") -> Response:
        """The grants this person may see, filtered by state and by person (a part of the
        subject's or sponsor's address)."""
        who = c.need(request)
        if state and state not in STATES:
            raise PageRefused(400, "No such state", f"A grant's state is one of {STATES}.")
        person = person[:320]
        return c.render(
            who,
            "grants.html",
            title="Temporary access",
            rows=_rows(c, who, state, person),
            states=STATES,
            state=state,
            person=person,
            sees_all=who.sees_all,
        )
