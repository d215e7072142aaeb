"""New runs wait while the org rejects Handover's key, rather than each failing on it.

Regenerating the SCIM key in Amplitude's console invalidates the old one at once (seed 002).
From then on every run would fail at its first org call with the same 401. Instead:

- the first run that meets the rejection (:func:`hold_on_rejection`, from the runbook
  skeleton) holds new runs: the ledger keeps the hold (``ledger.holds``), the audit log gets
  ``org.credentials_rejected`` and IT is told once in ``#it-access`` — that run stops at its
  safe point as any failing run does;
- every runbook run that starts while the hold is on (:func:`wait_while_held`) pauses before
  it reads anything, as a run waiting for an approval does (Prefect state *Paused*);
- a person replaces the key and runs ``handover org resume`` (:func:`lift_hold`): the org is
  asked once with the key the settings now hold; still refused, the hold stays and the command
  says so; accepted, the hold is lifted (audited ``org.credentials_restored`` with who did it)
  and the held runs are woken (:func:`wake_held_runs`): they go on at once, and any it could
  not reach within a poll (:data:`POLL_S`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection
from typing import Any

from pydantic import BaseModel

from approvals.pause import pause_run
from approvals.services import Services
from connectors.errors import AuthError, ConnectorError
from domain.identity import Verified
from domain.records import AuditEvent
from ledger.audit import append
from ledger.holds import Hold, active_hold, clear_hold, set_hold

log = logging.getLogger("handover.approvals")

ORG = "org"
ALERT_CHANNEL = "it-access"
HOLD_PAUSE_S = 30 * 24 * 3600  # a held run waits this long for the key before it fails
POLL_S = 15  # how often a held run looks whether the hold was lifted
HOLD_KEY = "org-hold-"  # the pause key of a held run starts so


class HoldWakeup(BaseModel):
    """What resumes a held run: only why it was woken (the ledger says the hold was lifted;
    a run's own recheck resumes it as ``task``, ``approvals.pause``)."""

    kind: str = "task"


def is_rejected_key(exc: BaseException) -> bool:
    """Whether ``exc`` is the org refusing Handover's credentials (401/403)."""
    return isinstance(exc, AuthError) and exc.system == ORG


def hold_on_rejection(svc: Services, exc: BaseException, *, flow_run_id: str = "") -> bool:
    """When ``exc`` is the org rejecting the key: hold new runs — once: audited and told to IT
    the first time only. Whether it was such a rejection."""
    if not is_rejected_key(exc):
        return False
    reason = str(exc)
    if set_hold(svc.ledger, ORG, reason, now=svc.clock()):
        log.error("org credentials rejected: new runs are held (%s)", reason)
        append(
            svc.ledger,
            AuditEvent(
                action="org.credentials_rejected",
                subject=ORG,
                effect="held",
                after={"reason": reason},
                flow_run_id=flow_run_id,
            ),
            now=svc.clock(),
        )
        if svc.messenger is not None:
            try:
                svc.messenger.post(
                    ALERT_CHANNEL,
                    f"Handover: the org rejected its key — {reason}. New runs wait (paused) "
                    "until the key is replaced and `handover org resume` is run.",
                )
            except ConnectorError as e:  # the hold and the audit event are what count
                log.warning("could not tell #%s: %s", ALERT_CHANNEL, e)
    return True


def held(svc: Services) -> Hold | None:
    """The hold on new runs, while there is one."""
    return active_hold(svc.ledger, ORG)


def wait_while_held(svc: Services, *, pause: Callable[..., Any] | None = None) -> None:
    """Pause the current flow run while new runs are held (returns at once when they are not).

    Raises:
        prefect.exceptions.FlowPauseTimeout: still held after :data:`HOLD_PAUSE_S`.
    """
    pause = pause or pause_run
    while (hold := held(svc)) is not None:
        log.warning("held since %s: %s", hold.since.isoformat(), hold.reason)
        pause(
            wait_for_input=HoldWakeup,
            timeout=HOLD_PAUSE_S,
            poll_interval=POLL_S,
            key=f"{HOLD_KEY}{uuid.uuid4().hex[:12]}",  # a new key per pause (approvals/pause.py)
            recheck=lambda: held(svc) is None,
        )


def lift_hold(
    svc: Services, *, by: str, verified: Verified, probe: Callable[[], object]
) -> Hold | None:
    """Ask the org once (``probe``, with the key the settings hold now); accepted, lift the
    hold and audit it (``by``, authenticated as ``verified`` says); the hold lifted, None when
    there was none.

    Raises:
        AuthError: the org still rejects the key (the hold stays).
        ConnectorError: the org could not answer (the hold stays).
    """
    probe()
    lifted = clear_hold(svc.ledger, ORG, by=by, now=svc.clock())
    if lifted is not None:
        append(
            svc.ledger,
            AuditEvent(
                action="org.credentials_restored",
                subject=ORG,
                on_behalf_of=by,
                effect="resumed",
                before={"reason": lifted.reason, "since": lifted.since.isoformat()},
                after=verified.audit(),
            ),
            now=svc.clock(),
        )
    return lifted


def held_runs(*, page: int = 200) -> list[str]:
    """The ids of the flow runs paused on a hold (pause key :data:`HOLD_KEY`).

    Raises:
        httpx.HTTPError: the Prefect server could not be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    ids: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while runs := client.read_flow_runs(flow_run_filter=paused, limit=page, offset=offset):
            ids += [
                str(r.id)
                for r in runs
                if r.state is not None
                and (r.state.state_details.pause_key or "").startswith(HOLD_KEY)
            ]
            offset += len(runs)
    return ids


def wake_held_runs(known: Collection[str] = (), *, page: int = 200) -> int:
    """Resume every flow run paused on a hold, once the hold is lifted, so that it goes on now
    rather than at its next poll (:data:`POLL_S`); how many were woken. A woken run reads the
    ledger again (:func:`wait_while_held`): were runs still held, it would pause again. One
    that cannot be woken (no longer paused, gone) is left alone.

    ``known``: the held runs read (:func:`held_runs`) before the hold was lifted. One of them
    that is no longer paused went on by itself in between, its own look at the ledger (the
    recheck of ``approvals.pause.pause_run``) having found the hold lifted: it counts as woken.

    Raises:
        httpx.HTTPError: the Prefect server could not be reached (the runs still go on at
            their next poll).
    """
    from approvals.handler import resume_run

    # Read first, then woken: a woken run leaves the Paused ones, which would shift the pages.
    ids = list(dict.fromkeys([*known, *held_runs(page=page)]))
    woken = 0
    for run_id in ids:
        result = resume_run(run_id, "task").result
        woken += result == "resumed" or (result == "not paused" and run_id in known)
    return woken
