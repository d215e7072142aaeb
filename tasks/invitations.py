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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy import select

from connectors.capabilities import Invitations, has
from connectors.errors import ConnectorError, NotFoundError
from domain.invitations import Action, ActionKind, invitation_key
from domain.models import Invitation
from domain.records import AuditEvent
from ledger.audit import append, records
from ledger.cases import CaseRow, done_steps, mark_done, sweep_case_id
from tasks.runtime import Runtime, runtime

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


@dataclass(frozen=True)
class Memory:
    """What the ledger remembers of earlier sweeps (sets of invitation keys)."""

    case_id: int | None
    resent: frozenset[str]
    recorded: frozenset[str]
    seen_pending: frozenset[str]


@task(name="read_invitations")
def read_invitations() -> Snapshot:
    """Every invitation of the org, and who has joined (for the look-alike check)."""
    org = runtime().org
    if not has(org, Invitations):
        return Snapshot(
            [], [], blocker=f"the org connector ({type(org).__name__}) cannot list invitations"
        )
    invitations = org.list_invitations()  # type: ignore[union-attr]
    members = [m.email for m in org.list_members() if m.status == "joined"]
    return Snapshot(invitations, members)


def _case(rt: Runtime, *, create: bool, now: datetime) -> int | None:
    return sweep_case_id(
        rt.ledger, runbook=RUNBOOK, subject=CASE_SUBJECT, reason="hygiene", create=create, now=now
    )


def _keys(done: dict[str, Any], prefix: str) -> frozenset[str]:
    return frozenset(k.removeprefix(prefix) for k in done if k.startswith(prefix))


@task(name="recall_sweeps")
def recall(*, create: bool) -> Memory:
    """What earlier sweeps did (``create``: open the sweep's case when there is none)."""
    rt = runtime()
    case_id = _case(rt, create=create, now=rt.clock())
    done = done_steps(rt.ledger, case_id) if case_id is not None else {}
    return Memory(
        case_id=case_id,
        resent=_keys(done, "resend:"),
        recorded=_keys(done, "accepted:"),
        seen_pending=_keys(done, "seen:"),
    )


@task(name="remember_pending")
def remember_pending(invitations: list[Invitation], memory: Memory) -> None:
    """Note the pending invitations, so their acceptance is recorded whenever it comes."""
    rt = runtime()
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
def _audit(
    rt: Runtime,
    action: Action,
    what: str,
    effect: str,
    *,
    flow_run_id: str,
    ticket: str = "",
    on_behalf_of: str = "",
    **after: Any,
) -> None:
    append(
        rt.ledger,
        AuditEvent(
            action=what,
            subject=action.email,
            target=f"invitation sent {action.sent_at.isoformat()}",
            on_behalf_of=on_behalf_of,
            after={"reason": action.reason, **after},
            effect=effect,
            flow_run_id=flow_run_id,
            ticket=ticket,
        ),
        now=rt.clock(),
    )


@task(name="apply_invitation_action")
def apply_action(action: Action, *, case_id: int, flow_run_id: str) -> dict[str, Any]:
    """Apply one action; what it did (``effect``, and ``notes``: DMs, comments, skips).

    Raises:
        ConnectorError: the org refused or could not answer (the sweep goes on with the
            other invitations; this one is tried again by the next sweep).
    """
    rt = runtime()
    done = done_steps(rt.ledger, case_id)
    key, notes = action.key, []
    if action.kind is ActionKind.RESEND:
        step = f"resend:{key}"
        if step in done:
            effect = "noop(resent already)"
        else:
            res = rt.org.resend_invitation(action.email)  # type: ignore[union-attr]
            effect = str(res)
            mark_done(rt.ledger, case_id, step, effect, res.detail, rt.clock())
            _audit(rt, action, "invitation.resent", effect, flow_run_id=flow_run_id, **res.detail)
            done = done_steps(rt.ledger, case_id)
        expires = done[step]["detail"].get("expires_at", "")
        who = requester_of(rt, action)
        if who and f"notify:{key}" not in done and not effect.startswith("noop(no pending"):
            text = (
                f"The Amplitude invitation for {action.email} (sent "
                f"{action.sent_at.date().isoformat()}) has not been accepted: {action.reason}. "
                f"Handover resent it once{f' (it now expires {expires[:10]})' if expires else ''}"
                ". Please check with them that it arrived (spam folder); it is revoked 14 days "
                "after it was first sent."
            )
            try:
                rt.messenger.dm(who, text)
                notes.append(f"told {who}")
                status = "sent"
            except NotFoundError:  # not on Slack: the access channel, naming them
                try:
                    rt.messenger.post(ACCESS_CHANNEL, f"{who}: {text}")
                    notes.append(f"told {who} in #{ACCESS_CHANNEL} (not on Slack)")
                    status = f"posted(#{ACCESS_CHANNEL})"
                except ConnectorError as exc:
                    notes.append(f"could not tell {who}: {exc}")
                    status = f"failed({exc})"
            except ConnectorError as exc:
                notes.append(f"could not tell {who}: {exc}")
                status = f"failed({exc})"
            mark_done(rt.ledger, case_id, f"notify:{key}", status, {"to": who}, rt.clock())
            _audit(
                rt,
                action,
                "invitation.requester_notified",
                status,
                flow_run_id=flow_run_id,
                on_behalf_of=who,
            )
        elif not who:
            notes.append("nobody to tell (no requester known)")
        return {"effect": effect, "notes": notes}

    if action.kind is ActionKind.REVOKE:
        step = f"revoke:{key}"
        ticket = find_ticket(rt, action.email)
        if step in done:
            effect = "noop(revoked already)"
        else:
            res = rt.org.revoke_invitation(action.email)  # type: ignore[union-attr]
            effect = str(res)
            mark_done(rt.ledger, case_id, step, effect, res.detail, rt.clock())
            _audit(rt, action, "invitation.revoked", effect, flow_run_id=flow_run_id, ticket=ticket)
        if ticket and f"comment:{key}" not in done:
            body = (
                f"Handover revoked the Amplitude invitation for {action.email} (first sent "
                f"{action.sent_at.date().isoformat()}): {action.reason}. If access is still "
                "needed, request it again."
            )
            res = rt.tickets.comment(ticket, body)
            mark_done(
                rt.ledger, case_id, f"comment:{key}", str(res), {"ticket": ticket}, rt.clock()
            )
            _audit(
                rt,
                action,
                "ticket.commented",
                str(res),
                flow_run_id=flow_run_id,
                ticket=ticket,
            )
            notes.append(f"commented on {ticket}")
        elif not ticket:
            notes.append("no ticket known")
        return {"effect": effect, "notes": notes, "ticket": ticket}

    step = f"accepted:{key}"
    if step in done:
        return {"effect": "noop(recorded already)", "notes": notes}
    ticket = find_ticket(rt, action.email)
    if mark_done(rt.ledger, case_id, step, "recorded", {}, rt.clock()):
        _audit(
            rt, action, "invitation.accepted", "recorded", flow_run_id=flow_run_id, ticket=ticket
        )
        return {"effect": "recorded", "notes": notes, "ticket": ticket}
    return {"effect": "noop(recorded already)", "notes": notes}
