"""The approval watchdog: escalation, auto-deny and lost wake-ups, done from outside the paused
flow, in a process of its own.

A pause's own timeout fails the flow run and cannot be caught (PREFECT_NOTES.md), so the
watchdog sweeps the pending approvals: one past ``escalate_after`` wakes its flow with
``escalate`` (the fallback group is asked), one past its timeout with ``expired`` (the flow
auto-denies and ends cleanly), and one holding a decision its flow has not tallied yet with
``decision``: a click that lands between the flow's tally and its pause finds the run not yet
paused, and that wake-up would otherwise be lost.

It runs as its own process, ``handover watchdog`` (cli/watchdog_cmd.py: :func:`run_forever`
plus the launch of due HR and Jira events), which ``handover up`` and ``handover demo`` start;
never inside the HTTP intake. ``handover approvals --sweep`` runs one :func:`sweep`.

It does not flood the Prefect server or the log. A :class:`Watchdog` remembers each wake-up it
tried (approval, kind, and what called for it: the flow run, the untallied decisions) and when;
while that stays the same, it is tried again only after a back-off that doubles from one sweep
period up to ``max_backoff`` — whether the run was woken (it re-reads the ledger: the cause
should go), not paused yet, or refused. A run's condition (refused, no input schema yet, no
flow run, an error) is logged once while its approval is pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from approvals.handler import Wake, resume_run
from approvals.secret_links import erase_expired_secrets
from approvals.services import Services
from approvals.tasks import escalate_open_tasks
from domain.records import ApprovalRequest, ApprovalState
from ledger.approvals import list_approvals

log = logging.getLogger("handover.approvals")


@dataclass
class SweepAction:
    approval_id: str
    kind: str  # escalate | expired | decision
    result: str  # resumed | not paused | no flow run | refused | error


@dataclass
class _Tried:
    cause: Hashable  # what called for the wake-up: the same cause is backed off
    tries: int
    not_before: float  # on the watchdog's monotonic clock


def _due(appr: ApprovalRequest, now: datetime, escalate_after: timedelta) -> tuple[str, Hashable]:
    """The wake-up ``appr`` calls for (``""``: none) and its cause."""
    if now >= appr.expires_at:
        return "expired", appr.flow_run_id
    if not appr.escalated and now >= appr.created_at + escalate_after:
        return "escalate", appr.flow_run_id
    # Tallied decisions are marked (counted, or a reason why not): these are unseen.
    unseen = frozenset(
        (d.approver, d.decision, d.plan_hash, d.at)
        for d in appr.decisions
        if not d.counted and not d.reason
    )
    if unseen:
        return "decision", (appr.flow_run_id, unseen)
    return "", None


@dataclass
class Watchdog:
    """Sweeps that remember what they woke (see the module docstring).

    ``every``: the sweep period in seconds, the first back-off step. ``monotonic``: the clock
    of the back-off (real elapsed time, unlike ``svc.clock``, which a test or the sandbox may
    move by days).
    """

    svc: Services
    every: float = 30.0
    max_backoff: float = 300.0
    monotonic: Callable[[], float] = time.monotonic
    _tried: dict[tuple[str, str], _Tried] = field(default_factory=dict)
    _logged: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def sweep(self, *, now: datetime | None = None) -> list[SweepAction]:
        """Wake every pending approval's flow that is due a wake-up and not backed off.

        Returns the wake-ups tried: every ``escalate`` and ``expired``, and the ``decision``
        ones that woke their run.
        """
        now = now or self.svc.clock()
        escalate_after = timedelta(hours=self.svc.policy.escalate_after_hours)
        out = []
        pending: set[str] = set()
        wanted: set[tuple[str, str]] = set()
        for appr in list_approvals(self.svc.ledger, state=ApprovalState.PENDING):
            pending.add(appr.id)
            kind, cause = _due(appr, now, escalate_after)
            if not kind:
                continue
            key = (appr.id, kind)
            wanted.add(key)
            tried = self._tried.get(key)
            t = self.monotonic()
            if tried is not None and tried.cause == cause and t < tried.not_before:
                continue
            tries = tried.tries + 1 if tried is not None and tried.cause == cause else 1
            try:
                wake = resume_run(appr.flow_run_id, kind)
            except Exception as exc:  # the Prefect API is unreachable: the next turn retries
                wake = Wake("error", f"{type(exc).__name__}: {exc}")
            backoff = min(self.every * 2 ** (tries - 1), self.max_backoff)
            self._tried[key] = _Tried(cause, tries, t + backoff)
            self._log_once(appr, kind, wake)
            if kind != "decision" or wake.result == "resumed":
                out.append(SweepAction(appr.id, kind, wake.result))
        # What no longer calls for a wake-up is forgotten: the memory stays as small as the
        # pending approvals.
        self._tried = {k: v for k, v in self._tried.items() if k in wanted}
        self._logged = {k: v for k, v in self._logged.items() if k in pending}
        return out

    def _log_once(self, appr: ApprovalRequest, kind: str, wake: Wake) -> None:
        if wake.result == "resumed" or not wake.why:
            return  # woken, or simply not paused (between two pauses): nothing to say
        # An error's message may vary from one try to the next; its type is the condition.
        condition = wake.why.split(":")[0] if wake.result == "error" else wake.why
        seen = self._logged.setdefault(appr.id, set())
        if (appr.flow_run_id, condition) in seen:
            return
        seen.add((appr.flow_run_id, condition))
        level = logging.WARNING if wake.result in ("refused", "error") else logging.INFO
        log.log(
            level,
            "watchdog: %s wake-up of approval %s (flow run %s): %s: %s "
            "(retried with a back-off; said once)",
            kind,
            appr.id,
            appr.flow_run_id or "—",
            wake.result,
            wake.why,
        )


def sweep(svc: Services, *, now: datetime | None = None) -> list[SweepAction]:
    """One sweep with no memory of earlier ones (``handover approvals --sweep``, tests); a
    process that sweeps again and again keeps one :class:`Watchdog` (:func:`run_forever`)."""
    return Watchdog(svc).sweep(now=now)


def run_forever(
    svc: Services,
    *,
    every: float = 30.0,
    stop: threading.Event | None = None,
    also: Sequence[Callable[[], object]] = (),
) -> None:
    """Sweep the approvals (one :class:`Watchdog`), the open human tasks (their escalation)
    and the rotated secrets that expired unread (erased), then run each of ``also`` (the caller's
    other sweeps: the launch of due events), every ``every`` seconds until ``stop`` is set.

    A failing sweep never ends the loop: it is logged (once per kind of failure) and the next
    round tries again.
    """
    stop = stop or threading.Event()
    dog = Watchdog(svc, every=every)
    sweeps: list[tuple[str, Callable[[], object]]] = [
        ("approval", dog.sweep),
        ("task", lambda: escalate_open_tasks(svc)),
        ("secret", lambda: erase_expired_secrets(svc)),  # rotated secrets expired unread
    ]
    sweeps += [(getattr(fn, "__name__", "other"), fn) for fn in also]
    failed: set[tuple[str, str]] = set()
    while not stop.is_set():
        for name, fn in sweeps:
            try:
                fn()
            except Exception as exc:  # e.g. the ledger's database is briefly unreachable
                if (name, type(exc).__name__) not in failed:
                    failed.add((name, type(exc).__name__))
                    log.warning("watchdog: the %s sweep failed (retried): %s", name, exc)
        stop.wait(every)
