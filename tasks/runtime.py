"""The connectors, the ledger and the policy a runbook works with, built once per process from
the settings (Prefect parameters must be plain data, so flows do not receive these).

A :class:`Runtime` *is* the approval gate's :class:`approvals.services.Services` (settings,
ledger, policy, Slack, Jira, clock) plus the org, the IdP and the HR roster the steps touch: one
container, so the gate is handed the runbook's runtime itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TypeVar

from approvals.policy import load_policy
from approvals.services import Services
from connectors.capabilities import Messenger, Roster, Tickets, require
from connectors.hris import RosterFile
from connectors.idp import ScimIdp
from connectors.org import AmplitudeScim, SandboxOrg, make_org
from connectors.settings import Settings, load_settings
from connectors.slack import SlackMessenger
from connectors.tickets import JiraTickets
from ledger import open_ledger

C = TypeVar("C")


@dataclass(kw_only=True)
class Runtime(Services):
    """Everything a runbook's tasks touch: the gate's services and the org, the IdP and the
    HR roster (``None``: no roster configured)."""

    # Required here (optional for the gate alone): ``field()`` overrides Services' None default.
    messenger: Messenger = field()
    tickets: Tickets = field()
    org: SandboxOrg | AmplitudeScim
    idp: ScimIdp
    roster: Roster | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        """The connectors, the ledger and the policy the settings name.

        Raises:
            SettingsError: an unusable setting (e.g. an unknown org backend).
            PolicyError: the policy file is missing or invalid.
        """
        settings = settings or load_settings()
        return cls(
            settings=settings,
            ledger=open_ledger(settings.ledger_database_url()),
            policy=load_policy(settings.policy),
            messenger=SlackMessenger(settings),
            tickets=JiraTickets(settings),
            ticket_base_url=settings.jira_url.rstrip("/") + "/browse/",
            org=make_org(settings),
            idp=ScimIdp(settings),
            roster=RosterFile(settings.roster) if settings.roster else None,
        )


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
