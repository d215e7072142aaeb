"""The invitation-hygiene rules (domain/invitations.py), each as its own small table of cases.

``test_invitations.py`` checks whole sweeps; here each rule alone, for one invitation to a
partner, sent ``age`` ago and valid 14 days unless said otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.invitations import (
    RESEND_AFTER,
    REVOKE_AFTER,
    Action,
    ActionKind,
    hygiene_order,
    pending_action,
    record_reason,
    resend_reason,
    revoke_reason,
)
from domain.models import Invitation
from tests.domain.test_invitations import NOW, D, H, inv  # the same invitations

LOOKALIKE = "j\u043en.smith@acme.com"  # a Cyrillic o
MEMBERS = ["jon.smith@acme.com"]


@pytest.mark.parametrize(
    ("i", "recorded", "seen", "reason"),
    [
        pytest.param(
            inv(2 * D, state="accepted"),
            False,
            False,
            "accepted (invited 2025-05-30)",
            id="recently",
        ),
        pytest.param(inv(2 * D, state="accepted"), True, True, None, id="recorded-already"),
        pytest.param(inv(400 * D, state="accepted"), False, False, None, id="long-ago-unseen"),
        pytest.param(
            inv(400 * D, state="accepted"),
            False,
            True,
            "accepted (invited 2024-04-27)",
            id="long-ago-seen-pending",
        ),
        pytest.param(inv(14 * D, state="accepted"), False, False, None, id="at-its-expiry"),
    ],
)
def test_record_reason(i: Invitation, recorded: bool, seen: bool, reason: str | None) -> None:
    assert record_reason(i, NOW, recorded=recorded, seen_pending=seen) == reason


@pytest.mark.parametrize(
    ("i", "reason"),
    [
        pytest.param(inv(13 * D), None, id="young"),
        pytest.param(
            inv(14 * D, ttl=20 * D),
            "not accepted 14.0 days after it was first sent (limit 14.0 days)",
            id="at-the-limit",
        ),
        pytest.param(
            inv(8 * D, ttl=7 * D),
            "expired on 2025-05-31 without being accepted",
            id="past-its-expiry",
        ),
        pytest.param(
            inv(H, state="expired"),
            "expired on 2025-06-15 without being accepted",
            id="expired-state-whatever-the-date",
        ),
    ],
)
def test_revoke_reason(i: Invitation, reason: str | None) -> None:
    assert revoke_reason(i, NOW, revoke_after=REVOKE_AFTER) == reason


@pytest.mark.parametrize(
    ("i", "resent", "reason"),
    [
        pytest.param(inv(48 * H - timedelta(seconds=1)), False, None, id="just-under-48h"),
        pytest.param(
            inv(48 * H),
            False,
            "not accepted 48 h after it was sent (resend after 48 h, once)",
            id="48h",
        ),
        pytest.param(
            inv(4 * D),
            False,
            "not accepted 4.0 days after it was sent (resend after 48 h, once)",
            id="days",
        ),
        pytest.param(inv(3 * D, resends=1), False, None, id="resent-by-the-backend"),
        pytest.param(inv(3 * D), True, None, id="resent-by-us"),
        pytest.param(inv(3 * D, email=LOOKALIKE), False, None, id="look-alike-never"),
    ],
)
def test_resend_reason(i: Invitation, resent: bool, reason: str | None) -> None:
    got = resend_reason(i, NOW, resend_after=RESEND_AFTER, resent=resent, members=MEMBERS)
    assert got == reason


@pytest.mark.parametrize(
    ("i", "kind"),
    [
        pytest.param(inv(5 * H), None, id="fresh"),
        pytest.param(inv(3 * D), ActionKind.RESEND, id="resend"),
        pytest.param(inv(15 * D, ttl=20 * D), ActionKind.REVOKE, id="revoke-not-resend"),
        pytest.param(inv(15 * D, email=LOOKALIKE), ActionKind.REVOKE, id="look-alike-revoked"),
        pytest.param(inv(3 * D, state="expired"), ActionKind.REVOKE, id="expired"),
    ],
)
def test_pending_action(i: Invitation, kind: ActionKind | None) -> None:
    found = pending_action(
        i,
        NOW,
        resend_after=RESEND_AFTER,
        revoke_after=REVOKE_AFTER,
        resent=False,
        members=MEMBERS,
    )
    assert (found[0] if found else None) == kind


def action(kind: ActionKind, email: str, key: str = "k") -> Action:
    return Action(kind=kind, email=email, key=key, reason="", sent_at=NOW)


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param(
            [
                action(ActionKind.RECORD_ACCEPTED, "a@x.io"),
                action(ActionKind.RESEND, "a@x.io"),
                action(ActionKind.REVOKE, "z@x.io"),
            ],
            [
                ("revoke", "z@x.io", "k"),
                ("resend", "a@x.io", "k"),
                ("record_accepted", "a@x.io", "k"),
            ],
            id="by-kind-first",
        ),
        pytest.param(
            [
                action(ActionKind.REVOKE, "b@x.io", "2"),
                action(ActionKind.REVOKE, "b@x.io", "1"),
                action(ActionKind.REVOKE, "a@x.io", "3"),
            ],
            [("revoke", "a@x.io", "3"), ("revoke", "b@x.io", "1"), ("revoke", "b@x.io", "2")],
            id="then-email-then-key",
        ),
    ],
)
def test_hygiene_order(actions: list[Action], expected: list[tuple[str, str, str]]) -> None:
    assert [(a.kind.value, a.email, a.key) for a in hygiene_order(actions)] == expected
