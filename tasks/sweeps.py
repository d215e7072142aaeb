"""What the scheduled sweeps' tasks share (expiry, invitation hygiene): the clock of the run's
runtime, the sweep's long-lived case and what an action's task sees of it, what an
applied action did, and audit events.

A sweep keeps one long-lived ledger case per runbook (``expiry``, ``invitations``) whose done
steps remember what earlier sweeps did; each write is marked done right after it happened, so a
second sweep, or a re-run after a crash, does nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from approvals.tasks import Where, open_task
from domain.records import AuditEvent
from domain.steps import HumanTask
from domain.tasks import TaskRecord
from ledger.audit import append
from ledger.cases import done_steps, mark_done, sweep_case_id
from tasks.runtime import Runtime


@dataclass(frozen=True)
class Applied:
    """What applying one action did: its ``effect`` (``created | updated | deleted | sent |
    recorded | noop(…) | failed(…)``), ``notes`` (who was told, which ticket commented on),
    the ``verification`` of a revocation (empty when there is nothing to re-read) and the
    ``ticket`` it was recorded on."""

    effect: str
    notes: list[str] = field(default_factory=list)
    verification: str = ""
    ticket: str = ""


def clock(rt: Runtime) -> datetime:
    """The runtime's time (a sweep given no ``now`` sweeps at this time)."""
    return rt.clock()


def open_sweep_case(
    rt: Runtime, runbook: str, subject: str, reason: str, *, create: bool
) -> int | None:
    """The sweep's long-lived case (``create``: open it when there is none; otherwise None
    when there is none, so a sweep with nothing to do writes nothing)."""
    return sweep_case_id(
        rt.ledger, runbook=runbook, subject=subject, reason=reason, create=create, now=rt.clock()
    )


def audit(
    rt: Runtime,
    what: str,
    *,
    subject: str,
    target: str,
    effect: str,
    flow_run_id: str,
    ticket: str = "",
    on_behalf_of: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    plan_hash: str = "",
) -> None:
    """Append one event (``what``: e.g. ``grant.expired``) to the audit log, at the runtime's
    time."""
    append(
        rt.ledger,
        AuditEvent(
            action=what,
            subject=subject,
            target=target,
            on_behalf_of=on_behalf_of,
            before=before,
            after=after,
            effect=effect,
            flow_run_id=flow_run_id,
            ticket=ticket,
            plan_hash=plan_hash,
        ),
        now=rt.clock(),
    )


@dataclass(frozen=True)
class About:
    """What an action is about, as its audit events name it: the person, the thing acted on,
    why, and the ticket it was asked on."""

    subject: str
    target: str
    reason: str
    ticket: str = ""


@dataclass(frozen=True)
class OnCase:
    """One action's task on the sweep's case (``case_id``) in flow run ``flow_run_id``: the
    runtime, what the case has ``done`` (step id → effect, detail), marking a step done and
    auditing."""

    rt: Runtime
    case_id: int
    flow_run_id: str
    done: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, rt: Runtime, case_id: int, *, flow_run_id: str) -> OnCase:
        return cls(rt, case_id, flow_run_id, done_steps(rt.ledger, case_id))

    def reload(self) -> OnCase:
        """The same, with what is done now."""
        return OnCase(
            self.rt, self.case_id, self.flow_run_id, done_steps(self.rt.ledger, self.case_id)
        )

    def file_task(
        self, runbook: str, step: str, task: HumanTask, *, subject: str, ticket: str = ""
    ) -> TaskRecord:
        """A person's task for ``step`` on the sweep's case, filed and posted once; as it is now.
        Nobody waits on it (no flow run takes it over: a sweep ends, the next one reads its
        answer), so a Can't do stays one until a person answers again."""
        where = Where(runbook, subject, self.case_id, ticket)
        return open_task(self.rt, where, step_id=step, task=task, flow_run_id="")

    def mark(self, step: str, effect: str, detail: dict[str, Any] | None = None) -> bool:
        """Mark ``step`` done (False: it was already)."""
        return mark_done(self.rt.ledger, self.case_id, step, effect, detail or {}, self.rt.clock())

    def audit(
        self,
        about: About,
        what: str,
        effect: str,
        *,
        ticket: str | None = None,
        on_behalf_of: str = "",
        **after: Any,
    ) -> None:
        """Audit ``what`` (e.g. ``grant.expired``) of the action ``about``; ``after`` adds to
        the reason; ``ticket`` overrides the action's."""
        audit(
            self.rt,
            what,
            subject=about.subject,
            target=about.target,
            on_behalf_of=on_behalf_of,
            after={"reason": about.reason, **after},
            effect=effect,
            flow_run_id=self.flow_run_id,
            ticket=about.ticket if ticket is None else ticket,
        )
