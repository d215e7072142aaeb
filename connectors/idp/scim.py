"""The identity provider over SCIM 2.0 (RFC 7643/7644): users, groups, and what offboarding does
there before it touches the org (out of the mapped groups, or the next sync provisions the person
again; then deactivated). Generic: payloads are scim2-models' (User, Group, ListResponse, PatchOp,
SearchRequest), kept in this module and converted to :class:`domain.models.IdpUser`/``IdpGroup``;
every call goes through :class:`connectors.http.HttpApi` (rate limit, retries, error mapping).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError
from scim2_models import (
    Context,
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    ListResponse,
    Name,
    PatchOp,
    PatchOperation,
    Resource,
    ScimObject,
    SearchRequest,
    User,
)

from connectors.errors import ConflictError, InvalidRequestError, NotFoundError, PermanentError
from connectors.http import HttpApi
from connectors.idp.common import MappedGroups
from connectors.rate import Limiter
from connectors.settings import Settings
from domain.models import Effect, IdpGroup, IdpUser, WriteResult

SYSTEM = "idp"
ScimUser = User[EnterpriseUser]
R = TypeVar("R", bound=Resource[Any])
M = TypeVar("M", bound=ScimObject)
_ACCEPT = "application/scim+json, application/json"
_KNOWN_SCHEMAS = {str(User.__schema__), str(EnterpriseUser.__schema__), str(Group.__schema__)}


def _eq(attr: str, value: str) -> str:
    """A SCIM equality filter; the value is a JSON string (RFC 7644 §3.4.2.2), quotes escaped."""
    return f"{attr} eq {json.dumps(value, ensure_ascii=False)}"


def _known(body: Any) -> Any:
    """A payload without the extensions we do not model (an IdP may add its own)."""
    if not isinstance(body, dict):
        return body
    dropped = {k for k in body if k.startswith("urn:") and k not in _KNOWN_SCHEMAS}
    out = {k: v for k, v in body.items() if k not in dropped}
    if dropped and isinstance(out.get("schemas"), list):
        out["schemas"] = [s for s in out["schemas"] if s not in dropped]
    if isinstance(out.get("Resources"), list):
        out["Resources"] = [_known(r) for r in out["Resources"]]
    return out


@dataclass(frozen=True)
class _Kind(Generic[R]):
    """One SCIM resource type as this connector reads and writes it: its model, the list and
    patch messages parameterized by it, and its endpoint. Spelled out once per type, so each
    parameterized message is a concrete type rather than one built from a variable."""

    model: type[R]
    listing: type[ListResponse[R]]
    patch: type[PatchOp[R]]
    operation: type[PatchOperation[R]]
    path: str

    def url(self, resource_id: str | None = None) -> str:
        """The endpoint, or one resource's URL under it."""
        return self.path if resource_id is None else f"{self.path}/{quote(resource_id, safe='')}"


_USERS = _Kind(
    ScimUser, ListResponse[ScimUser], PatchOp[ScimUser], PatchOperation[ScimUser], "/Users"
)
_GROUPS = _Kind(Group, ListResponse[Group], PatchOp[Group], PatchOperation[Group], "/Groups")


def _addresses(u: User[Any], *, by_email: bool) -> set[str]:
    """What a user is found by: the userName, and the emails when searching by email."""
    emails = {str(e.value).lower() for e in u.emails or []} if by_email else set()
    return {(u.user_name or "").lower(), *emails}


def _to_user(u: User[Any]) -> IdpUser:
    emails = sorted((e for e in u.emails or [] if e.value), key=lambda e: not e.primary)
    email = str(emails[0].value) if emails else u.user_name if "@" in (u.user_name or "") else None
    name = u.name or Name()
    return IdpUser(
        id=str(u.id),
        user_name=str(u.user_name),
        email=email.lower() if email else None,
        given_name=name.given_name or "",
        family_name=name.family_name or "",
        active=u.active is not False,  # absent means active, as IdPs treat it
        groups=tuple(str(g.display or g.value) for g in u.groups or [] if g.value),
        emails=tuple(dict.fromkeys(str(e.value).lower() for e in emails)),
    )


def _to_group(g: Group) -> IdpGroup:
    members = tuple(str(m.value) for m in g.members or [] if m.value)
    return IdpGroup(id=str(g.id), name=g.display_name or "", members=members)


class _Where(TypedDict):
    """The keyword arguments every connector error takes (``connectors.errors``)."""

    system: str
    operation: str
    subject: str


def _at(operation: str, subject: str) -> _Where:
    return {"system": SYSTEM, "operation": operation, "subject": subject}


def _updated(**detail: Any) -> WriteResult:
    return WriteResult(effect=Effect.UPDATED, detail=detail)


class ScimIdp(MappedGroups):
    """A SCIM 2.0 identity provider; implements ``UserDirectory`` and ``GroupMembership``.

    Args:
        settings: where the IdP is (``idp_url``, ``idp_token``, ``idp_rate_per_minute``); read
            from the environment when neither it nor both ``base_url`` and ``token`` are given.
        base_url: the SCIM root (e.g. ``https://idp.example.com/scim/v2``); overrides settings.
        token: the bearer token; overrides settings.
        client: an ``httpx.Client`` to send through (e.g. a Starlette TestClient, in-process).
        limiter: a rate limiter instead of the one in use of this URL (connectors/rate.py).
        page_size: the ``count`` asked for per page (servers may answer fewer).
        attempts: tries per call while the errors are transient.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        token: str | SecretStr | None = None,
        client: httpx.Client | None = None,
        limiter: Limiter | None = None,
        page_size: int = 100,
        attempts: int = 6,
    ) -> None:
        if settings is None and (base_url is None or token is None):
            settings = Settings()
        url = base_url or (settings.idp_url if settings else "")
        secret = token if token is not None else settings.idp_token if settings else ""
        secret = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        self.page_size = page_size
        self.http = HttpApi(
            system=SYSTEM,
            backend="idp",
            base_url=url,
            headers={"Authorization": f"Bearer {secret}", "Accept": _ACCEPT},
            per_minute=settings.idp_rate_per_minute if settings else None,
            client=client,
            limiter=limiter,
            attempts=attempts,
        )

    def __repr__(self) -> str:
        return f"ScimIdp(base_url={self.http.base_url!r})"

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    # ------------------------------------------------------------------ wire
    def _parse(self, model: type[M], body: Any, ctx: Context, operation: str, subject: str) -> M:
        """A payload as its scim2 model; an answer that is not SCIM is a permanent error."""
        try:
            return model.model_validate(_known(body), scim_ctx=ctx)
        except ValidationError as exc:
            msg = f"not a SCIM {model.__name__}: {exc.errors()[0]['msg']}"
            raise PermanentError(msg, **_at(operation, subject)) from exc

    def _json(self, method: str, path: str, operation: str, subject: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, operation=operation, subject=subject, **kw)
        try:
            return resp.json()
        except ValueError as exc:
            msg = f"{resp.status_code} answer is not JSON"
            raise PermanentError(msg, **_at(operation, subject)) from exc

    def _get(self, kind: _Kind[R], resource_id: str, operation: str) -> R:
        body = self._json("GET", kind.url(resource_id), operation, resource_id)
        return self._parse(
            kind.model, body, Context.RESOURCE_QUERY_RESPONSE, operation, resource_id
        )

    def _search(
        self, kind: _Kind[R], operation: str, subject: str, filter_: str | None = None, **kw: Any
    ) -> Iterator[R]:
        """Every match of a search of Users or Groups, page by page (``startIndex``/``count``),
        however many the server puts in a page."""
        start, seen = 1, 0
        while True:
            request = SearchRequest(
                filter=filter_, start_index=start, count=self.page_size, **kw
            ).model_dump(scim_ctx=Context.SEARCH_REQUEST)
            request.pop("schemas", None)
            params = {k: ",".join(v) if isinstance(v, list) else v for k, v in request.items()}
            body = self._json("GET", kind.url(), operation, subject, params=params)
            page = self._parse(kind.listing, body, Context.SEARCH_RESPONSE, operation, subject)
            items = list(page.resources or [])
            yield from items
            seen, total = seen + len(items), page.total_results
            short = len(items) < self.page_size  # the end, where the server gives no total
            if not items or (seen >= total if total is not None else short):
                return
            start += len(items)

    def _patch(self, kind: _Kind[R], rid: str, operation: str, subject: str, **op: Any) -> None:
        """One PATCH operation (``op``, ``path``, ``value``) on one resource."""
        patch = kind.patch(operations=[kind.operation(**op)])
        body = patch.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
        path = kind.url(rid)
        self.http.request("PATCH", path, json=body, operation=operation, subject=subject)

    # ------------------------------------------------------------------ users
    def get_user(self, user_id: str) -> IdpUser:
        """The user with this SCIM id.

        Raises:
            NotFoundError: no such user.
        """
        return _to_user(self._get(_USERS, user_id, "get_user"))

    def iter_users(self) -> Iterator[IdpUser]:
        """Every user of the IdP, paged through."""
        for u in self._search(_USERS, "list_users", "all"):
            yield _to_user(u)

    def find_user(self, email: str) -> IdpUser | None:
        """The user whose userName, or else whose email, is ``email`` (case-insensitive).

        Args:
            email: the address to look for.

        Returns:
            The user, or None when the IdP knows no one by that address.

        Raises:
            ConflictError: no userName matches and several users carry the email.
        """
        key = email.strip().lower()
        for attr in ("userName", "emails.value"):
            found = self._search(_USERS, "find_user", key, _eq(attr, key))
            # The server's filter decides; checking again guards against one that ignores it.
            hits = [u for u in found if key in _addresses(u, by_email=attr != "userName")]
            if len(hits) > 1:
                raise ConflictError(f"{len(hits)} users have this {attr}", **_at("find_user", key))
            if hits:
                return _to_user(hits[0])
        return None

    def create_user(
        self, *, email: str, given_name: str = "", family_name: str = "", active: bool = True
    ) -> tuple[WriteResult, IdpUser]:
        """Create the user (userName and primary email ``email``), unless one exists.

        Returns:
            ``created`` and the new user, or ``noop("exists")`` and the user already there.

        Raises:
            ConflictError: the IdP refused for another reason (or several users have the email).
        """
        key = email.strip().lower()
        existing = self.find_user(key)
        if existing is not None:
            return WriteResult.noop("exists", id=existing.id), existing
        user = ScimUser(
            user_name=key,
            name=Name(given_name=given_name or None, family_name=family_name or None),
            display_name=f"{given_name} {family_name}".strip() or key,
            emails=[Email(value=key, type="work", primary=True)],
            active=active,
        )
        payload = user.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        try:
            body = self._json("POST", "/Users", "create_user", key, json=payload)
        except ConflictError:
            # Created meanwhile (a concurrent run): the write converged.
            existing = self.find_user(key)
            if existing is None:
                raise
            return WriteResult.noop("exists", id=existing.id), existing
        new = self._parse(ScimUser, body, Context.RESOURCE_CREATION_RESPONSE, "create_user", key)
        return WriteResult(effect=Effect.CREATED, detail={"id": new.id}), _to_user(new)

    def set_active(self, user_id: str, active: bool) -> WriteResult:
        """Activate or deactivate a user (PATCH replace ``active``).

        Returns:
            ``updated``, or ``noop`` when the user is already so.

        Raises:
            NotFoundError: no such user.
        """
        return self._set_active(_to_user(self._get(_USERS, user_id, "set_active")), active)

    def _set_active(self, user: IdpUser, active: bool) -> WriteResult:
        if user.active is active:
            return WriteResult.noop("already active" if active else "already inactive", id=user.id)
        name = user.user_name
        self._patch(_USERS, user.id, "set_active", name, op="replace", path="active", value=active)
        return _updated(id=user.id, active=active)

    def deactivate(self, email: str) -> WriteResult:
        """Deactivate the user with this email: they can no longer sign in anywhere.

        Returns:
            ``updated``; ``noop`` when already inactive or unknown to the IdP.
        """
        user = self.find_user(email)
        if user is None:
            return WriteResult.noop("no such user")
        return self._set_active(user, False)

    # ------------------------------------------------------------------ groups
    def get_group(self, group_id: str) -> IdpGroup:
        """The group with this SCIM id, with its members' ids.

        Raises:
            NotFoundError: no such group.
        """
        return _to_group(self._get(_GROUPS, group_id, "get_group"))

    def list_groups(self) -> list[IdpGroup]:
        """Every group with its members' ids, paged through."""
        return [_to_group(g) for g in self._search(_GROUPS, "list_groups", "all")]

    def find_group(self, name: str) -> IdpGroup | None:
        """The group with this displayName (case-insensitive; an exact match wins).

        Raises:
            ConflictError: several groups differ from ``name`` only in case.
        """
        found = self._search(_GROUPS, "find_group", name, _eq("displayName", name))
        hits = [g for g in found if (g.display_name or "").lower() == name.lower()]
        exact = [g for g in hits if g.display_name == name]
        if len(exact) == 1 or len(hits) == 1:
            return _to_group((exact or hits)[0])
        if hits:
            raise ConflictError(f"{len(hits)} groups are named so", **_at("find_group", name))
        return None

    def groups_of(self, user_id: str) -> list[IdpGroup]:
        """The groups a user is in: from the user's ``groups`` when the server returns it, else
        by searching groups for the member (or scanning them all where filters are refused).
        The groups' ``members`` are left empty (read them with :meth:`get_group`).

        Raises:
            NotFoundError: no such user.
        """
        user = self._get(_USERS, user_id, "groups_of")
        if user.groups is not None:
            return [
                IdpGroup(id=str(g.value), name=g.display or self.get_group(str(g.value)).name)
                for g in user.groups
                if g.value
            ]
        try:
            members = _eq("members.value", user_id)
            found = list(
                self._search(
                    _GROUPS, "groups_of", user_id, members, excluded_attributes=["members"]
                )
            )
        except InvalidRequestError:
            found = [
                g
                for g in self._search(_GROUPS, "groups_of", user_id)
                if any(m.value == user_id for m in g.members or [])
            ]
        return [IdpGroup(id=str(g.id), name=g.display_name or "") for g in found]

    def add_to_group(self, group_id: str, user_id: str) -> WriteResult:
        """Add a user to a group (PATCH add ``members``).

        Returns:
            ``updated``, or ``noop("already a member")``.

        Raises:
            NotFoundError: no such group.
        """
        group = _to_group(self._get(_GROUPS, group_id, "add_to_group"))
        if user_id in group.members:
            return WriteResult.noop("already a member", group=group.name)
        value = [GroupMember(value=user_id)]
        self._patch(
            _GROUPS, group_id, "add_to_group", user_id, op="add", path="members", value=value
        )
        return _updated(group=group.name, added=user_id)

    def remove_from_group(self, group_id: str, user_id: str) -> WriteResult:
        """Remove a user from a group (PATCH remove ``members[value eq "…"]``).

        Returns:
            ``updated``, or ``noop`` when they are not a member or the group is gone.
        """
        try:
            group = _to_group(self._get(_GROUPS, group_id, "remove_from_group"))
        except NotFoundError:
            return WriteResult.noop("no such group", group=group_id)
        if user_id not in group.members:
            return WriteResult.noop("not a member", group=group.name)
        try:
            path = f"members[{_eq('value', user_id)}]"
            self._patch(_GROUPS, group_id, "remove_from_group", user_id, op="remove", path=path)
        except NotFoundError:
            return WriteResult.noop("no such group", group=group.name)
        except InvalidRequestError:
            # RFC 7644 answers 400 noTarget when the member left meanwhile: converged.
            if user_id in self.get_group(group_id).members:
                raise
            return WriteResult.noop("not a member", group=group.name)
        return _updated(group=group.name, removed=user_id)
