"""People as the IdP knows them: who clicked in Slack, and who a requester is.

Every person Handover records (an approver, a task's assignee, a requester) is recorded under
one address: the IdP user's canonical one (:attr:`domain.models.IdpUser.address`: the userName,
else the primary email). An alias (another of the user's ``emails``) or a Jira display name is
never compared as it was given, so a person cannot approve their own request by asking under
another name.

A Slack click is taken only when (:func:`slack_clicker`, the one check every button goes
through):

1. it comes from the configured workspace (``team.id``) and app (``api_app_id``);
2. Slack describes the clicking account, now, as a full member of that workspace: not
   deactivated, not a guest (``is_restricted``/``is_ultra_restricted``), not a bot;
3. the account's Slack email is an address (userName or any email) of exactly one active IdP
   user — whose canonical address the decision is recorded under.

What this proves: Slack vouches that the click came from that Slack account (the signature
proves Slack sent it), and the IdP mapping that the account belongs to a person the
organisation still employs. What it does not: that the person, not someone holding their
unlocked laptop or their stolen Slack session, clicked. Slack's email is only as good as the
workspace's own SSO: a workspace where people may edit their profile email must not be trusted
this way (docs/security.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from approvals.services import Services
from connectors.capabilities import ChatMembers, has
from connectors.errors import ConflictError, ConnectorError
from domain.identity import SLACK, Verified
from domain.models import IdpUser
from domain.policy import ApprovalContext

log = logging.getLogger("handover.approvals.people")


def idp_user(svc: Services, address: str) -> IdpUser | None:
    """The IdP user known by ``address`` (its userName or any of its emails), or None.

    Raises:
        ConflictError: several IdP users carry the address (nobody can say which is meant).
        ConnectorError: the IdP could not be asked.
    """
    if svc.idp is None or "@" not in address:
        return None
    return svc.idp.find_user(address.strip().lower())


def canonical(svc: Services, address: str) -> str:
    """The canonical address of the person the IdP knows by ``address``; ``address`` itself
    (lower-case) when the IdP knows nobody by it (an outside requester, ``hr-webhook``, or no
    IdP configured).

    Raises:
        ConflictError: several IdP users carry the address.
        ConnectorError: the IdP could not be asked (a requester is never guessed).
    """
    user = idp_user(svc, address)
    return user.address if user is not None and user.address else address.strip().lower()


def recorded_as(svc: Services, address: str) -> str:
    """The address a person who acts is recorded under: the IdP's canonical one when the IdP
    knows them (an alias from an ID token or an ``--as`` is the same person); as given when it
    does not, or cannot be asked now — such an address counts only where the policy names it
    as given, and never where an alias of the requester or subject is excluded."""
    try:
        return canonical(svc, address)
    except ConnectorError:  # ConflictError included: several people, nobody is guessed
        return address.strip().lower()


def idp_address(svc: Services, address: str | None) -> str | None:
    """The canonical address of the active IdP user known by ``address``; None when there is
    none (no address, nobody, several people, or a deactivated one): a person is never
    guessed.

    Raises:
        ConnectorError: the IdP could not be asked.
    """
    if not address:
        return None
    try:
        user = idp_user(svc, address)
    except ConflictError:
        return None
    return user.address if user is not None and user.active and user.address else None


def aliases(svc: Services, *addresses: str) -> tuple[str, ...]:
    """Every address the IdP knows the people named by ``addresses`` by (the given ones too).

    Raises:
        ConnectorError: the IdP could not be asked.
    """
    out = [a.strip().lower() for a in addresses if a]
    for a in addresses:
        try:
            user = idp_user(svc, a)
        except ConflictError:
            continue  # several people: none of their addresses is this one's own
        if user is not None:
            out += user.addresses
    return tuple(dict.fromkeys(out))


def as_the_idp_knows(svc: Services, ctx: ApprovalContext) -> ApprovalContext:
    """``ctx`` with its requester as the IdP's canonical address, and every address the IdP
    knows the requester and the subject by among those who can never approve it.

    Without this a requester who asked as ``alice@acme.com`` (an alias) could approve as
    ``alice.admin@acme.com`` (the address a Slack click is recorded under): the policy compares
    addresses.

    Raises:
        ConflictError: several IdP users carry the requester's address (whose request is it?).
        ConnectorError: the IdP could not be asked (the run fails rather than guess).
    """
    asker = idp_user(svc, ctx.requester)
    requester = asker.address if asker is not None and asker.address else ctx.requester.lower()
    known = [ctx.requester.lower(), *(asker.addresses if asker is not None else ())]
    known += aliases(svc, ctx.subject)
    return replace(
        ctx, requester=requester, aliases=tuple(a for a in dict.fromkeys(known) if a != requester)
    )


@dataclass(frozen=True)
class Clicker:
    """A click's person: the IdP's canonical address and how Slack vouched for the account."""

    email: str
    verified: Verified


@dataclass(frozen=True)
class ClickRefused:
    """Why a click is not taken, and the HTTP status that says so (nothing was recorded)."""

    status: int
    message: str


def slack_clicker(
    svc: Services, *, user_id: str, team_id: str, app_id: str
) -> Clicker | ClickRefused:
    """Who clicked, or why the click does not count (the checks of the module docstring).

    Args:
        svc: the services (their settings name the workspace and app; their messenger asks
            Slack about the account; their IdP maps it to a person).
        user_id: the payload's ``user.id``.
        team_id: the payload's ``team.id`` (the workspace the click was made in).
        app_id: the payload's ``api_app_id``.

    Returns:
        The clicker, recorded with ``Verified(SLACK, subject=<user id>, issuer=<team id>)``;
        or a refusal: 403 for a click that does not count, 503 when Slack or the IdP cannot be
        asked now (the person may click again).
    """
    settings = svc.settings
    if team_id != settings.slack_team_id:
        return ClickRefused(403, "this click is not from the Slack workspace Handover serves")
    if app_id != settings.slack_app_id:
        return ClickRefused(403, "this click is not from Handover's Slack app")
    messenger = svc.messenger
    if messenger is None or not has(messenger, ChatMembers) or svc.idp is None:
        return ClickRefused(503, "Slack clicks cannot be checked here (no Slack or no IdP)")
    try:
        member = messenger.member(user_id)
    except ConnectorError as exc:
        log.warning("slack: cannot check the clicking user %s: %s", user_id, exc)
        return ClickRefused(503, "Slack cannot be asked who clicked right now: try again")
    if member is None or member.team_id != team_id:
        # Another workspace's account (Slack Connect) clicking in a shared channel, or none.
        return ClickRefused(403, "this Slack user is not a member of the workspace")
    if member.deleted:
        return ClickRefused(403, "this Slack account is deactivated")
    if member.guest:
        return ClickRefused(403, "a Slack guest cannot decide: ask a full member")
    if member.bot:
        return ClickRefused(403, "a bot cannot decide")
    if not member.email:
        return ClickRefused(403, "this Slack user has no email Handover can see")
    try:
        user = idp_user(svc, member.email)
    except ConflictError:
        return ClickRefused(403, "several IdP users have this Slack user's email")
    except ConnectorError as exc:
        log.warning("idp: cannot map the clicking user %s: %s", user_id, exc)
        return ClickRefused(503, "the IdP cannot be asked who clicked right now: try again")
    if user is None or not user.active or not user.address:
        return ClickRefused(403, "this Slack user's email is not an active IdP user")
    return Clicker(user.address, Verified(SLACK, subject=member.id, issuer=team_id))
