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
        key, sent = invitation_key(inv), _utc(inv.sent_at)
        age = now - sent

        def act(kind: ActionKind, reason: str, inv: Invitation = inv, key: str = key) -> None:
            out.append(
                Action(
                    kind=kind,
                    email=inv.email,
                    key=key,
                    reason=reason,
                    invited_by=inv.invited_by,
                    sent_at=_utc(inv.sent_at),
                )
            )

        if inv.state == "accepted":
            if key in already_recorded:
                continue
            if key in seen_pending or _utc(inv.expires_at) > now:
                act(ActionKind.RECORD_ACCEPTED, f"accepted (invited {sent.date().isoformat()})")
            continue
        if inv.state not in ("pending", "expired"):
            continue  # revoked: nothing left to do
        if inv.state == "expired" or _utc(inv.expires_at) <= now:
            act(
                ActionKind.REVOKE,
                f"expired on {_utc(inv.expires_at).date().isoformat()} without being accepted",
            )
        elif age >= revoke_after:
            act(
                ActionKind.REVOKE,
                f"not accepted {_age(age)} after it was first sent (limit {_age(revoke_after)})",
            )
        elif age >= resend_after:
            if inv.resend_count > 0 or key in already_resent:
                continue  # resent once already: never a second time
            if _lookalikes(inv, members):
                continue  # reported by lookalike_warnings, never resent
            act(
                ActionKind.RESEND,
                f"not accepted {_age(age)} after it was sent (resend after "
                f"{_age(resend_after)}, once)",
            )
    order = {ActionKind.REVOKE: 0, ActionKind.RESEND: 1, ActionKind.RECORD_ACCEPTED: 2}
    return sorted(out, key=lambda a: (order[a.kind], a.email, a.key))


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
