"""What every IdP connector does the same way on top of its own vendor calls."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from domain.models import IdpGroup, IdpUser, WriteResult


class MappedGroups(ABC):
    """Leaving the app's mapped groups, by address, through the connector's own calls."""

    @abstractmethod
    def find_user(self, email: str) -> IdpUser | None: ...

    @abstractmethod
    def groups_of(self, user_id: str) -> list[IdpGroup]: ...

    @abstractmethod
    def remove_from_group(self, group_id: str, user_id: str) -> WriteResult: ...

    def remove_from_mapped_groups(
        self, email: str, is_mapped: Callable[[str], bool]
    ) -> list[tuple[str, WriteResult]]:
        """Take a person out of every group the app maps (what offboarding does before removing
        them from the org, or the IdP's next provisioning cycle adds them back).

        Args:
            email: the person, found as :meth:`find_user` finds them.
            is_mapped: whether a group (by name) is one the app maps to roles or projects.

        Returns:
            Each mapped group's name and what was done there; empty when the person is unknown
            or in no mapped group.
        """
        user = self.find_user(email)
        if user is None:
            return []
        return [
            (g.name, self.remove_from_group(g.id, user.id))
            for g in self.groups_of(user.id)
            if is_mapped(g.name)
        ]
