"""Invitation hygiene's tasks: read the invitations, remember what the ledger knows, apply one
action idempotently (STYLE.md point 7: the rules are in ``domain.invitations``).

Idempotence: the sweep keeps one long-lived ledger case (runbook ``invitations``) whose done
steps are keyed by the invitation (:func:`domain.invitations.invitation_key`): ``resend:KEY``,
``notify:KEY``, ``revoke:KEY``, ``comment:KEY``, ``accepted:KEY`` and ``seen:KEY``. Each write
is marked done right after it happened, so a second sweep, or a re-run after a crash, does
nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import task
from sqlalchemy import select

from connectors.capabilities import Invitations, has, require
from connectors.errors import ConnectorError, NotFoundError
from domain.invitations import Action, ActionKind, invitation_key
from domain.models import Invitation, WriteResult
from domain.tasks import TaskRefused, TaskState, review_invitations_task
from ledger.audit import records
from ledger.cases import CaseRow, done_steps, mark_done
from tasks.runtime import UNCACHED, Runtime
from tasks.sweeps import About, Applied, OnCase, open_sweep_case

RUNBOOK = "invitations"
ACCESS_CHANNEL = "it-access"  # where a requester who is not on Slack is told
CASE_SUBJECT = "invitation-hygiene"
_EXPLICIT = re.compile(r"\bticket\b\s*[:#=]?\s*([A-Z][A-Z0-9]+-\d+)", re.IGNORECASE)
_KEY = re.compile(r"\b([A-Z][A-Z0-9]+-\d+)\b")
# Keys of other registers that look like Jira keys in notes ("SOW-2211 …").
NOT_TICKETS = frozenset({"SOW", "PO", "CONTRACT", "INV", "MSA"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Snapshot:
    """What the sweep reads: every invitation and the joined members' emails."""

    invitations: list[Invitation]
    members: list[str]
    blocker: str = ""
    by_api: bool = True  # False: no invitations API (SCIM only): a person reviews them


@dataclass(frozen=True)
class Memory:
    """What the ledger remembers of earlier sweeps (sets of invitation keys)."""

    case_id: int | None
    resent: frozenset[str]
    recorded: frozenset[str]
    seen_pending: frozenset[str]


@task(name="read_invitations", cache_policy=UNCACHED)
def read_invitations(rt: Runtime) -> Snapshot:
    """Every invitation of the org, and who has joined (for the look-alike check)."""
    org = rt.org
    if not has(org, Invitations):
        return Snapshot([], [], by_api=False)  # a person reviews them (console_review)
    invitations = org.list_invitations()
    members = [m.email for m in org.list_members() if m.status == "joined"]
    return Snapshot(invitations, members)


def _keys(done: dict[str, Any], prefix: str) -> frozenset[str]:
    return frozenset(k.removeprefix(prefix) for k in done if k.startswith(prefix))


@task(name="recall_sweeps", cache_policy=UNCACHED)
def recall(rt: Runtime, *, create: bool) -> Memory:
    """What earlier sweeps did (``create``: open the sweep's case when there is none)."""
    case_id = open_sweep_case(rt, RUNBOOK, CASE_SUBJECT, "hygiene", create=create)
    done = done_steps(rt.ledger, case_id) if case_id is not None else {}
    return Memory(
        case_id=case_id,
        resent=_keys(done, "resend:"),
        recorded=_keys(done, "accepted:"),
        seen_pending=_keys(done, "seen:"),
    )


@task(name="remember_pending", cache_policy=UNCACHED)
def remember_pending(rt: Runtime, invitations: list[Invitation], memory: Memory) -> None:
    """Note the pending invitations, so their acceptance is recorded whenever it comes."""
    assert memory.case_id is not None
    for inv in invitations:
        key = invitation_key(inv)
        if inv.state == "pending" and key not in memory.seen_pending:
            mark_done(rt.ledger, memory.case_id, f"seen:{key}", "seen", {}, rt.clock())


# ---------------------------------------------------------------------------- who and which ticket
def tickets_in(text: str) -> list[str]:
    """Jira keys a note mentions: ``ticket: ACC-12`` first, then bare keys (never ``SOW-…``)."""
    explicit = [k.upper() for k in _EXPLICIT.findall(text or "")]
    bare = [k for k in _KEY.findall(text or "") if k.split("-")[0] not in NOT_TICKETS]
    return list(dict.fromkeys([*explicit, *bare]))


def _ledger_case(rt: Runtime, email: str) -> tuple[str, str]:
    """(ticket, requester) of the newest runbook case about ``email`` that has them."""
    ticket = requester = ""
    with rt.ledger.sessions() as s:
        rows = s.scalars(
            select(CaseRow)
            .where(CaseRow.subject == email, CaseRow.runbook != RUNBOOK)
            .order_by(CaseRow.id.desc())
        ).all()
        for r in rows:
            ticket = ticket or r.ticket
            requester = requester or (r.requester if _EMAIL.match(r.requester or "") else "")
    return ticket, requester


def find_ticket(rt: Runtime, email: str) -> str:
    """The ticket of ``email``'s invitation: the member's note, else the ledger (a case, else
    the newest audit event about them with a ticket); "" when nobody knows one."""
    member = rt.org.get_member(email)
    for key in tickets_in(member.note if member else ""):
        try:
            rt.tickets.get(key)
            return key
        except NotFoundError:
            continue
    ticket, _ = _ledger_case(rt, email)
    if ticket:
        return ticket
    found = ""
    for r in records(rt.ledger, subject=email):
        found = r.ticket or found
    return found


def requester_of(rt: Runtime, action: Action) -> str:
    """Who to tell: the requester the ledger knows, else the inviter when it is an email."""
    _, requester = _ledger_case(rt, action.email)
    if requester:
        return requester
    return action.invited_by.strip().lower() if _EMAIL.match(action.invited_by or "") else ""


# ---------------------------------------------------------------------------- apply
def _about(action: Action) -> About:
    return About(action.email, f"invitation sent {action.sent_at.isoformat()}", action.reason)


def _once(c: OnCase, step: str, write: Callable[[], WriteResult]) -> WriteResult | None:
    """``write`` and mark ``step`` done with its detail; None when ``step`` is done already."""
    if step in c.done:
        return None
    res = write()
    c.mark(step, str(res), res.detail)
    return res


@task(name="apply_invitation_action", cache_policy=UNCACHED)
def apply_action(rt: Runtime, action: Action, *, case_id: int, flow_run_id: str) -> Applied:
    """Apply one action once on the sweep's case; what it did (``effect``, ``notes``: DMs,
    comments, skips; ``ticket``: the invitation's, where it was looked for).

    Raises:
        ConnectorError: the org or Jira refused or could not answer (the sweep goes on; what
            is not marked done is tried again by the next sweep).
    """
    c = OnCase.load(rt, case_id, flow_run_id=flow_run_id)
    if action.kind is ActionKind.CONSOLE_REVIEW:
        return _review_in_console(c, action)
    if action.kind is ActionKind.RESEND:
        return _resend(c, action)
    if action.kind is ActionKind.REVOKE:
        return _revoke(c, action)
    return _record_accepted(c, action)


def _review_in_console(c: OnCase, action: Action) -> Applied:
    """The week's review task, filed once on the sweep's case; nobody waits on it: each sweep
    looks at its answer (``attested`` once Done; ``waiting(…)`` while open).

    Raises:
        TaskRefused: a person answered Can't do (the sweep fails on their reason).
    """
    step = f"review:{action.key}"
    if step in c.done:
        return Applied("noop(reviewed already)", [], str(c.done[step]["detail"]["attested"]))
    task = review_invitations_task(action.key)
    filed = c.file_task(RUNBOOK, step, task, subject=CASE_SUBJECT)
    if filed.state is TaskState.OPEN:
        return Applied(f"waiting(task {filed.id} open)", [f"task {filed.id} for the console"])
    if filed.state is TaskState.CANT:
        raise TaskRefused(filed)
    attested = filed.attestation()
    c.mark(step, "attested", {"attested": attested, "task": filed.id})
    return Applied("attested", [filed.note] if filed.note else [], attested)


def _resend(c: OnCase, action: Action) -> Applied:
    """Resend once; tell the requester once (unless the org had nothing pending to resend)."""
    key, step = action.key, f"resend:{action.key}"
    invites = require(c.rt.org, Invitations, system="org", operation="resend_invitation")
    res = _once(c, step, lambda: invites.resend_invitation(action.email))
    effect = "noop(resent already)" if res is None else str(res)
    if res is not None:
        c.audit(_about(action), "invitation.resent", effect, **res.detail)
        c = c.reload()
    who = requester_of(c.rt, action)
    if not who:
        return Applied(effect, ["nobody to tell (no requester known)"])
    if f"notify:{key}" in c.done or effect.startswith("noop(no pending"):
        return Applied(effect)
    expires = c.done[step]["detail"].get("expires_at", "")
    text = (
        f"The Amplitude invitation for {action.email} (sent "
        f"{action.sent_at.date().isoformat()}) has not been accepted: {action.reason}. "
        f"Handover resent it once{f' (it now expires {expires[:10]})' if expires else ''}"
        ". Please check with them that it arrived (spam folder); it is revoked 14 days "
        "after it was first sent."
    )
    status, note = _tell(c.rt, who, text)
    c.mark(f"notify:{key}", status, {"to": who})
    c.audit(_about(action), "invitation.requester_notified", status, on_behalf_of=who)
    return Applied(effect, [note])


def _tell(rt: Runtime, who: str, text: str) -> tuple[str, str]:
    """DM ``who`` (not on Slack: the access channel, naming them); (status, note)."""
    try:
        rt.messenger.dm(who, text)
        return "sent", f"told {who}"
    except NotFoundError:  # not on Slack: the access channel, naming them
        try:
            rt.messenger.post(ACCESS_CHANNEL, f"{who}: {text}")
            return f"posted(#{ACCESS_CHANNEL})", f"told {who} in #{ACCESS_CHANNEL} (not on Slack)"
        except ConnectorError as exc:
            return f"failed({exc})", f"could not tell {who}: {exc}"
    except ConnectorError as exc:
        return f"failed({exc})", f"could not tell {who}: {exc}"


def _revoke(c: OnCase, action: Action) -> Applied:
    """Revoke once; comment on the invitation's ticket once (when one is known)."""
    key, step = action.key, f"revoke:{action.key}"
    ticket = find_ticket(c.rt, action.email)
    invites = require(c.rt.org, Invitations, system="org", operation="revoke_invitation")
    res = _once(c, step, lambda: invites.revoke_invitation(action.email))
    effect = "noop(revoked already)" if res is None else str(res)
    if res is not None:
        c.audit(_about(action), "invitation.revoked", effect, ticket=ticket)
    if not ticket:
        return Applied(effect, ["no ticket known"], ticket=ticket)
    if f"comment:{key}" in c.done:
        return Applied(effect, ticket=ticket)
    body = (
        f"Handover revoked the Amplitude invitation for {action.email} (first sent "
        f"{action.sent_at.date().isoformat()}): {action.reason}. If access is still "
        "needed, request it again."
    )
    res = c.rt.tickets.comment(ticket, body)
    c.mark(f"comment:{key}", str(res), {"ticket": ticket})
    c.audit(_about(action), "ticket.commented", str(res), ticket=ticket)
    return Applied(effect, [f"commented on {ticket}"], ticket=ticket)


def _record_accepted(c: OnCase, action: Action) -> Applied:
    """Record an acceptance once (the audit event names the invitation's ticket)."""
    step = f"accepted:{action.key}"
    if step in c.done:
        return Applied("noop(recorded already)")
    ticket = find_ticket(c.rt, action.email)
    if not c.mark(step, "recorded"):
        return Applied("noop(recorded already)")
    c.audit(_about(action), "invitation.accepted", "recorded", ticket=ticket)
    return Applied("recorded", ticket=ticket)
