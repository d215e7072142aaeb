"""A runbook run's case in the ledger, seen from the flows: open or resume it, file its ticket
once, keep what was approved, record how it ended (ticket, Slack, audit) and close it.

The flows never touch the ledger or a connector themselves (import-linter); these are the
functions and tasks they compose, each given the run's :class:`tasks.runtime.Runtime` first.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import task

from connectors.errors import ConnectorError
from domain import blocks
from domain.models import WriteResult
from domain.records import ApprovalState, AuditEvent
from domain.runbook import ApprovedPlan, Case, RunbookPlan, effect_counts
from domain.tasks import is_ok
from ledger.audit import append, last_seq
from ledger.cases import (
    done_steps,
    find_closed_case,
    find_open_case,
    mark_done,
    open_case,
    update_case,
)
from tasks.runtime import UNCACHED, Runtime

REFUSED = (ApprovalState.DENIED.value, ApprovalState.EXPIRED.value)


def open_run_case(
    rt: Runtime, *, runbook: str, subject: str, reason: str, requester: str, ticket: str = ""
) -> Case:
    """The open case of this person and runbook (``resumed``), or a new one."""
    return open_case(
        rt.ledger,
        runbook=runbook,
        subject=subject,
        reason=reason,
        requester=requester,
        ticket=ticket,
        now=rt.clock(),
    )


def open_case_of(rt: Runtime, runbook: str, subject: str) -> Case | None:
    """The open case of this person and runbook, without opening one."""
    return find_open_case(rt.ledger, runbook=runbook, subject=subject)


def finished_case(
    rt: Runtime,
    runbook: str,
    subject: str,
    ticket: str,
    *,
    outcomes: tuple[str, ...],
    reason: str = "",
) -> Case | None:
    """The closed case of this runbook, person and ticket that ended in one of ``outcomes``:
    a re-run of a finished (or refused) request finds it and does nothing twice."""
    return find_closed_case(
        rt.ledger,
        runbook=runbook,
        subject=subject,
        ticket=ticket,
        outcomes=outcomes,
        reason=reason,
    )


@task(name="file_ticket", cache_policy=UNCACHED)
def file_ticket(
    rt: Runtime, case: Case, *, project: str, issue_type: str, summary: str, description: str
) -> Case:
    """The case's ticket, filed once: Jira has no idempotency key, so the ticket carries the
    case's label and a run killed between filing and recording it finds it again."""
    if case.ticket:
        return case
    t = rt.tickets.create(
        project=project,
        issue_type=issue_type,
        summary=summary,
        description=description,
        once=case.once_label,
    )
    return update_case(rt.ledger, case.id, ticket=t.key).model_copy(
        update={"resumed": case.resumed}
    )


def approve_case(rt: Runtime, case: Case, approved: ApprovedPlan) -> Case:
    """Keep on the case what its approval covered (a resumed run applies the rest)."""
    return update_case(rt.ledger, case.id, approved_plan=approved)


def close_case(rt: Runtime, case: Case, outcome: str) -> Case:
    return update_case(rt.ledger, case.id, outcome=outcome, closed_at=rt.clock())


def audit_seq(rt: Runtime) -> int:
    """The audit log's last sequence number (the ``--json`` outcome's ``audit_seq``)."""
    return last_seq(rt.ledger)


@task(name="record_outcome", cache_policy=UNCACHED)
def record_outcome(
    rt: Runtime,
    plan: RunbookPlan[Any],
    *,
    case: Case,
    requester: str,
    status: str,
    effects: dict[str, WriteResult],
    verification: dict[str, str],
    flow_run_id: str,
) -> None:
    """Ticket comment (and Done), a Slack DM to the requester (and the plan's own notices,
    e.g. to whoever received content), an audit event; once per case, status and plan."""
    step_id = f"record:{status}:{plan.hash[:12]}"
    if step_id in done_steps(rt.ledger, case.id):
        return
    ticket = case.ticket
    failed = [k for k, v in verification.items() if not is_ok(v)]
    text = plan.record_text(status, failed)
    # The ledger keeps the record; the ticket is a copy, so a Jira outage does not fail the run.
    with contextlib.suppress(ConnectorError):
        if ticket:
            rt.tickets.comment(ticket, text)
            if status == "done" and not failed:
                rt.tickets.transition_to(ticket, "Done")
    summary = blocks.summary_blocks(
        runbook=plan.runbook,
        subject=plan.subject,
        status=status,
        run_id=flow_run_id or None,
        effects=effect_counts(effects),
        verification={k: is_ok(v) for k, v in verification.items()},
        warnings=plan.warnings,
        ticket_url=f"{rt.ticket_base_url}{ticket}" if ticket else None,
    )
    notices: list[tuple[str, str, list[dict[str, Any]] | None]] = []
    if requester and "@" in requester:
        notices.append((requester, text, summary))
    notices += [(who, msg, None) for who, msg in plan.notices(status, ticket)]
    for who, msg, body in notices:
        with contextlib.suppress(ConnectorError):
            rt.messenger.dm(who, msg, body)
    mark_done(rt.ledger, case.id, step_id, status, {}, rt.clock())
    append(
        rt.ledger,
        AuditEvent(
            action=f"{plan.runbook}.recorded",
            subject=plan.subject,
            target=ticket,
            effect=status,
            after={"verification": verification, **plan.record_facts()},
            flow_run_id=flow_run_id,
            ticket=ticket,
            plan_hash=plan.hash,
        ),
        now=rt.clock(),
    )
