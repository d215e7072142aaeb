"""Invitation hygiene (seed 003, "Monitor Invitation Status"; issues 6 and 7), pure.

The rules, per invitation, given the time and what the ledger remembers:

- pending and unaccepted ``resend_after`` (48 h) after it was first sent → resend it **once**:
  never when the backend says it was already resent (by anyone) or the ledger remembers
  resending it; never to a look-alike of an existing member (it is reported instead);
- pending ``revoke_after`` (14 days) after it was first sent, or already expired → revoke;
- accepted → recorded once: when the ledger saw it pending, or it was accepted before it would
  have expired (so a first sweep does not record every member who joined years ago);
- revoked, or pending and younger than 48 h → nothing.

An invitation is identified by its email and first-sent time (:func:`invitation_key`): a person
invited again after a revocation is a new invitation, with its own single resend.

:func:`hygiene_actions` is a short sequence of named rules, each a small pure function with its
own table of cases (``tests/domain/test_invitations_rules.py``): per invitation,
:func:`record_reason` when accepted, or :func:`pending_action` (:func:`revoke_reason`, else
:func:`resend_reason`) when pending or expired; :func:`hygiene_order` orders them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.models import Frozen, Invitation
from domain.plan import find_lookalikes

RESEND_AFTER = timedelta(hours=48)
REVOKE_AFTER = timedelta(days=14)


class ActionKind(StrEnum):
    RESEND = "resend"
    REVOKE = "revoke"
    RECORD_ACCEPTED = "record_accepted"
    CONSOLE_REVIEW = "console_review"  # no invitations API (SCIM only): a person's weekly task


class Action(Frozen):
    """One thing the sweep does to one invitation, and why."""

    kind: ActionKind
    email: str
    key: str  # invitation_key: what the ledger remembers the action by
    reason: str
    invited_by: str = ""
    sent_at: datetime

    @property
    def id(self) -> str:
        """The step id, as in the other runbooks' results (``kind:target``)."""
        return f"{self.kind.value}:{self.email}"


def invitation_key(inv: Invitation) -> str:
    """An invitation's identity: the invitee and when it was first sent (UTC)."""
    return f"{inv.email}#{_utc(inv.sent_at).isoformat()}"


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.1f} days"


def _lookalikes(inv: Invitation, members: Collection[str]) -> list[str]:
    return find_lookalikes(inv.email, members) if members else []


# --- the rules -----------------------------------------------------------------------------------
# Each rule is a small pure function; hygiene_actions runs them per invitation. They take an
# aware ``now`` (hygiene_actions reads a naive one as UTC).


def record_reason(
    inv: Invitation, now: datetime, *, recorded: bool, seen_pending: bool
) -> str | None:
    """Why an accepted invitation is recorded, or ``None``: recorded once, and only when an
    earlier sweep saw it pending or it was accepted before it would have expired (so a first
    sweep does not record every member who joined years ago)."""
    if recorded:
        return None
    if seen_pending or _utc(inv.expires_at) > now:
        return f"accepted (invited {_utc(inv.sent_at).date().isoformat()})"
    return None


def revoke_reason(inv: Invitation, now: datetime, *, revoke_after: timedelta) -> str | None:
    """Why a pending (or expired) invitation is revoked, or ``None``: it expired, or it is
    still unaccepted ``revoke_after`` after it was first sent."""
    if inv.state == "expired" or _utc(inv.expires_at) <= now:
        return f"expired on {_utc(inv.expires_at).date().isoformat()} without being accepted"
    age = now - _utc(inv.sent_at)
    if age >= revoke_after:
        return f"not accepted {_age(age)} after it was first sent (limit {_age(revoke_after)})"
    return None


def resend_reason(
    inv: Invitation,
    now: datetime,
    *,
    resend_after: timedelta,
    resent: bool,
    members: Collection[str],
) -> str | None:
    """Why a pending invitation is resent, or ``None``: unaccepted ``resend_after`` after it
    was sent, and resent by nobody yet (``resend_count``, or ``resent``: the ledger remembers);
    never to a look-alike of a member. Revocation goes first (:func:`pending_action`)."""
    age = now - _utc(inv.sent_at)
    if age < resend_after:
        return None
    if inv.resend_count > 0 or resent:
        return None  # resent once already: never a second time
    if _lookalikes(inv, members):
        return None  # reported by lookalike_warnings, never resent
    return f"not accepted {_age(age)} after it was sent (resend after {_age(resend_after)}, once)"


def pending_action(
    inv: Invitation,
    now: datetime,
    *,
    resend_after: timedelta,
    revoke_after: timedelta,
    resent: bool,
    members: Collection[str],
) -> tuple[ActionKind, str] | None:
    """A pending (or expired) invitation: revoked (:func:`revoke_reason`), else resent
    (:func:`resend_reason`), else left alone."""
    why = revoke_reason(inv, now, revoke_after=revoke_after)
    if why is not None:
        return ActionKind.REVOKE, why
    why = resend_reason(inv, now, resend_after=resend_after, resent=resent, members=members)
    return None if why is None else (ActionKind.RESEND, why)


HYGIENE_ORDER = {ActionKind.REVOKE: 0, ActionKind.RESEND: 1, ActionKind.RECORD_ACCEPTED: 2}


def hygiene_order(actions: Iterable[Action]) -> list[Action]:
    """Revocations first, then resends, then records; within each, by email and key."""
    return sorted(actions, key=lambda a: (HYGIENE_ORDER[a.kind], a.email, a.key))


def _action(inv: Invitation, kind: ActionKind, reason: str, *, key: str) -> Action:
    return Action(
        kind=kind,
        email=inv.email,
        key=key,
        reason=reason,
        invited_by=inv.invited_by,
        sent_at=_utc(inv.sent_at),
    )


def hygiene_actions(
    invitations: Iterable[Invitation],
    now: datetime,
    *,
    resend_after: timedelta = RESEND_AFTER,
    revoke_after: timedelta = REVOKE_AFTER,
    already_resent: Collection[str] = frozenset(),
    already_recorded: Collection[str] = frozenset(),
    seen_pending: Collection[str] = frozenset(),
    members: Collection[str] = (),
) -> list[Action]:
    """What the sweep does at ``now``: revocations first, then resends, then records.

    Args:
        invitations: every invitation the org knows (any state).
        now: the org's time (aware; a naive time is read as UTC).
        resend_after: unaccepted this long after first sent → resend once.
        revoke_after: unaccepted this long after first sent (or expired) → revoke.
        already_resent: keys (:func:`invitation_key`) the ledger says were resent.
        already_recorded: keys whose acceptance the ledger recorded.
        seen_pending: keys an earlier sweep saw pending (their acceptance is always recorded).
        members: the org's joined members' emails; a pending invitation that looks like one
            of them (:func:`domain.plan.find_lookalikes`) is never resent.
    """
    if resend_after >= revoke_after:
        raise ValueError("resend_after must be shorter than revoke_after")
    now = _utc(now)
    out: list[Action] = []
    for inv in invitations:
        key = invitation_key(inv)
        found: tuple[ActionKind, str] | None = None
        if inv.state == "accepted":
            why = record_reason(
                inv, now, recorded=key in already_recorded, seen_pending=key in seen_pending
            )
            found = None if why is None else (ActionKind.RECORD_ACCEPTED, why)
        elif inv.state in ("pending", "expired"):  # revoked: nothing left to do
            found = pending_action(
                inv,
                now,
                resend_after=resend_after,
                revoke_after=revoke_after,
                resent=key in already_resent,
                members=members,
            )
        if found is not None:
            out.append(_action(inv, *found, key=key))
    return hygiene_order(out)


def lookalike_warnings(
    invitations: Iterable[Invitation],
    members: Collection[str],
    now: datetime,
    *,
    resend_after: timedelta = RESEND_AFTER,
) -> list[str]:
    """Pending invitations that look like an existing member's address (not resent)."""
    now = _utc(now)
    out = []
    for inv in invitations:
        if inv.state != "pending":
            continue
        like = _lookalikes(inv, members)
        if like:
            held = " (due a resend: held)" if now - _utc(inv.sent_at) >= resend_after else ""
            out.append(
                f"pending invitation {inv.email!a} looks like {', '.join(like)}: "
                f"never resent; check it with {inv.invited_by or 'the inviter'}{held}"
            )
    return sorted(out)


def console_review(now: datetime) -> Action:
    """Where the org cannot list invitations (SCIM only): one review in the console per ISO
    week, a person's task (``domain.tasks.review_invitations_task``)."""
    year, week, _ = _utc(now).isocalendar()
    label = f"{year}-W{week:02d}"
    return Action(
        kind=ActionKind.CONSOLE_REVIEW,
        email="pending invitations",
        key=label,
        reason=f"the org cannot list invitations (SCIM only): a person reviews them ({label})",
        sent_at=_utc(now),
    )
