"""What the approval gate needs, from a runbook's runtime (one ledger, one clock)."""

from __future__ import annotations

from approvals.policy import load_policy
from approvals.services import Services
from tasks.runtime import Runtime


def gate_services(rt: Runtime) -> Services:
    """The gate's services over the runbook's runtime: the same ledger, connectors and clock."""
    return Services(
        settings=rt.settings,
        ledger=rt.ledger,
        policy=load_policy(rt.settings.policy),
        messenger=rt.messenger,
        tickets=rt.tickets,
        clock=rt.clock,
        ticket_base_url=rt.ticket_base_url,
    )
