"""The bulk offboarding's inventory: what :func:`tasks.offboard.take_inventory` reads for one
leaver, read for a whole batch with what is shared read once.

``take_inventory`` lists every member of the org for each leaver (the look-alike check), and the
projects, the keys and the possible receivers again each time: on a 5 000-member org that is
five pages of 1 000 members, some 11 admin-API requests per leaver before the approval. Here the
member list, the groups, the projects, the API keys and each possible receiver are read once for
the batch; each leaver then costs their own reads only (member, owned and former-owned assets,
activity, IdP user and groups). The result for each leaver is the same :class:`Inventory` as
``take_inventory``'s, so the plans (and their step ids) are the same. The inventory is kept with
the leaver's approved plan (``flows.offboard.preapprove``): the leaver's run applies it without
reading the same systems again while it is fresh (``flows.offboard.FRESH_READ``), else reads
afresh and continues only if its plan is still the approved one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

from prefect import task

from connectors.capabilities import (
    KeyManagement,
    MemberDirectory,
    PermissionGroups,
    ProjectAccess,
    has,
    require,
)
from domain.models import ApiKey, Member, Project
from domain.plan import Inventory
from tasks.offboard import joined_admins, read_inventory
from tasks.runtime import UNCACHED, Runtime

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
            # The value under a key is what that key's compute returned: always a T here.
            return cast(T, self._values[key])


class BatchReader:
    """Reads of ``org`` shared by every leaver of one batch (one instance per batch)."""

    def __init__(self, org: MemberDirectory) -> None:
        self.org = org
        self._once = _Once()

    def members(self) -> list[Member]:
        org = self.org
        return self._once.get("members", lambda: list(org.list_members()))

    def member_emails(self) -> list[str]:
        return [m.email for m in self.members()]

    def org_admins(self) -> list[str]:
        # As the batch read them: two Admins of one batch each see the other; the org still
        # refuses to remove its last Admin (409), and that leaver's row says so.
        return joined_admins(self.members())

    def group_names(self) -> dict[str, str]:
        groups = require(self.org, PermissionGroups, system="org", operation="list_groups")
        return self._once.get("groups", lambda: {g.id: g.name for g in groups.list_groups()})

    def projects(self) -> list[Project]:
        org = self.org
        if not has(org, ProjectAccess):
            return []
        return self._once.get("projects", org.list_projects)

    def api_keys(self) -> list[ApiKey]:
        org = self.org
        if not has(org, KeyManagement):
            return []
        return self._once.get("keys", org.list_keys)

    def keys_of(self, email: str) -> list[ApiKey]:
        # The keys this leaver manages, as the backend's ``manager`` filter would answer.
        return [k for k in self.api_keys() if email in {m.strip().lower() for m in k.managers}]

    def person(self, email: str) -> Member | None:
        org = self.org
        return self._once.get(f"member:{email}", lambda: org.get_member(email))


# Not cached (tasks.runtime.UNCACHED): the runtime and the reader are live state, and an
# inventory must be read afresh on every run.
@task(name="take_batch_inventory", cache_policy=UNCACHED)
def take_batch_inventory(
    rt: Runtime, email: str, *, reader: BatchReader, receiver: str | None = None
) -> Inventory:
    """Everything the systems say about ``email`` and who could receive their content, as
    :func:`tasks.offboard.take_inventory` reads it, with the batch's shared reads from
    ``reader``."""
    return read_inventory(rt, email, reader, receiver=receiver)
