"""The bulk onboarding's one inventory: the org (and, IdP-managed, the IdP) read once for every
row of a batch, instead of :func:`tasks.onboard.take_onboard_inventory` once per row.

Reads: the member list, the projects and the invitations once; then, only for the rows whose
address is already in the org, that member in full (project roles); IdP-managed, each row's IdP
user and groups. A batch of new people costs three requests, not six per person.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence

from prefect import task

from connectors.capabilities import Invitations, ProjectAccess, has, require
from connectors.errors import ConnectorError
from domain.onboard import OnboardState
from domain.plan import is_mapped_idp_group
from tasks.runtime import UNCACHED, Runtime


@task(name="take_bulk_inventory", cache_policy=UNCACHED)
def take_bulk_inventory(
    rt: Runtime, emails: Sequence[str], *, idp_managed: bool = False
) -> dict[str, OnboardState]:
    """What the systems say about every address of a batch (keyed by the address as given)."""
    org, idp, now = rt.org, rt.idp, rt.clock()
    members = {m.email.casefold(): m for m in org.list_members()}
    all_emails = [m.email for m in members.values()]
    domains = Counter(e.rsplit("@", 1)[-1] for e in all_emails)
    org_domains = [d for d, _ in domains.most_common(1)]
    # SCIM only (real Amplitude): no projects or invitations by API; the console does them.
    roles_by_api = has(org, ProjectAccess)
    projects = (
        require(org, ProjectAccess, system="org", operation="list_projects").list_projects()
        if roles_by_api
        else []
    )
    invitations = (
        require(org, Invitations, system="org", operation="list_invitations").list_invitations()
        if has(org, Invitations)
        else []
    )
    idp_groups = (
        {g.name: g.id for g in idp.list_groups() if is_mapped_idp_group(g.name)}
        if idp_managed
        else {}
    )
    out: dict[str, OnboardState] = {}
    for email in emails:
        key = email.casefold()
        member = org.get_member(email) if key in members else None
        invitation = None
        if member is not None and member.status == "pending":
            mine = [i for i in invitations if i.email.casefold() == key]
            invitation = max(mine, key=lambda i: i.sent_at) if mine else None
        idp_user = idp.find_user(email) if idp_managed else None
        user_groups = [g.name for g in idp.groups_of(idp_user.id)] if idp_user else []
        out[email] = OnboardState(
            subject=email,
            member=member,
            invitation=invitation,
            projects=projects,
            roles_by_api=roles_by_api,
            others=[e for e in all_emails if e.casefold() != key],
            org_domains=org_domains,
            idp_user=idp_user,
            idp_user_groups=user_groups,
            idp_groups=idp_groups,
            taken_at=now,
        )
    return out


@task(name="notify_requester", cache_policy=UNCACHED)
def notify_requester(rt: Runtime, email: str, text: str) -> None:
    """One Slack DM to whoever asked for the batch (a Slack outage does not fail the batch)."""
    if email and "@" in email:
        with contextlib.suppress(ConnectorError):
            rt.messenger.dm(email, text)
