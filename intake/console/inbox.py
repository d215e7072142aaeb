"""The inbox, ``/console/``: what waits for the signed-in person — approvals where they hold a
seat, human tasks assigned to them — with age, deadline and escalation, their own requests
still waiting, and the rotated keys' secrets waiting for them to retrieve."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from approvals.console_roles import may_decide, seat_holders
from domain.records import ApprovalState
from domain.tasks import TaskState
from intake.console.base import Console
from ledger.approvals import list_approvals
from ledger.rotated_secrets import waiting_secrets
from ledger.tasks import escalated_ids, list_tasks


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/")
    def inbox(request: Request) -> Response:
        """Approvals this person may decide, their open tasks, and their own waiting requests."""
        who = c.need(request)
        pending = list_approvals(c.svc.ledger, state=ApprovalState.PENDING)
        to_decide = [
            a
            for a in pending
            if who.is_one_of(*seat_holders(c.svc, a)) and may_decide(c.svc, who, a) is None
        ]
        decided = {
            a.id
            for a in to_decide
            if any(who.is_one_of(d.approver) and d.plan_hash == a.plan_hash for d in a.decisions)
        }
        escalated = escalated_ids(c.svc.ledger)
        tasks = [
            t for t in list_tasks(c.svc.ledger, state=TaskState.OPEN) if who.is_one_of(*t.assignees)
        ]
        mine = [a for a in pending if who.is_one_of(a.requester)]
        secrets = waiting_secrets(c.svc.ledger, who.addresses, now=c.svc.clock())
        return c.render(
            who,
            "inbox.html",
            title="Inbox",
            approvals=sorted(to_decide, key=lambda a: a.expires_at),
            decided=decided,
            tasks=sorted(tasks, key=lambda t: t.created_at),
            escalated=escalated,
            mine=mine,
            secrets=secrets,
        )
