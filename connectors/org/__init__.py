"""The org backend (Amplitude-style): pick the connector the settings name.

- ``org_backend = "amplitude"`` → :class:`AmplitudeScim`: only what Amplitude's SCIM API offers
  (MemberDirectory, PermissionGroups, and :class:`Inviter`); every other org step becomes a
  human task, because ``has(org, AssetOwnership)`` and the like answer False;
- ``org_backend = "sandbox"`` → :class:`SandboxOrg`: SCIM plus the sandbox's admin API, every org
  capability of :mod:`connectors.capabilities`.
"""

from __future__ import annotations

import httpx

from connectors.capabilities import Inviter
from connectors.org.admin import SandboxOrg
from connectors.org.scim import AmplitudeScim
from connectors.settings import Settings, SettingsError

BACKENDS = ("amplitude", "sandbox")

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
    backend = settings.org_backend.strip().lower()
    if backend == "amplitude":
        return AmplitudeScim.from_settings(settings, client=client)
    if backend == "sandbox":
        return SandboxOrg.from_settings(settings, client=client)
    raise SettingsError(
        f"HANDOVER_ORG_BACKEND must be one of {', '.join(BACKENDS)}, not {settings.org_backend!r}"
    )
