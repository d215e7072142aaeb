"""What started an offboarding, checked in the ledger, and the safety valves that hold for it.

A flow's parameters are what whoever started the run sent: the intake, the CLI, or anyone who
reaches the Prefect API. The parameters that let a run skip the pre-approval are therefore not
taken on trust (same spirit as ``review_approvers``: the flow verifies its trigger in the
ledger):

- ``emergency=true`` (lock out first, no pre-approval) runs only when the run names a recorded
  trigger for this person: HR's signed event (requester ``hr-system:<event id>``, an event the
  intake recorded after checking its signature, flagged ``security_risk`` for this subject), or
  a person's emergency declaration (``declaration``, recorded by ``handover offboard
  --emergency`` for the signed-in person, who must be one of the policy's
  ``emergency_declarers``). Either stands for the policy's ``timeout_hours`` after it was
  recorded. Anything else is refused before anything is read from the systems or written: an
  audit event ``offboard.trigger_refused``, a Slack message to the emergency's reviewers, and a
  failed run saying why.
- the safety valves (``domain.valves``) are computed from the ledger's HR events and the
  policy; when one holds, the run asks the policy's quorum rule, recorded as an audit event
  ``offboard.safety_valve``.

A dry run changes nothing: it is neither refused nor held.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from connectors.errors import ConnectorError
from domain.policy import ApprovalContext, requirement
from domain.records import AuditEvent
from domain.valves import WINDOW, HrStart, Valve, safety_valves
from ledger.audit import append
from ledger.db import LedgerDB
from ledger.events import STARTED, EventRecord, get_event, started_between
from ledger.triggers import Declaration, declare_emergency, get_declaration
from tasks.offboard import LiveReads
from tasks.runtime import Runtime

HR_SOURCE = "hr"  # intake/hooks.py SOURCE: the one HR door and secret today
HR_REQUESTER = "hr-system:"  # intake/hooks.py HrEvent.flow_params: the event the run is for
# HR event types that are a person leaving (domain.valves.HrStart.leaver).
LEAVER_KINDS = ("employee.terminated", "contract.ended")


class TriggerRefused(ValueError):
    """An emergency offboarding whose trigger is not recorded (the message says why)."""


def hr_event_id(requester: str) -> str | None:
    """The HR event a run says it is for (its requester ``hr-system:<event id>``), or None."""
    if requester.startswith(HR_REQUESTER) and len(requester) > len(HR_REQUESTER):
        return requester[len(HR_REQUESTER) :]
    return None


def declare(
    db: LedgerDB, *, subject: str, declared_by: str, verified: str, now: datetime
) -> Declaration:
    """Record ``declared_by``'s emergency declaration for ``subject`` (the caller established
    who they are: ``cli.identity``), with an audit event ``offboard.emergency_declared``; the
    declaration, whose id the offboarding's ``declaration`` names."""
    found = declare_emergency(
        db, subject=subject, declared_by=declared_by, verified=verified, now=now
    )
    append(
        db,
        AuditEvent(
            action="offboard.emergency_declared",
            subject=found.subject,
            target=found.id,
            on_behalf_of=found.declared_by,
            after={"auth": verified},
        ),
        now=now,
    )
    return found


def _hr_why_not(ev: EventRecord | None, event_id: str, email: str, rt: Runtime) -> str:
    """Why HR event ``event_id`` does not stand for an emergency of ``email`` ("": it does)."""
    if ev is None:
        return f"no signed HR event {event_id} was recorded"
    if ev.params.get("emergency") is not True:
        return f"HR event {event_id} did not flag a security risk"
    if str(ev.params.get("email", "")).lower() != email.lower():
        return f"HR event {event_id} is about someone else"
    if ev.status != STARTED or ev.started_at is None:
        return f"HR event {event_id} was not started (it is {ev.status})"
    if ev.started_at < rt.clock() - timedelta(hours=rt.policy.timeout_hours):
        return f"HR event {event_id} is older than {rt.policy.timeout_hours:g} h"
    return ""


def _declared_why_not(rt: Runtime, declaration: str, email: str, requester: str) -> str:
    """Why ``declaration`` does not stand for an emergency of ``email`` ("": it does)."""
    if not declaration:
        return (
            "an emergency needs a signed HR event (security_risk) or an emergency declaration "
            "(handover offboard --emergency, by one of the policy's emergency_declarers)"
        )
    found = get_declaration(rt.ledger, declaration)
    if found is None:
        return f"no emergency declaration {declaration} was recorded"
    if found.subject != email.lower():
        return f"emergency declaration {declaration} is about someone else"
    if found.declared_by != requester.lower():
        return f"emergency declaration {declaration} was made by someone else"
    if found.declared_by not in rt.policy.declarers():
        return f"{found.declared_by} is not one of the policy's emergency_declarers"
    if found.declared_at < rt.clock() - timedelta(hours=rt.policy.timeout_hours):
        return f"emergency declaration {declaration} is older than {rt.policy.timeout_hours:g} h"
    return ""


def check_trigger(
    rt: Runtime,
    *,
    email: str,
    emergency: bool,
    requester: str,
    declaration: str = "",
    dry_run: bool = False,
) -> str:
    """Check that an emergency offboarding of ``email`` was triggered by a recorded trigger.

    Returns:
        What stands for it (``hr event <id>``, ``declaration <id>``), or "" when none is
        needed (not an emergency, or a dry run).

    Raises:
        TriggerRefused: no recorded trigger stands for it; an audit event and a Slack message
            to the emergency's reviewers say so. Nothing else was read or written.
    """
    if not emergency or dry_run:
        return ""
    event_id = hr_event_id(requester)
    if event_id is not None:
        ev = get_event(rt.ledger, HR_SOURCE, event_id)
        why, what = _hr_why_not(ev, event_id, email, rt), f"hr event {event_id}"
    else:
        why = _declared_why_not(rt, declaration, email, requester)
        what = f"declaration {declaration}"
    if why:
        raise _refuse(rt, email=email, requester=requester, why=why)
    return what


def _refuse(rt: Runtime, *, email: str, requester: str, why: str) -> TriggerRefused:
    message = f"emergency offboarding of {email} refused: {why}; nothing was changed"
    append(
        rt.ledger,
        AuditEvent(
            action="offboard.trigger_refused",
            subject=email,
            on_behalf_of=requester[:320],
            effect=f"refused({why[:300]})",
        ),
        now=rt.clock(),
    )
    ctx = ApprovalContext(
        runbook="offboard",
        subject=email,
        requester=requester,
        reason="security_incident",
        emergency=True,
    )
    reviewers = requirement(rt.policy, ctx).post_hoc_review
    if rt.messenger is not None:
        for person in reviewers:
            # The audit event is the record; a message that cannot be sent must not hide it.
            with contextlib.suppress(ConnectorError):
                rt.messenger.dm(person, f":no_entry: {message} (requester {requester[:80]}).")
    return TriggerRefused(message)


def _hr_start(ev: EventRecord) -> HrStart | None:
    if ev.started_at is None:
        return None
    return HrStart(
        seq=ev.seq,
        event_id=ev.event_id,
        subject=str(ev.params.get("email", "")).lower(),
        at=ev.started_at,
        emergency=ev.params.get("emergency") is True,
        leaver=ev.kind in LEAVER_KINDS,
    )


def valves_for(rt: Runtime, *, email: str, requester: str) -> list[Valve]:
    """The safety valves that hold for offboarding ``email`` (``domain.valves``), from the
    ledger's HR events around the one this run is for (if HR started it) and the policy;
    recorded as an audit event ``offboard.safety_valve`` when any holds.

    The org's member count (``max_percent``) is read only when it is needed: from the member
    list an offboarding reads anyway (at most a minute old).
    """
    this = None
    event_id = hr_event_id(requester)
    ev = get_event(rt.ledger, HR_SOURCE, event_id) if event_id is not None else None
    # Only an event recorded for this person counts as this run's (a parameter alone does not).
    if ev is not None and str(ev.params.get("email", "")).lower() == email.lower():
        this = _hr_start(ev)
    starts: list[HrStart] = []
    members = None
    if this is not None:
        around = started_between(rt.ledger, HR_SOURCE, this.at - WINDOW, this.at)
        starts = [s for e in around if (s := _hr_start(e)) is not None]
        burst = rt.policy.termination_burst
        if burst is not None and burst.max_percent is not None and this.leaver:
            members = len(LiveReads(rt.org).member_emails())
    valves = safety_valves(rt.policy, subject=email, this=this, starts=starts, org_members=members)
    if valves:
        append(
            rt.ledger,
            AuditEvent(
                action="offboard.safety_valve",
                subject=email,
                on_behalf_of=requester[:320],
                effect="waits for a quorum",
                after={"valves": [v.name for v in valves], "why": [v.why for v in valves]},
            ),
            now=rt.clock(),
        )
    return valves
