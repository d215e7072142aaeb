"""Who a person signed in to the web console is, and what they may do there.

Roles come from the IdP, read at every request (so a person removed from a group, or
deactivated, loses the page at once, not when a cookie expires):

- everyone the IdP knows as an **active** user is a *requester* (sees their own requests,
  cases and grants);
- members of the IdP groups named by ``HANDOVER_CONSOLE_GROUPS`` (role → group display name)
  are *it_admin*, *security* or *auditor* (auditor: read-only, everything);
- an *approver* is anyone who holds a seat of the approval at hand (the policy's candidates,
  resolved when the approval was opened, or the fallback group once it escalated): that is
  decided per approval by :func:`may_decide`, not by a group.

A person the IdP does not know, or knows as inactive, is nobody: the console shows them nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from approvals.services import Services
from connectors.errors import ConnectorError
from domain.records import ApprovalRequest, ApprovalState


class IdpUnreachable(Exception):
    """The IdP could not be asked who someone is (the page says so; nobody is guessed)."""


class Role(StrEnum):
    REQUESTER = "requester"
    IT_ADMIN = "it_admin"
    SECURITY = "security"
    AUDITOR = "auditor"


# Roles that see every case, grant and task (read); deciding is still per object.
SEE_ALL = frozenset({Role.IT_ADMIN, Role.SECURITY, Role.AUDITOR})


@dataclass(frozen=True)
class ConsolePerson:
    """A signed-in person as the IdP knows them now: canonical address, every address, roles."""

    email: str
    addresses: tuple[str, ...]
    roles: frozenset[Role]

    def has(self, *roles: Role) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def sees_all(self) -> bool:
        return bool(self.roles & SEE_ALL)

    def is_one_of(self, *people: str) -> bool:
        """Whether any of ``people`` (addresses) is this person, under any of their addresses."""
        mine = set(self.addresses)
        return any(p.strip().lower() in mine for p in people if p)


def console_person(svc: Services, email: str) -> ConsolePerson | None:
    """The person the IdP knows by ``email``, with their console roles; None when the IdP does
    not know them or they are not active.

    Raises:
        IdpUnreachable: the IdP could not be asked, or it knows several users by ``email``.
    """
    if svc.idp is None:
        return None
    try:
        user = svc.idp.find_user(email.strip().lower())
    except ConnectorError as exc:
        raise IdpUnreachable(f"the identity provider could not say who you are: {exc}") from None
    if user is None or not user.active or not user.address:
        return None
    groups = set(user.groups)
    roles = {Role.REQUESTER}
    for role, group in svc.settings.console_groups.items():
        if group in groups:
            roles.add(Role(role))
    return ConsolePerson(user.address, tuple(user.addresses), frozenset(roles))


def seat_holders(svc: Services, appr: ApprovalRequest) -> set[str]:
    """Everyone who may fill a seat of ``appr`` now: its seats' candidates and, once it has
    escalated, the policy's fallback group (the gate still decides what counts)."""
    people = {p for seat in appr.required for p in seat}
    if appr.escalated:
        people |= set(svc.policy.groups.get(svc.policy.fallback_group, []))
    return people


def may_decide(svc: Services, who: ConsolePerson, appr: ApprovalRequest) -> str | None:
    """Why ``who`` may not decide ``appr`` (a sentence), or None when they may.

    Nobody decides a closed approval, their own request, or an approval about themselves; an
    auditor never decides; only a seat holder decides.
    """
    if appr.state is not ApprovalState.PENDING:
        return f"this request is already {appr.state.value}"
    if who.has(Role.AUDITOR):
        return "auditors read every request and decide none"
    if who.is_one_of(appr.requester):
        return "you asked for this: someone else must approve it"
    if who.is_one_of(appr.subject):
        return "this request is about you: someone else must approve it"
    if not who.is_one_of(*seat_holders(svc, appr)):
        return "you hold no seat on this request"
    return None


def may_see(svc: Services, who: ConsolePerson, appr: ApprovalRequest) -> bool:
    """Whether ``who`` may read ``appr``: its requester, its subject, a seat holder (who may be
    asked to decide it), or an it_admin, security or auditor (they read every request)."""
    return who.sees_all or who.is_one_of(appr.requester, appr.subject, *seat_holders(svc, appr))
