"""Invitation hygiene rules as a table of cases: pure, no servers, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.invitations import (
    ActionKind,
    hygiene_actions,
    invitation_key,
    lookalike_warnings,
)
from domain.models import Invitation

NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)


def inv(
    age: timedelta,
    *,
    state: str = "pending",
    resends: int = 0,
    email: str = "x@partner.io",
    ttl: timedelta = 14 * D,
) -> Invitation:
    sent = NOW - age
    return Invitation(
        email=email,
        state=state,
        sent_at=sent,
        last_sent_at=sent,
        expires_at=sent + ttl,
        resend_count=resends,
        invited_by="it-admin@acme.com",
    )


CASES = [
    # (name, invitation, ledger memory, expected kind or None)
    ("fresh", inv(5 * H), {}, None),
    ("just under 48 h", inv(48 * H - timedelta(seconds=1)), {}, None),
    ("48 h exactly: resend", inv(48 * H), {}, ActionKind.RESEND),
    ("3 days, never resent", inv(3 * D), {}, ActionKind.RESEND),
    ("resent by the backend already", inv(3 * D, resends=1), {}, None),
    ("resent by us already", inv(3 * D), {"resent": True}, None),
    ("13.9 days after a resend: nothing", inv(13.9 * D, resends=1, ttl=20 * D), {}, None),
    ("14 days exactly: revoke", inv(14 * D, resends=1, ttl=20 * D), {}, ActionKind.REVOKE),
    ("20 days, state expired: revoke", inv(20 * D, state="expired"), {}, ActionKind.REVOKE),
    ("pending but past expires_at: revoke", inv(8 * D, ttl=7 * D), {}, ActionKind.REVOKE),
    ("revoked: nothing", inv(30 * D, state="revoked"), {}, None),
    ("accepted recently: record", inv(2 * D, state="accepted"), {}, ActionKind.RECORD_ACCEPTED),
    ("accepted, recorded already", inv(2 * D, state="accepted"), {"recorded": True}, None),
    ("accepted long ago, never seen: nothing", inv(400 * D, state="accepted"), {}, None),
    (
        "accepted long ago, seen pending: record",
        inv(30 * D, state="accepted"),
        {"seen": True},
        ActionKind.RECORD_ACCEPTED,
    ),
]


@pytest.mark.parametrize(
    ("invitation", "memory", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rules(
    invitation: Invitation, memory: dict[str, bool], expected: ActionKind | None
) -> None:
    key = invitation_key(invitation)
    actions = hygiene_actions(
        [invitation],
        NOW,
        already_resent={key} if memory.get("resent") else set(),
        already_recorded={key} if memory.get("recorded") else set(),
        seen_pending={key} if memory.get("seen") else set(),
    )
    assert [a.kind for a in actions] == ([expected] if expected else [])
    for a in actions:
        assert a.reason and a.key == key and a.email == invitation.email
        assert a.id == f"{a.kind.value}:{a.email}"


def test_resend_happens_once_across_sweeps() -> None:
    i = inv(3 * D)
    first = hygiene_actions([i], NOW)
    assert [a.kind for a in first] == [ActionKind.RESEND]
    later = hygiene_actions([i], NOW + 2 * D, already_resent={first[0].key})
    assert later == []


def test_reinvited_after_revocation_is_a_new_invitation() -> None:
    old, new = inv(20 * D, state="revoked"), inv(3 * D)
    actions = hygiene_actions([old, new], NOW, already_resent={invitation_key(old)})
    assert [a.kind for a in actions] == [ActionKind.RESEND]


def test_order_and_reasons() -> None:
    acts = hygiene_actions(
        [
            inv(2 * D, state="accepted", email="a@x.io"),
            inv(3 * D, email="b@x.io"),
            inv(20 * D, state="expired", email="c@x.io"),
        ],
        NOW,
    )
    assert [(a.kind, a.email) for a in acts] == [
        (ActionKind.REVOKE, "c@x.io"),
        (ActionKind.RESEND, "b@x.io"),
        (ActionKind.RECORD_ACCEPTED, "a@x.io"),
    ]
    assert "expired on" in acts[0].reason
    assert "3.0 days" in acts[1].reason and "once" in acts[1].reason


def test_lookalike_is_never_resent_but_still_revoked() -> None:
    fake = "j\u043en.smith@acme.com"
    members = ["jon.smith@acme.com"]
    assert hygiene_actions([inv(3 * D, email=fake)], NOW, members=members) == []
    assert [a.kind for a in hygiene_actions([inv(15 * D, email=fake)], NOW, members=members)] == [
        ActionKind.REVOKE
    ]
    (w,) = lookalike_warnings([inv(3 * D, email=fake)], members, NOW)
    assert "jon.smith@acme.com" in w and "held" in w


def test_naive_now_is_utc_and_bad_thresholds_refused() -> None:
    assert hygiene_actions([inv(3 * D)], NOW.replace(tzinfo=None))[0].kind is ActionKind.RESEND
    with pytest.raises(ValueError):
        hygiene_actions([], NOW, resend_after=15 * D)
