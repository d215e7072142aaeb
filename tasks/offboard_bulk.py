"""The bulk offboarding's inventory: what :func:`tasks.offboard.take_inventory` reads for one
leaver, read for a whole batch with what is shared read once.

``take_inventory`` lists every member of the org for each leaver (the look-alike check), and the
projects, the keys and the possible receivers again each time: on a 5 000-member org that is
five pages of 1 000 members, some 11 admin-API requests per leaver before the approval. Here the
member list, the groups, the projects, the API keys and each possible receiver are read once for
the batch; each leaver then costs their own reads only (member, owned and former-owned assets,
activity, IdP user and groups). The result for each leaver is the same :class:`Inventory` as
``take_inventory``'s, so the plans (and their step ids) are the same: each leaver's subflow takes
its own inventory again before applying and continues only if its plan is still the approved one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.capabilities import (
    AssetOwnership,
    KeyManagement,
    OrgActivityLog,
    ProjectAccess,
    has,
)
from domain.models import ApiKey, Member, Project, RosterStatus
from domain.plan import ACTIVITY_DAYS, Inventory, find_lookalikes
from tasks.runtime import runtime

T = TypeVar("T")


class _Once:
    """Values computed once per key, even when several threads ask at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, object] = {}

    def get(self, key: str, compute: Callable[[], T]) -> T:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = compute()
            return self._values[key]  # type: ignore[return-value]


class BatchReader:
    """Reads shared by every leaver of one batch (one instance per batch)."""

    def __init__(self) -> None:
        self._once = _Once()

    def member_emails(self) -> list[str]:
        org = runtime().org
        return self._once.get("members", lambda: [m.email for m in org.list_members()])

    def group_names(self) -> dict[str, str]:
        org = runtime().org
        return self._once.get("groups", lambda: {g.id: g.name for g in org.list_groups()})

    def projects(self) -> list[Project]:
        org = runtime().org
        if not has(org, ProjectAccess):
            return []
        return self._once.get("projects", org.list_projects)

    def api_keys(self) -> list[ApiKey]:
        org = runtime().org
        if not has(org, KeyManagement):
            return []
        return self._once.get("keys", org.list_keys)

    def person(self, email: str) -> Member | None:
        org = runtime().org
        return self._once.get(f"member:{email}", lambda: org.get_member(email))


# Not cached: the reader is live state, and an inventory must be read afresh on every run.
@task(name="take_batch_inventory", cache_policy=NO_CACHE)
def take_batch_inventory(
    email: str, *, reader: BatchReader, receiver: str | None = None
) -> Inventory:
    """Everything the systems say about ``email`` and who could receive their content, as
    :func:`tasks.offboard.take_inventory` reads it, with the batch's shared reads from
    ``reader``."""
    rt = runtime()
    org, now = rt.org, rt.clock()
    member = org.get_member(email)
    lookalikes = find_lookalikes(email, reader.member_emails())
    group_names = reader.group_names() if member and member.groups else {}
    idp_user = rt.idp.find_user(email)
    idp_groups = rt.idp.groups_of(idp_user.id) if idp_user else []
    assets, activity = [], []
    if has(org, AssetOwnership):
        assets = org.list_assets(owner=email) + org.list_assets(former_owner=email)
    # The keys this leaver manages, as the backend's ``manager`` filter would answer.
    keys = [k for k in reader.api_keys() if email in {m.strip().lower() for m in k.managers}]
    projects = reader.projects()
    if has(org, OrgActivityLog):
        activity = org.events(actor=email, since=now - timedelta(days=ACTIVITY_DAYS))
    roster = rt.roster.get(email) if rt.roster else None
    wanted = {receiver, roster.manager if roster else None}
    wanted |= {a for p in projects for a in p.admins}
    people = {
        e: m
        for e in sorted(x for x in wanted if x and x != email)
        if (m := reader.person(e)) is not None
    }
    departed = sorted(
        e
        for e in people
        if rt.roster and (r := rt.roster.get(e)) is not None and r.status is RosterStatus.TERMINATED
    )
    return Inventory(
        subject=email,
        member=member,
        lookalikes=lookalikes,
        org_groups=[(g, group_names.get(g, g)) for g in (member.groups if member else ())],
        idp_user=idp_user,
        idp_groups=idp_groups,
        assets=assets,
        api_keys=keys,
        projects=projects,
        people=people,
        roster=roster,
        departed=departed,
        activity=activity,
        taken_at=now,
    )
