"""The context a runbook runs in (STYLE.md point 10a): its connectors, the ledger, the approval
policy and the clock, built once per flow run and passed to every task explicitly.

A :class:`Runtime` is the approval gate's :class:`approvals.services.Services` (settings, ledger,
policy, Slack, Jira, clock) plus what the steps touch: the org, the IdP and the HR roster. Its
connectors are typed by their capability Protocols (``connectors.capabilities``), so a task
asks :func:`~connectors.capabilities.has` (or :meth:`Runtime.org_as`) before using anything
beyond the org's member directory, and a test passes small fakes of those Protocols.

How a run gets its runtime: Prefect parameters must be plain data, so a flow does not receive
one. Each runbook flow calls :func:`this_runs_runtime` once, at its top, and passes the result
to its tasks (``some_task(rt, ...)``); nothing below the flow looks it up. Whoever starts a
flow in this process (the CLI, the demo, a test) binds the runtime with :func:`use_runtime`;
a flow run nobody bound one for (a deployment's run on a worker) builds it from the settings.
The binding is a :class:`contextvars.ContextVar`: it reaches what runs in this context — a
sync flow and its direct task calls run in the caller's thread, ``.submit()`` on Prefect's
``ThreadPoolTaskRunner`` and ``flows.batch.run_all`` run in copies of it — and a thread
started without a copy of the context sees none.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from prefect.cache_policies import NO_CACHE

from approvals.policy import load_policy
from approvals.services import Services, open_settings_ledger, settings_buckets
from connectors.capabilities import (
    IdentityProvider,
    MemberDirectory,
    Messenger,
    Roster,
    Tickets,
    require,
)
from connectors.hris import RosterFile, make_hr_api
from connectors.idp import make_idp
from connectors.org import make_org
from connectors.rate import use_shared_limits
from connectors.settings import Settings, load_settings
from connectors.slack import SlackMessenger
from connectors.tickets import JiraTickets

C = TypeVar("C")

# The cache policy of every task that takes a Runtime. Prefect's default policy hashes a task's
# inputs for a cache key, and a Runtime (open connections, a database engine, a clock) cannot
# be hashed: Prefect would log "Error encountered when computing cache key" on every call.
# Nothing is lost: a task's idempotency comes from the ledger's case (its done steps), not from
# Prefect's cache, and task results are not persisted.
UNCACHED = NO_CACHE


@dataclass(kw_only=True)
class Runtime(Services):
    """Everything a runbook's tasks touch: the gate's services and the org, the IdP and the
    HR roster (``None``: no roster configured): ``HANDOVER_ROSTER``'s file, else the HR system's
    API (``HANDOVER_HR_API``)."""

    # Required here (optional for the gate alone): ``field()`` overrides Services' None default.
    messenger: Messenger = field()
    tickets: Tickets = field()
    org: MemberDirectory
    idp: IdentityProvider
    roster: Roster | None = None
    # The other orgs (settings.extra_orgs), by name: a runtime on one of them is in_org(name).
    orgs: dict[str, MemberDirectory] = field(default_factory=dict)
    # "" on the main org; "@<name>" on another, appended to the runbook of the cases it keys
    # (one case per person and org).
    org_suffix: str = ""

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        """The connectors, the ledger and the policy the settings name.

        Raises:
            SettingsError: an unusable setting (e.g. an unknown org backend).
            PolicyError: the policy file is missing or invalid.
        """
        settings = settings or load_settings()
        ledger = open_settings_ledger(settings)
        # Every connector built here spends the rate limits of the deployment
        # (HANDOVER_RATE_LIMITS): shared through the ledger by default, so two workers together
        # stay within a backend's limit.
        with use_shared_limits(settings_buckets(settings, ledger)):
            hr = make_hr_api(settings)
            # The roster file when one is set, else the HR system's API (HANDOVER_HR_API).
            roster: Roster | None = RosterFile(settings.roster) if settings.roster else None
            if roster is None and isinstance(hr, Roster):
                roster = hr
            return cls(
                settings=settings,
                ledger=ledger,
                policy=load_policy(settings.policy),
                messenger=SlackMessenger(settings),
                tickets=JiraTickets(settings),
                ticket_base_url=settings.jira_url.rstrip("/") + "/browse/",
                org=make_org(settings),
                idp=make_idp(settings),
                roster=roster,
                hr=hr,
                orgs={name: make_org(settings.for_org(name)) for name in settings.extra_orgs},
            )

    def in_org(self, name: str) -> Runtime:
        """This runtime acting on org ``name`` (the main one: this runtime itself); the same
        ledger, IdP, Slack and Jira: one person, one identity, one case history.

        Raises:
            SettingsError: no such org.
        """
        settings = self.settings.for_org(name)
        if settings is self.settings:
            return self
        return dataclasses.replace(
            self, settings=settings, org=self.orgs[name], orgs={}, org_suffix=f"@{name}"
        )

    def other_orgs(self) -> list[str]:
        """The names of the orgs besides this runtime's own."""
        return sorted(self.orgs)

    def org_as(self, capability: type[C], operation: str) -> C:
        """The org connector as a ``capability`` that ``operation`` needs.

        Raises:
            CapabilityMissing: the org backend offers no API for it (a SCIM-only org).
        """
        return require(self.org, capability, system="org", operation=operation)


_bound: ContextVar[Runtime | None] = ContextVar("handover_runtime", default=None)


@contextmanager
def use_runtime(rt: Runtime) -> Iterator[Runtime]:
    """Bind ``rt`` for the flows run inside this block (and in copies of this context)."""
    token = _bound.set(rt)
    try:
        yield rt
    finally:
        _bound.reset(token)


def this_runs_runtime() -> Runtime:
    """The runtime bound by :func:`use_runtime`, else the one of the settings (``HANDOVER_*``).

    Called once per flow run, at the top of each runbook flow.
    """
    bound = _bound.get()
    return bound if bound is not None else _from_settings.get(load_settings())


class _BySettings:
    """One runtime per settings value, built on first use.

    Why memoised: a process that runs many flow runs (a served deployment, the review's and the
    bulk offboarding's subflows, each calling :func:`this_runs_runtime`) would otherwise open
    the ledger (an engine and its connection pool) and new connectors (HTTP connection pools)
    for every run. The same settings give the same runtime; other settings (a changed
    environment) give a runtime of their own. The policy file is read when a runtime is built:
    a process worker's runs, each a process of its own, read it afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: list[tuple[Settings, Runtime]] = []

    def get(self, settings: Settings) -> Runtime:
        with self._lock:
            for known, rt in self._built:
                if known == settings:
                    return rt
            rt = Runtime.from_settings(settings)
            self._built.append((settings, rt))
            return rt


_from_settings = _BySettings()
