"""What people own and use in the org, over the sandbox's admin API: assets and their transfer,
API keys, and the org activity log (:class:`AssetOwnership`, :class:`KeyManagement`,
:class:`OrgActivityLog`).

Real Amplitude has no API for any of this; these steps exist only where the backend offers them
(the sandbox), and :class:`connectors.org.admin.SandboxOrg` inherits them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from connectors.errors import InvalidRequestError, NotFoundError
from connectors.http import HttpApi
from connectors.org.client import SYSTEM, segment
from connectors.org.payloads import (
    AdminApiKeys,
    AdminAssetPage,
    AdminEvents,
    AdminRevokedKey,
    AdminRotatedKey,
    AdminTransfer,
    parse,
)
from connectors.redact import add_secrets
from domain.models import ApiKey as ApiKeyInfo
from domain.models import Asset, Effect, OrgEvent, WriteResult

ASSET_PAGE = 1000
ID_CHUNK = 500  # asset ids per read by id: 500 ids of up to 9 digits stay under 5 000 characters
EVENT_LIMIT = 100_000  # the audit log has no paging: ask for all of it at once


def _asset_ids(asset_ids: Sequence[str], *, operation: str, subject: str) -> list[int]:
    try:
        return list(dict.fromkeys(int(a) for a in asset_ids))
    except ValueError:
        raise InvalidRequestError(
            f"asset ids are numbers, got {list(asset_ids)!r}",
            system=SYSTEM,
            operation=operation,
            subject=subject,
        ) from None


class SandboxContent:
    """Assets, API keys and the activity log through ``/admin/v1``.

    Args:
        admin: the admin :class:`HttpApi` (see :func:`connectors.org.client.admin_api`).
    """

    admin: HttpApi

    # ------------------------------------------------------------------ AssetOwnership
    def list_assets(
        self,
        *,
        owner: str | None = None,
        former_owner: str | None = None,
        unassigned: bool | None = None,
        held_by: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[Asset]:
        """Assets matching every filter given (``former_owner``: left by a removed member;
        ``held_by``: owned by them or, removed, left unassigned by them: one read where
        ``owner`` and ``former_owner`` took two; ``ids``: these assets only).

        Raises:
            ConnectorError: the backend could not answer.
        """
        params: dict[str, Any] = {}
        if owner is not None:
            params["owner"] = owner
        if former_owner is not None:
            params["former_owner"] = former_owner
        if unassigned is not None:
            params["unassigned"] = "true" if unassigned else "false"
        if held_by is not None:
            params["held_by"] = held_by
        subject = owner or former_owner or held_by or ("unassigned" if unassigned else None)
        if ids is None:
            return self._asset_pages(params, subject)
        wanted = _asset_ids(ids, operation="list_assets", subject=subject or "by id")
        out: list[Asset] = []
        # A URL holds a few thousand characters: the ids go in chunks.
        for i in range(0, len(wanted), ID_CHUNK):
            chunk = ",".join(str(x) for x in wanted[i : i + ID_CHUNK])
            out += self._asset_pages({**params, "ids": chunk}, subject)
        return out

    def _asset_pages(self, params: dict[str, Any], subject: str | None) -> list[Asset]:
        out: list[Asset] = []
        while True:
            data = self.admin.json(
                "GET",
                "/assets",
                operation="list_assets",
                subject=subject,
                params={**params, "offset": len(out), "limit": ASSET_PAGE},
            )
            page = parse(AdminAssetPage, data, operation="list_assets", subject=subject)
            out += [a.to_asset() for a in page.assets]
            if not page.assets or len(out) >= page.total:
                return out

    def transfer_assets(self, asset_ids: Sequence[str], to: str) -> WriteResult:
        """Transfer assets (owned or unassigned) to ``to``; final, there is no undo.

        Returns:
            ``updated`` with ``detail`` ``transferred``/``unchanged``/``warnings`` (e.g. the
            receiver lacks access to a project), or ``noop`` when the receiver owns them all.

        Raises:
            ConflictError: the receiver is not joined or has not logged in within 30 days (the
                backend's message says which).
            NotFoundError: an asset does not exist.
        """
        ids = _asset_ids(asset_ids, operation="transfer_assets", subject=to)
        if not ids:
            return WriteResult.noop("no assets to transfer")
        data = self.admin.json(
            "POST",
            "/assets/transfer",
            operation="transfer_assets",
            subject=f"{len(ids)} assets to {to}",
            json={"asset_ids": ids, "to": to},
        )
        return _transfer_result(parse(AdminTransfer, data, operation="transfer_assets"))

    def transfer_all(self, from_email: str, to: str, *, project: str | None = None) -> WriteResult:
        """Everything ``from_email`` owns, or left unassigned, goes to ``to`` (bulk transfer).

        Returns:
            as :meth:`transfer_assets`; ``noop`` when there was nothing to move.

        Raises:
            ConflictError: the receiver may not receive content (checked even when nothing
                moves, so a plan learns it early).
        """
        body: dict[str, Any] = {"from": from_email, "to": to}
        if project is not None:
            body["project"] = project
        data = self.admin.json(
            "POST",
            "/assets/bulk-transfer",
            operation="transfer_all",
            subject=f"{from_email} to {to}",
            json=body,
        )
        return _transfer_result(parse(AdminTransfer, data, operation="transfer_all"))

    # ------------------------------------------------------------------ KeyManagement
    def list_keys(self, *, manager: str | None = None) -> list[ApiKeyInfo]:
        """API keys (never their secrets), optionally only those ``manager`` manages."""
        params = {"manager": manager} if manager is not None else None
        data = self.admin.json(
            "GET", "/api-keys", operation="list_keys", subject=manager, params=params
        )
        return [k.to_key() for k in parse(AdminApiKeys, data, operation="list_keys").api_keys]

    def rotate_key(
        self, key_id: str, *, idempotency_key: str | None = None
    ) -> tuple[WriteResult, SecretStr]:
        """A new secret for the key; the old one stops working at once.

        The new secret is registered with the log redaction before anything else can see it.
        With ``idempotency_key`` (the runbooks pass their case and step), a retry after a lost
        answer, or a re-run after a killed worker, gets the same secret back rather than a
        second rotation.

        Returns:
            ``updated`` (``detail`` ``rotation_count``, ``secret_hint``) and the new secret.

        Raises:
            ConflictError: the key is revoked.
            NotFoundError: there is no such key.
        """
        subject = f"API key {key_id}"
        data = self.admin.json(
            "POST",
            f"/api-keys/{segment(key_id)}/rotate",
            operation="rotate_key",
            subject=subject,
            idempotency_key=idempotency_key,
        )
        # The raw answer holds the secret in clear; it is masked before it can reach any
        # log line, and only the SecretStr leaves this method.
        raw = data.get("secret") if isinstance(data, dict) else None
        if isinstance(raw, str):
            add_secrets([raw])
        key = parse(AdminRotatedKey, data, operation="rotate_key", subject=subject)
        result = WriteResult(
            effect=Effect.UPDATED,
            detail={"rotation_count": key.rotation_count, "secret_hint": key.secret_hint},
        )
        return result, key.secret

    def revoke_key(self, key_id: str) -> WriteResult:
        """Revoke a key: ``deleted``, or ``noop("already revoked")``.

        Raises:
            NotFoundError: there is no such key.
        """
        subject = f"API key {key_id}"
        data = self.admin.json(
            "POST", f"/api-keys/{segment(key_id)}/revoke", operation="revoke_key", subject=subject
        )
        key = parse(AdminRevokedKey, data, operation="revoke_key", subject=subject)
        if not key.changed:
            return WriteResult.noop("already revoked")
        return WriteResult(effect=Effect.DELETED)

    def remove_key_manager(self, key_id: str, email: str) -> WriteResult:
        """Take ``email`` off a key's managers (a leaver); ``noop`` when not one of them.

        Raises:
            NotFoundError: there is no such key.
        """
        subject = f"API key {key_id}"
        who = email.strip().lower()
        key = next((k for k in self.list_keys() if k.id == key_id), None)
        if key is None:
            raise NotFoundError(
                "no such key", system="org", operation="remove_key_manager", subject=subject
            )
        if who not in key.managers:
            return WriteResult.noop("not a manager")
        self.admin.json(
            "PUT",
            f"/api-keys/{segment(key_id)}/managers",
            operation="remove_key_manager",
            subject=subject,
            json={"managers": [m for m in key.managers if m != who]},
        )
        return WriteResult(effect=Effect.UPDATED)

    # ------------------------------------------------------------------ OrgActivityLog
    def events(
        self,
        *,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
    ) -> list[OrgEvent]:
        """Org audit log events, oldest first (``action`` may end in ``*``: ``member.*``).

        Raises:
            ConnectorError: the backend could not answer.
        """
        params: dict[str, Any] = {"limit": EVENT_LIMIT}
        if actor is not None:
            params["actor"] = actor
        if target is not None:
            params["target"] = target
        if action is not None:
            params["action"] = action
        if since is not None:
            # Sent in UTC: a zone-less time means UTC to the backend, never local time.
            aware = since if since.tzinfo else since.replace(tzinfo=UTC)
            params["since"] = aware.astimezone(UTC).isoformat()
        data = self.admin.json(
            "GET", "/audit-log", operation="events", subject=actor or target, params=params
        )
        return [e.to_event() for e in parse(AdminEvents, data, operation="events").events]


def _transfer_result(t: AdminTransfer) -> WriteResult:
    detail = {
        "to": t.to,
        "transferred": [str(i) for i in t.transferred],
        "unchanged": [str(i) for i in t.unchanged],
        "warnings": t.warnings,
    }
    if not t.transferred:
        reason = "the receiver owns them already" if t.unchanged else "nothing to transfer"
        return WriteResult.noop(reason, **detail)
    return WriteResult(effect=Effect.UPDATED, detail=detail)
