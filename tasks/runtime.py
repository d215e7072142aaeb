"""The connectors and the ledger a runbook works with, built once per process from the
settings (Prefect parameters must be plain data, so flows do not receive these)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from connectors.capabilities import Messenger, Roster, Tickets, require
from connectors.hris import RosterFile
from connectors.idp import ScimIdp
from connectors.org import AmplitudeScim, SandboxOrg, make_org
from connectors.settings import Settings, load_settings
from connectors.slack import SlackMessenger
from connectors.tickets import JiraTickets
from ledger import LedgerDB, open_ledger

C = TypeVar("C")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything a runbook's tasks touch."""

    settings: Settings
    ledger: LedgerDB
    org: SandboxOrg | AmplitudeScim
    idp: ScimIdp
    messenger: Messenger
    tickets: Tickets
    roster: Roster | None = None
    clock: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or load_settings()
        return cls(
            settings=settings,
            ledger=open_ledger(settings.ledger_database_url()),
            org=make_org(settings),
            idp=ScimIdp(settings),
            messenger=SlackMessenger(settings),
            tickets=JiraTickets(settings),
            roster=RosterFile(settings.roster) if settings.roster else None,
        )

    @property
    def ticket_base_url(self) -> str:
        return self.settings.jira_url.rstrip("/") + "/browse/"


_current: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime (built from the settings on first use)."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime.from_settings()
        return _current


def org_as(capability: type[C], operation: str) -> C:
    """The runtime's org connector as a ``capability`` that ``operation`` needs.

    Raises:
        CapabilityMissing: the org backend offers no API for it (a SCIM-only org).
    """
    return require(runtime().org, capability, system="org", operation=operation)


def set_runtime(rt: Runtime | None) -> None:
    """Use ``rt`` from now on (tests, the demo, the CLI after validating its settings)."""
    global _current
    with _lock:
        _current = rt
