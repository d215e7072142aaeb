"""The two HTTP APIs of the org backend, built from :class:`connectors.settings.Settings`.

- SCIM at ``{org_url}/scim/1`` (``Authorization: Bearer <org_scim_token>``), rate bucket
  ``org_scim`` sized to Amplitude's published 100 requests/min per org;
- the admin API at ``{org_url}/admin/v1`` (``Authorization: Bearer <org_admin_token>``), bucket
  ``org_admin``: what Amplitude offers only in its UI, served by the sandbox.

Both are :class:`connectors.http.HttpApi` (rate limit, retries, error mapping); the helpers here
add what the org connectors share: URL-safe path segments and telling a backend's own 404
("no member x") from a 404 of a wrong URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from connectors.errors import NotFoundError
from connectors.http import HttpApi
from connectors.rate import Limiter
from connectors.settings import Settings

SYSTEM = "org"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_api(
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    limiter: Limiter | None = None,
    attempts: int = 6,
) -> HttpApi:
    """The org's SCIM API (``/scim/1``).

    Args:
        settings: where the org lives and its SCIM token.
        client: an ``httpx.Client`` to send through (e.g. a Starlette ``TestClient``).
        limiter: a limiter of its own; by default the ``org_scim`` one in use (connectors/rate.py).
        attempts: tries per call while the errors are transient.

    Returns:
        A rate-limited, retrying client whose errors are those of :mod:`connectors.errors`.
    """
    return HttpApi(
        system=SYSTEM,
        backend="org_scim",
        base_url=f"{settings.org_url.rstrip('/')}/scim/1",
        # Regenerating the SCIM key in the org's console invalidates the old one at once (seed
        # 002): a 401 says which credential to replace, not only "unauthorized".
        rejected="the SCIM key was rejected (regenerated? "
        "set HANDOVER_ORG_SCIM_TOKEN to the new key)",
        headers={
            "Authorization": f"Bearer {settings.org_scim_token.get_secret_value()}",
            "Accept": "application/scim+json, application/json",
        },
        per_minute=settings.org_scim_rate_per_minute,
        client=client,
        limiter=limiter,
        attempts=attempts,
    )


def admin_api(
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    limiter: Limiter | None = None,
    attempts: int = 6,
) -> HttpApi:
    """The org's admin API (``/admin/v1``); arguments as for :func:`scim_api`."""
    return HttpApi(
        system=SYSTEM,
        backend="org_admin",
        base_url=f"{settings.org_url.rstrip('/')}/admin/v1",
        headers={"Authorization": f"Bearer {settings.org_admin_token.get_secret_value()}"},
        per_minute=settings.org_admin_rate_per_minute,
        client=client,
        limiter=limiter,
        attempts=attempts,
    )


def segment(value: str | int) -> str:
    """A value made safe as one URL path segment (an email, a project name, an id)."""
    return quote(str(value), safe="@")


def backend_said_not_found(resp: httpx.Response, *, operation: str, subject: str) -> None:
    """Accept a 404 as "no such thing" only when the backend itself said so.

    A 404 in another shape (a proxy, a wrong ``HANDOVER_ORG_URL``) must not read as "not a
    member": an offboarding would then report success without removing anyone.

    Raises:
        NotFoundError: the 404 did not come from the org API.
    """
    body: Any
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (
        "error" in body or SCIM_ERROR_SCHEMA in (body.get("schemas") or [])
    ):
        return
    raise NotFoundError(
        f"{resp.request.url.path} is not an org API endpoint (check HANDOVER_ORG_URL)",
        system=SYSTEM,
        operation=operation,
        status_code=404,
        subject=subject,
    )
