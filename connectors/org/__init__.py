"""The org backend (Amplitude-style): pick the connector the settings name.

- ``org_backend = "amplitude"`` → :class:`AmplitudeScim`: only what Amplitude's SCIM API offers
  (MemberDirectory, PermissionGroups, and :class:`Inviter`); ``has(org, AssetOwnership)`` and
  the like answer False and ``require`` raises ``CapabilityMissing`` (the runbooks do not yet
  turn such steps into tasks for a person);
- ``org_backend = "sandbox"`` → :class:`SandboxOrg`: SCIM plus the sandbox's admin API, every org
  capability of :mod:`connectors.capabilities`.
"""

from __future__ import annotations

import httpx

from connectors.capabilities import Inviter
from connectors.org.admin import SandboxOrg
from connectors.org.scim import AmplitudeScim
from connectors.settings import ORG_BACKENDS as BACKENDS
from connectors.settings import Settings

__all__ = ["BACKENDS", "AmplitudeScim", "Inviter", "SandboxOrg", "make_org"]


def make_org(
    settings: Settings, *, client: httpx.Client | None = None
) -> AmplitudeScim | SandboxOrg:
    """The org connector for ``settings.org_backend``.

    Args:
        settings: where the org lives, its tokens, its rate limits and which backend it is.
        client: an ``httpx.Client`` to send every request through (in-process tests).

    Returns:
        :class:`AmplitudeScim` for ``"amplitude"``, :class:`SandboxOrg` for ``"sandbox"``.

    Raises:
        SettingsError: ``org_backend`` names neither.
    """
    if settings.org_backend_kind() == "amplitude":
        return AmplitudeScim.from_settings(settings, client=client)
    return SandboxOrg.from_settings(settings, client=client)
