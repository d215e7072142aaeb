"""Safety valves: when an offboarding waits for a quorum, whoever or whatever started it (pure).

Three valves, each configured in the policy (``domain.policy.Policy``) and each answered by the
policy's quorum rule (a rule whose ``match.valves`` names it, with at least two seats):

- ``protected_account``: the person is on the policy's ``protected_accounts`` list (break-glass
  admins). Whatever the trigger — an HR event, an emergency, an access review, a bulk run.
- ``emergency_limit``: HR flagged more security risks (emergencies) from this HR source in the
  hour before this one than ``emergency_limit.per_hour``. The source is the door and secret that
  signed the event (``hr`` today: one HR secret), never a field of the event, which whoever
  holds the secret writes.
- ``termination_burst``: HR started more leavers in the hour up to this one than
  ``termination_burst.max_people``, or more than ``max_percent`` of the org's members.

"Before this one" is the order in which the ledger received the HR events (their start time,
then their row), so every run — in any process, in any order, run again after a crash — counts
the same events and comes to the same answer: the first N of a burst run, the rest wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.policy import Policy

WINDOW = timedelta(hours=1)
"""The rolling window of the emergency limit and of the termination burst."""


@dataclass(frozen=True)
class HrStart:
    """An offboarding HR started: one inbound event of the ledger (``seq``: its row)."""

    seq: int
    event_id: str
    subject: str
    at: datetime  # when its run was started (received, or its effective date came)
    emergency: bool = False
    leaver: bool = True  # a termination or a contract end (a role change keeps the person)


@dataclass(frozen=True)
class Valve:
    """A safety valve that holds for an offboarding, and why (what approvers are shown)."""

    name: str
    why: str


def earlier(this: HrStart, starts: Sequence[HrStart]) -> list[HrStart]:
    """The HR starts received before ``this`` within the window (``this`` itself excluded)."""
    return [
        s
        for s in starts
        if s.seq != this.seq and this.at - WINDOW < s.at and (s.at, s.seq) < (this.at, this.seq)
    ]


def _emergency_limit(policy: Policy, this: HrStart, before: Sequence[HrStart]) -> Valve | None:
    limit = policy.emergency_limit
    if limit is None or not this.emergency:
        return None
    n = sum(1 for s in before if s.emergency)
    if n < limit.per_hour:
        return None
    return Valve(
        "emergency_limit",
        f"emergency limit: {n} emergency lockouts from this HR source in the last hour "
        f"(at most {limit.per_hour} lock out at once); this one waits for a quorum",
    )


def _termination_burst(
    policy: Policy, this: HrStart, before: Sequence[HrStart], org_members: int | None
) -> Valve | None:
    burst = policy.termination_burst
    if burst is None or not this.leaver:
        return None
    people = {s.subject for s in before if s.leaver} - {this.subject}
    n = len(people) + 1  # with this one
    over_people = burst.max_people is not None and n > burst.max_people
    over_share = (
        burst.max_percent is not None
        and bool(org_members)
        and n * 100 > burst.max_percent * (org_members or 0)
    )
    if not (over_people or over_share):
        return None
    limits = []
    if burst.max_people is not None:
        limits.append(f"{burst.max_people} people")
    if burst.max_percent is not None and org_members:
        limits.append(f"{burst.max_percent:g}% of {org_members} members")
    return Valve(
        "termination_burst",
        f"termination burst: {n} leavers from HR within an hour (over {' or '.join(limits)}); "
        "the further ones wait for a quorum",
    )


def safety_valves(
    policy: Policy,
    *,
    subject: str,
    this: HrStart | None = None,
    starts: Sequence[HrStart] = (),
    org_members: int | None = None,
) -> list[Valve]:
    """The valves that hold for offboarding ``subject``.

    Args:
        policy: the policy (its valves).
        subject: who is offboarded.
        this: the HR start of this offboarding; None when HR did not start it (a person, a
            review, a bulk run): then only ``protected_account`` can hold.
        starts: the HR starts of the same source around it (the window is applied here).
        org_members: how many members the org has (for ``max_percent``); None: not known.
    """
    out: list[Valve] = []
    if subject.lower() in {p.lower() for p in policy.protected_accounts}:
        out.append(
            Valve(
                "protected_account",
                f"{subject} is a protected account (the policy's protected_accounts): "
                "never offboarded without a quorum, even in an emergency",
            )
        )
    if this is not None:
        before = earlier(this, starts)
        for valve in (
            _emergency_limit(policy, this, before),
            _termination_burst(policy, this, before, org_members),
        ):
            if valve is not None:
                out.append(valve)
    return out
