"""What the approval gate and the handlers need, built once from the settings.

The IdP's user directory is among them: a Slack click counts only from a person the IdP knows,
and a requester is known by the IdP user's address, not by whatever alias or name they gave
(approvals/people.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.capabilities import HrDirectory, Messenger, Tickets, UserDirectory
from connectors.rate import BucketStore
from connectors.settings import Settings, load_settings
from domain.policy import Policy
from ledger import Anchor, FileCheckpoints, LedgerDB, open_ledger
from ledger.rate_buckets import SqlBucketStore


def utcnow() -> datetime:
    return datetime.now(UTC)


def open_settings_ledger(settings: Settings) -> LedgerDB:
    """The ledger the settings name, with its audit key and checkpoint file: how every process
    that appends to the audit log (the CLI, the intake, the workers) opens it."""
    anchor = Anchor(
        settings.audit_key.get_secret_value().encode(),
        FileCheckpoints(settings.audit_checkpoint_path()),
    )
    return open_ledger(settings.ledger_database_url(), anchor=anchor)


def settings_buckets(settings: Settings, ledger: LedgerDB) -> BucketStore | None:
    """Where the connectors built from the settings keep their rate limits
    (``HANDOVER_RATE_LIMITS``): the ledger's shared buckets (``shared``, the default: every
    process of the deployment spends the same ones), or None for this process's own
    (``process``). For ``connectors.rate.use_shared_limits``."""
    return SqlBucketStore(ledger) if settings.rate_limits == "shared" else None


@dataclass
class Services:
    """The ledger, the policy, Slack, Jira and the IdP's users, and the clock (passed in:
    STYLE.md point 11). Without ``idp`` no Slack click is taken (nobody can be mapped).
    ``hr``: the HR system's API (``HANDOVER_HR_API``), how an HR vendor's webhook that names
    only an employee id is resolved to a person (None: not configured)."""

    settings: Settings
    ledger: LedgerDB
    policy: Policy
    messenger: Messenger | None = None
    tickets: Tickets | None = None
    clock: Callable[[], datetime] = field(default=utcnow)
    ticket_base_url: str = ""
    idp: UserDirectory | None = None
    hr: HrDirectory | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Services:
        from approvals.policy import load_policy
        from connectors.hris import make_hr_api
        from connectors.idp import make_idp
        from connectors.rate import use_shared_limits
        from connectors.slack import SlackMessenger
        from connectors.tickets import JiraTickets

        settings = settings or load_settings()
        ledger = open_settings_ledger(settings)
        with use_shared_limits(settings_buckets(settings, ledger)):
            return cls(
                settings=settings,
                ledger=ledger,
                policy=load_policy(settings.policy),
                messenger=SlackMessenger(settings),
                tickets=JiraTickets(settings),
                ticket_base_url=settings.jira_url.rstrip("/") + "/browse/",
                idp=make_idp(settings),
                hr=make_hr_api(settings),
            )
