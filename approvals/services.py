"""What the approval gate and the handlers need, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.capabilities import Messenger, Tickets
from connectors.settings import Settings, load_settings
from domain.policy import Policy
from ledger import LedgerDB, open_ledger


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """The ledger, the policy, Slack and Jira, and the clock (passed in: STYLE.md point 11)."""

    settings: Settings
    ledger: LedgerDB
    policy: Policy
    messenger: Messenger | None = None
    tickets: Tickets | None = None
    clock: Callable[[], datetime] = field(default=utcnow)
    ticket_base_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Services:
        from approvals.policy import load_policy
        from connectors.slack import SlackMessenger
        from connectors.tickets import JiraTickets

        settings = settings or load_settings()
        return cls(
            settings=settings,
            ledger=open_ledger(settings.ledger_database_url()),
            policy=load_policy(settings.policy),
            messenger=SlackMessenger(settings),
            tickets=JiraTickets(settings),
            ticket_base_url=settings.jira_url.rstrip("/") + "/browse/",
        )
