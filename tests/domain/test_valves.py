"""The safety valves as a table of cases (domain.valves, domain.policy): pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from approvals.policy import load_policy
from domain.policy import ApprovalContext, Policy, requirement
from domain.valves import HrStart, safety_valves

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
BASE = load_policy().model_dump()


def policy(**changes: Any) -> Policy:
    return Policy.model_validate({**BASE, **changes})


def start(
    seq: int, minutes: float, who: str, *, emergency: bool = False, leaver: bool = True
) -> HrStart:
    return HrStart(
        seq=seq,
        event_id=f"e{seq}",
        subject=who,
        at=T0 + timedelta(minutes=minutes),
        emergency=emergency,
        leaver=leaver,
    )


def names(
    p: Policy,
    subject: str,
    this: HrStart | None,
    starts: list[HrStart],
    members: int | None = None,
) -> list[str]:
    return [
        v.name
        for v in safety_valves(p, subject=subject, this=this, starts=starts, org_members=members)
    ]


LIMIT = policy(emergency_limit={"per_hour": 2}, termination_burst=None)
E = [start(i, i, f"p{i}@acme.com", emergency=True) for i in range(1, 6)]


@pytest.mark.parametrize(
    ("this", "starts", "expected"),
    [
        (E[0], E, []),  # the first of the hour
        (E[1], E, []),  # the second: still within per_hour 2
        (E[2], E, ["emergency_limit"]),  # the third waits
        (E[4], E, ["emergency_limit"]),  # and every later one
        # Older than an hour: not counted.
        (start(9, 70, "q@acme.com", emergency=True), E[:2], []),
        # Not an emergency: the limit does not apply.
        (start(9, 6, "q@acme.com"), E, []),
    ],
)
def test_the_emergency_limit_counts_the_hour_before_this_event(
    this: HrStart, starts: list[HrStart], expected: list[str]
) -> None:
    assert names(LIMIT, this.subject, this, starts) == expected


def test_same_time_events_are_ordered_by_their_row() -> None:
    twins = [start(i, 0, f"p{i}@acme.com", emergency=True) for i in range(1, 4)]
    assert [names(LIMIT, t.subject, t, twins) for t in twins] == [[], [], ["emergency_limit"]]


BURST = policy(emergency_limit=None, termination_burst={"max_people": 3})
L = [start(i, i, f"p{i}@acme.com") for i in range(1, 6)]


@pytest.mark.parametrize(
    ("this", "starts", "members", "pol", "expected"),
    [
        (L[2], L, None, BURST, []),  # the third of max 3
        (L[3], L, None, BURST, ["termination_burst"]),  # the fourth waits
        # A person HR sent twice is one person.
        (start(9, 9, "p1@acme.com"), L[:3], None, BURST, []),
        # A role change is no leaver, and role changes are not counted.
        (start(9, 9, "q@acme.com", leaver=False), L, None, BURST, []),
        (L[3], [start(i, i, f"r{i}@acme.com", leaver=False) for i in range(5)], None, BURST, []),
        # A share of the org: 2 leavers of 20 members is 10 % > 5 %.
        (L[1], L, 20, policy(termination_burst={"max_percent": 5}), ["termination_burst"]),
        (L[1], L, 100, policy(termination_burst={"max_percent": 5}), []),
        # The org's size unknown: only max_people counts.
        (L[1], L, None, policy(termination_burst={"max_percent": 5}), []),
    ],
)
def test_a_termination_burst(
    this: HrStart, starts: list[HrStart], members: int | None, pol: Policy, expected: list[str]
) -> None:
    assert names(pol, this.subject, this, starts, members) == expected


def test_a_protected_account_holds_whatever_started_it() -> None:
    p = policy(protected_accounts=["Break.Glass@acme.com"])
    assert names(p, "break.glass@acme.com", None, []) == ["protected_account"]
    assert names(p, "break.glass@acme.com", E[0], E) == ["protected_account"]
    assert names(p, "someone@acme.com", None, []) == []


def test_a_valve_asks_the_quorum_even_in_an_emergency() -> None:
    p = load_policy()
    ctx = ApprovalContext(
        runbook="offboard",
        subject="x@acme.com",
        requester="hr-system:e1",
        reason="security_incident",
        emergency=True,
    )
    assert not requirement(p, ctx).pre_approval
    held = requirement(p, ApprovalContext(**{**ctx.__dict__, "valves": ("protected_account",)}))
    assert held.pre_approval and held.quorum == 2 and "safety-valve" in held.rules
    assert all(s.separation_of_duty for s in held.seats)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # A valve without a quorum rule would be no valve.
        (
            {"rules": [r for r in BASE["rules"] if r["name"] != "safety-valve"]},
            "no rule with match.valves",
        ),
        ({"termination_burst": {}}, "max_people, max_percent or both"),
        ({"emergency_limit": {"per_hour": -1}}, "greater than or equal to 0"),
        ({"emergency_declarers": ["group:nobody"]}, "unknown group 'nobody'"),
        ({"emergency_declarers": ["security"]}, "not an email or group:<name>"),
    ],
)
def test_an_invalid_valve_policy_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        policy(**changes)


def test_a_one_seat_valve_rule_is_refused() -> None:
    rules = [
        {**r, "seats": r["seats"][:1]} if r["name"] == "safety-valve" else r for r in BASE["rules"]
    ]
    with pytest.raises(ValidationError, match="quorum"):
        policy(rules=rules)


def test_the_declarers_are_the_policy_s_groups_and_emails() -> None:
    p = policy(emergency_declarers=["group:security", "Ir.Lead@acme.com"])
    assert p.declarers() == ["sec.lead@acme.com", "sec.oncall@acme.com", "ir.lead@acme.com"]
    assert policy(emergency_declarers=[]).declarers() == []
