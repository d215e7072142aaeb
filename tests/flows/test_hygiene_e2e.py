"""Invitation hygiene end to end, over HTTP against the demo sandbox, on a real Prefect server
(issues 6 and 7: resend at 48 h once and tell the requester, revoke at 14 days and comment on
the ticket, record acceptances; a second sweep does nothing).

The sandbox's clock is moved, so every sweep is given the sandbox's time (``GET
/_sandbox/clock``) as ``now``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger.audit import records, verify
from tests.flows.offboard_stack import ADMIN, OffboardStack
from tests.flows.sweep_stack import demo_stack, onboarding_case, sweep

pytestmark = pytest.mark.slow

NEW = "new.hire@acme.com"
SLOW = "slow.accept@partner.io"
EXPIRED = "expired.invite@partner.io"
LOOKALIKE = "j\u043en.smith@acme.com"
INVITER = "it-admin@acme.com"

stack = pytest.fixture(name="stack")(demo_stack)


def hygiene_sweep(st: OffboardStack, **params: Any) -> dict[str, Any]:
    from flows.hygiene import invitation_hygiene

    return sweep(invitation_hygiene, st, **params)


def kinds(result: dict[str, Any]) -> dict[str, str]:
    return {s["target"]: s["kind"] for s in result["plan"]["steps"]}


def invitation(st: OffboardStack, email: str) -> dict[str, Any]:
    (found,) = [i for i in st.get("/admin/v1/invitations")["invitations"] if i["email"] == email][
        -1:
    ]
    return found


def audit(st: OffboardStack, action: str, subject: str) -> list[Any]:
    return [r for r in records(st.rt.ledger, subject=subject) if r.action == action]


def test_sweeps_resend_once_revoke_and_record(stack: OffboardStack) -> None:
    st = stack
    # The ledger knows the ticket of the expired invitation (an earlier onboarding case).
    ticket = onboarding_case(st.rt, EXPIRED)

    # The inviter is on Slack (in the demo seed, it-admin is not: it would be told in #it-access).
    r = httpx.post(
        f"{st.url}/_sandbox/slack/users",
        json={"email": INVITER, "real_name": "IT Admin"},
        headers=ADMIN,
        timeout=10,
    )
    assert r.status_code == 200, r.text

    # A dry run decides and writes nothing.
    before = st.seq()
    dry = hygiene_sweep(st, dry_run=True)
    assert dry["status"] == "planned"
    assert kinds(dry) == {EXPIRED: "revoke", SLOW: "resend"}
    assert st.writes(before) == []

    # First sweep: slow.accept resent once (its inviter told), expired.invite revoked (ticket
    # commented), new.hire left alone, the look-alike held and reported.
    first = hygiene_sweep(st)
    assert first["status"] == "done", first
    assert kinds(first) == {EXPIRED: "revoke", SLOW: "resend"}
    assert first["effects"] == {f"revoke:{EXPIRED}": "deleted", f"resend:{SLOW}": "updated"}
    assert any("jon.smith@acme.com" in w for w in first["warnings"])
    assert invitation(st, SLOW)["resend_count"] == 1
    assert invitation(st, EXPIRED)["state"] == "revoked"
    assert invitation(st, NEW)["state"] == "pending"
    assert invitation(st, LOOKALIKE)["resend_count"] == 0
    told = [m["text"] for m in st.dms(INVITER) if SLOW in m["text"]]
    assert len(told) == 1 and "resent it once" in told[0]
    issue = st.get(f"/_sandbox/jira/issues/{ticket}")
    assert sum(EXPIRED in c and "revoked" in c for c in issue["comments"]) == 1
    assert len(audit(st, "invitation.resent", SLOW)) == 1
    (revoked,) = audit(st, "invitation.revoked", EXPIRED)
    assert revoked.ticket == ticket

    # Second sweep at the same time: nothing at all.
    before = st.seq()
    second = hygiene_sweep(st)
    assert second["status"] == "nothing_to_do" and second["plan"]["steps"] == []
    assert st.writes(before) == []
    assert len([m for m in st.dms(INVITER) if SLOW in m["text"]]) == 1

    # Accept new.hire's invitation, then sweep: recorded once.
    r = httpx.post(f"{st.url}/_sandbox/members/{NEW}/accept", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    third = hygiene_sweep(st)
    assert kinds(third) == {NEW: "record_accepted"}
    assert third["effects"] == {f"record_accepted:{NEW}": "recorded"}
    assert hygiene_sweep(st)["status"] == "nothing_to_do"
    assert len(audit(st, "invitation.accepted", NEW)) == 1

    # 15 days later: everything still pending is revoked (slow.accept is never resent again).
    r = httpx.post(f"{st.url}/_sandbox/clock", json={"advance_days": 15}, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    late = hygiene_sweep(st)
    assert kinds(late) == {SLOW: "revoke", LOOKALIKE: "revoke"}, late
    assert set(late["effects"].values()) == {"deleted"}
    assert invitation(st, SLOW)["resend_count"] == 1
    assert invitation(st, SLOW)["state"] == "revoked"
    assert invitation(st, LOOKALIKE)["state"] == "revoked"
    assert hygiene_sweep(st)["status"] == "nothing_to_do"
    assert verify(st.rt.ledger).ok
