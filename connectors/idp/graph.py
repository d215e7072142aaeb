"""Microsoft Entra ID over Microsoft Graph v1.0: users, groups, lifecycle and sign-in sessions.

What offboarding does in Entra ID, the way ConductorOne's baton-azure and Lumos do it: out of the
groups the Amplitude app maps (``DELETE /groups/{id}/members/{uid}/$ref``), then
``accountEnabled: false`` (``PATCH /users/{id}``), and the sign-in sessions revoked
(``POST /users/{id}/revokeSignInSessions``, read back through ``signInSessionsValidFromDateTime``).

- **Auth**: the OAuth 2.0 client credentials grant of an app registration (client id and secret,
  scope ``https://graph.microsoft.com/.default``) at the tenant's token endpoint; authlib's
  :class:`authlib.oauth2.client.OAuth2Client` builds the request, authenticates the client
  (``client_secret_post``), parses the token and its expiry, and fetches a new one ``leeway``
  seconds before it expires. A 401 on a token this process still thought valid (revoked, or the
  clocks disagree) fetches a new one once and sends the call again.
- **Paging**: ``$top`` (Graph's maximum: 999 users) and ``@odata.nextLink``, an absolute URL
  followed as given until absent (only on Graph's own host: the token goes nowhere else).
- **Queries**: ``$filter`` with OData's single-quoted strings (a quote doubled); Graph compares
  these properties without regard to case. ``$count=true`` with ``ConsistencyLevel: eventual``
  (an "advanced query") where Graph documents that it requires them (an OData cast:
  ``memberOf/microsoft.graph.group``), and for the address search, whose ``or`` across
  multi-valued properties the advanced mode serves in every combination.
- **Rate limits**: 429 and 503 with ``Retry-After``, honoured by :class:`connectors.http.HttpApi`
  (and by the token fetch, which shares its retries).
- **Errors**: Graph's ``{"error": {"code", "message", "innerError"}}`` mapped once, by code where
  its status says too little (:func:`_classify`); the token endpoint's RFC 6749 errors (with
  Entra's ``AADSTS`` numbers) once (:func:`_token_refused`). No secret or token in any message.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client
from pydantic import SecretStr

from connectors.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    TransientError,
    parse_retry_after,
)
from connectors.http import HttpApi, current_call, json_body, new_client
from connectors.idp.common import MappedGroups
from connectors.rate import Limiter
from connectors.settings import Settings
from domain.models import Effect, IdpGroup, IdpUser, WriteResult

SYSTEM = "idp"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_TOP = 999  # Graph's largest page of users (and of memberships)
# What a user is read with: Graph returns accountEnabled, otherMails and proxyAddresses only
# when $select'ed (its default set is businessPhones, displayName, givenName, id, …).
USER_FIELDS = (
    "id,userPrincipalName,mail,otherMails,proxyAddresses,givenName,surname,displayName,"
    "accountEnabled"
)
GROUP_FIELDS = "id,displayName"
_EVENTUAL = {"ConsistencyLevel": "eventual"}  # with $count=true: Graph's advanced queries
TOKEN_LEEWAY_S = 300  # a new token this long before the old one expires (Entra's last 3599 s)
_CONFLICT_CODES = {"ObjectConflict", "Request_MultipleObjectsWithSameKeyValue"}


def _literal(value: str) -> str:
    """An OData string literal: single-quoted, a quote doubled (OData ABNF ``SQUOTE-in-string``)."""
    return "'" + value.replace("'", "''") + "'"


def _is_guid(value: str) -> bool:
    """Whether ``value`` can be a directory object id (Graph's ids are GUIDs)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _classify(response: httpx.Response) -> type[PermanentError] | None:
    """The error class of a refused Graph call, by Graph's error code where its status says
    too little: a conflict is a 400 ``Request_BadRequest`` carrying ``ObjectConflict`` (or "…
    already exist…"), an id that is no GUID a 400 naming no object."""
    error = _error_of(response)
    code = str(error.get("code") or "")
    message = str(error.get("message") or "")
    details = {str(d.get("code")) for d in error.get("details") or [] if isinstance(d, dict)}
    if code in ("InvalidAuthenticationToken", "Authorization_RequestDenied"):
        return AuthError
    if code == "Request_ResourceNotFound" or message.startswith("Invalid object identifier"):
        return NotFoundError
    if code in _CONFLICT_CODES or details & _CONFLICT_CODES or "already exist" in message:
        return ConflictError
    if code in ("Request_BadRequest", "Request_UnsupportedQuery", "BadRequest"):
        return InvalidRequestError
    return None


def _during() -> dict[str, Any]:
    """The error fields of the Graph call a token was fetched for (``get_token`` outside one)."""
    operation, subject = current_call()
    return {"system": SYSTEM, "operation": operation or "get_token", "subject": subject}


def _token_refused(error: str, description: str, status: int | None, secret: str) -> AuthError:
    """The one mapping of a token endpoint's refusal: its RFC 6749 error and the first line of
    Entra's description (the next lines are trace and correlation ids), never the secret."""
    first = (description or "").splitlines()[0] if description else ""
    text = f"token endpoint refused the client credentials: {error}: {first}".rstrip(": ")
    if secret:
        text = text.replace(secret, "***")
    return AuthError(text, status_code=status, **_during())


class _HttpxClientAuth(ClientAuth, httpx.Auth):  # type: ignore[misc]
    """authlib's client authentication (``client_secret_post``/``_basic``) as an ``httpx.Auth``
    — what authlib's own httpx integration does, without importing it (it warns that its httpx
    support is deprecated)."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        body = request.content.decode()
        url, headers, body = self.prepare(request.method, str(request.url), headers, body)
        yield httpx.Request(request.method, url, headers=headers, content=body.encode())


class _TokenClient(OAuth2Client):  # type: ignore[misc]
    """authlib's OAuth 2.0 client, sending through an ``httpx.Client``."""

    client_auth_class = _HttpxClientAuth


class ClientCredentials(httpx.Auth):
    """Bearer tokens of the client credentials grant, for every Graph call: fetched on first
    use, fetched again ``leeway`` seconds before expiry, and once more after a 401 on a token
    still thought valid. Thread-safe; no secret or token in its repr.

    Args:
        token_url: the tenant's token endpoint (``…/<tenant>/oauth2/v2.0/token``).
        client_id: the app registration's application (client) id.
        client_secret: its secret.
        session: the ``httpx.Client`` the token requests go through.
        scope: what the token is for (Graph's ``.default``: the app's granted permissions).
        leeway: seconds before expiry at which a new token is fetched.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        session: httpx.Client,
        scope: str = GRAPH_SCOPE,
        leeway: int = TOKEN_LEEWAY_S,
    ) -> None:
        self.token_url = token_url
        self._secret = client_secret.get_secret_value()
        self._oauth = _TokenClient(
            session,
            client_id=client_id,
            client_secret=self._secret,
            token_endpoint_auth_method="client_secret_post",
            scope=scope,
            leeway=leeway,
            token_endpoint=token_url,
            grant_type="client_credentials",
        )
        self._oauth.register_compliance_hook("access_token_response", self._checked)
        self._lock = threading.Lock()
        self.fetched = 0  # tokens fetched so far (tests and benchmarks read it)

    def __repr__(self) -> str:
        return f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r})"

    @property
    def client_id(self) -> str:
        return str(self._oauth.client_id)

    @property
    def expires_at(self) -> int | None:
        """When the current token expires (epoch seconds), or ``None`` before the first."""
        token = self._oauth.token
        return int(token["expires_at"]) if token and token.get("expires_at") else None

    def expire(self, at: int = 0) -> None:
        """Treat the current token as expiring at ``at`` (epoch seconds), so the next call
        fetches a new one: what the passing of time does, for a test that cannot wait it."""
        if self._oauth.token:
            self._oauth.token["expires_at"] = at

    def _checked(self, response: httpx.Response) -> httpx.Response:
        """The token endpoint's answer before authlib parses it: throttled or failing is
        transient (retried, honouring its Retry-After); any other refusal is mapped here, as
        authlib refuses Entra's multi-line ``error_description`` (trace ids on their own lines)."""
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(
                "token endpoint unavailable",
                status_code=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                **_during(),
            )
        if status >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            raise _token_refused(
                str(body.get("error") or "refused"),
                str(body.get("error_description") or ""),
                status,
                self._secret,
            )
        return response

    def _fetch(self) -> str:
        try:
            self._oauth.fetch_token(self.token_url, grant_type="client_credentials")
        except OAuth2Error as exc:  # an error in a 200 answer
            raise _token_refused(
                str(exc.error), str(exc.description or ""), 200, self._secret
            ) from None  # authlib's exception adds nothing to the mapped one
        except httpx.TimeoutException as exc:
            raise TransientError("token endpoint timed out", **_during()) from exc
        except httpx.TransportError as exc:
            msg = f"token endpoint unreachable ({type(exc).__name__})"
            raise TransientError(msg, **_during()) from exc
        except ValueError as exc:  # authlib: a 200 whose body is not a JSON object
            raise PermanentError("token endpoint answered without a token", **_during()) from exc
        self.fetched += 1
        return str(self._oauth.token["access_token"])

    def token(self, *, refused: str | None = None) -> str:
        """A valid access token: the current one, unless it expires within the leeway or is
        the ``refused`` one (then a new one; a thread that already renewed it is not repeated).
        """
        with self._lock:
            current = self._oauth.token
            if (
                not current
                or current.is_expired(leeway=self._oauth.leeway)
                or current.get("access_token") == refused
            ):
                return self._fetch()
            return str(current["access_token"])

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self.token()
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code == 401:
            # Revoked, or expired by Graph's clock before ours: one new token, one more try.
            request.headers["Authorization"] = f"Bearer {self.token(refused=used)}"
            yield request


def _to_user(u: dict[str, Any]) -> IdpUser:
    upn = str(u.get("userPrincipalName") or "")
    mail = str(u.get("mail") or "").lower()
    smtp = [
        p.split(":", 1)[1] for p in u.get("proxyAddresses") or [] if p.lower().startswith("smtp:")
    ]
    others = [str(m) for m in u.get("otherMails") or []]
    emails = tuple(dict.fromkeys(e.lower() for e in [mail, *others, *smtp] if "@" in e))
    email = mail or (upn.lower() if "@" in upn else (emails[0] if emails else None))
    return IdpUser(
        id=str(u["id"]),
        user_name=upn,
        email=email or None,
        given_name=str(u.get("givenName") or ""),
        family_name=str(u.get("surname") or ""),
        active=u.get("accountEnabled") is not False,
        emails=emails,
    )


def _to_group(g: dict[str, Any], members: tuple[str, ...] = ()) -> IdpGroup:
    return IdpGroup(id=str(g["id"]), name=str(g.get("displayName") or ""), members=members)


def _updated(**detail: Any) -> WriteResult:
    return WriteResult(effect=Effect.UPDATED, detail=detail)


class GraphIdp(MappedGroups):
    """Entra ID through Microsoft Graph; implements ``UserDirectory``, ``GroupMembership`` and
    ``SessionControl``.

    Args:
        settings: ``idp_url`` (Graph's root, ``https://graph.microsoft.com/v1.0``),
            ``idp_token_url``, ``idp_client_id``, ``idp_client_secret``,
            ``idp_rate_per_minute``; read from the environment when not given.
        base_url, token_url, client_id, client_secret: override the settings.
        client: an ``httpx.Client`` to send through (e.g. a Starlette TestClient, in-process).
        limiter: a rate limiter instead of the one in use of this URL (connectors/rate.py).
        page_size: the ``$top`` asked for per page (at most 999).
        attempts: tries per call while the errors are transient.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        client: httpx.Client | None = None,
        limiter: Limiter | None = None,
        page_size: int = MAX_TOP,
        attempts: int = 6,
    ) -> None:
        if settings is None and None in (base_url, token_url, client_id, client_secret):
            settings = Settings(idp_kind="entra")
        url = base_url or (settings.idp_url if settings else "")
        secret = client_secret if client_secret is not None else settings.idp_client_secret  # type: ignore[union-attr]
        if not isinstance(secret, SecretStr):
            secret = SecretStr(secret)
        self.page_size = max(1, min(page_size, MAX_TOP))
        session = client or new_client(15.0)
        self.credentials = ClientCredentials(
            token_url=token_url or (settings.idp_token_url if settings else ""),
            client_id=client_id if client_id is not None else settings.idp_client_id,  # type: ignore[union-attr]
            client_secret=secret,
            session=session,
        )
        self.http = HttpApi(
            system=SYSTEM,
            backend="idp",
            base_url=url,
            headers={"Accept": "application/json"},
            per_minute=settings.idp_rate_per_minute if settings else None,
            client=session,
            limiter=limiter,
            attempts=attempts,
            auth=self.credentials,
            classify=_classify,
        )
        self._origin = urlsplit(self.http.base_url)[:2]

    def __repr__(self) -> str:
        return f"GraphIdp(base_url={self.http.base_url!r})"

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    # ------------------------------------------------------------------ wire
    def _json(self, method: str, path: str, operation: str, subject: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, operation=operation, subject=subject, **kw)
        return json_body(resp, system=SYSTEM, operation=operation, subject=subject)

    def _pages(
        self,
        path: str,
        operation: str,
        subject: str,
        params: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection: ``$top`` a page, then each ``@odata.nextLink`` as given
        (its query carries the filter and the skip token) until there is none."""
        url: str | None = path
        query: dict[str, Any] | None = {"$top": self.page_size, **params}
        while url is not None:
            body = self._json("GET", url, operation, subject, params=query, headers=headers)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise PermanentError(
                    "not a Graph collection", system=SYSTEM, operation=operation, subject=subject
                )
            yield from (v for v in body["value"] if isinstance(v, dict))
            url, query = body.get("@odata.nextLink"), None
            if url is not None and urlsplit(url)[:2] != self._origin:
                # The bearer token goes to Graph's own host only.
                raise PermanentError(
                    f"next page link leaves {self.http.base_url}",
                    system=SYSTEM,
                    operation=operation,
                    subject=subject,
                )

    def _user(self, user_id: str, operation: str, fields: str = USER_FIELDS) -> dict[str, Any]:
        path = f"/users/{quote(user_id, safe='@')}"
        body = self._json("GET", path, operation, user_id, params={"$select": fields})
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("not a Graph user", system=SYSTEM, operation=operation)
        return body

    def _group(self, group_id: str, operation: str) -> dict[str, Any]:
        if not _is_guid(group_id):
            # Graph's ids are GUIDs: any other names no group (Graph answers 400 for it).
            raise NotFoundError(
                "no such group", system=SYSTEM, operation=operation, subject=group_id
            )
        path = f"/groups/{group_id}"
        body = self._json("GET", path, operation, group_id, params={"$select": GROUP_FIELDS})
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("not a Graph group", system=SYSTEM, operation=operation)
        return body

    def _members(self, group_id: str, operation: str) -> tuple[str, ...]:
        path = f"/groups/{group_id}/members"
        found = self._pages(path, operation, group_id, {"$select": "id"})
        return tuple(str(m["id"]) for m in found if "id" in m)

    def _users(
        self, filter_: str, operation: str, subject: str, *, eventual: bool = False
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"$filter": filter_, "$select": USER_FIELDS}
        if eventual:
            params["$count"] = "true"
        return list(
            self._pages("/users", operation, subject, params, _EVENTUAL if eventual else None)
        )

    # ------------------------------------------------------------------ users
    def get_user(self, user_id: str) -> IdpUser:
        """The user with this object id (or userPrincipalName).

        Raises:
            NotFoundError: no such user.
        """
        return _to_user(self._user(user_id, "get_user"))

    def iter_users(self) -> Iterator[IdpUser]:
        """Every user of the tenant, page by page."""
        for u in self._pages("/users", "list_users", "all", {"$select": USER_FIELDS}):
            yield _to_user(u)

    def find_user(self, email: str) -> IdpUser | None:
        """The user whose userPrincipalName, or else whose mail, otherMails or SMTP
        proxyAddresses, is ``email`` (case-insensitive, as Graph compares them).

        Returns:
            The user, or None when the tenant knows no one by that address.

        Raises:
            ConflictError: no userPrincipalName matches and several users carry the address.
        """
        key = email.strip().lower()
        lit = _literal(key)
        by_upn = self._users(f"userPrincipalName eq {lit}", "find_user", key)
        # Graph's filter decides; checking again guards against a server that ignores it.
        hits = [u for u in by_upn if str(u.get("userPrincipalName") or "").lower() == key]
        if hits:
            return _to_user(hits[0])  # userPrincipalName is unique in a tenant
        # `or` across multi-valued properties: sent in the advanced mode, which serves it.
        by_mail = self._users(
            f"mail eq {lit} or otherMails/any(m:m eq {lit}) "
            f"or proxyAddresses/any(p:p eq {_literal('smtp:' + key)})",
            "find_user",
            key,
            eventual=True,
        )
        found = {u["id"]: u for u in by_mail if key in _to_user(u).emails}
        if len(found) > 1:
            raise ConflictError(
                f"{len(found)} users have this address",
                system=SYSTEM,
                operation="find_user",
                subject=key,
            )
        return _to_user(next(iter(found.values()))) if found else None

    def create_user(
        self, *, email: str, given_name: str = "", family_name: str = "", active: bool = True
    ) -> tuple[WriteResult, IdpUser]:
        """Create the user (userPrincipalName and mail ``email``), unless one exists. Graph
        requires a password: a random one, to be changed at first sign-in (people sign in
        through the organisation's SSO); it is never kept nor logged.

        Returns:
            ``created`` and the new user, or ``noop("exists")`` and the user already there.

        Raises:
            ConflictError: Graph refused for another reason (or several users have the email).
        """
        key = email.strip().lower()
        existing = self.find_user(key)
        if existing is not None:
            return WriteResult.noop("exists", id=existing.id), existing
        local = key.split("@", 1)[0]
        nickname = "".join(c for c in local if c.isalnum() or c in "._-")[:64] or "user"
        payload = {
            "accountEnabled": active,
            "displayName": f"{given_name} {family_name}".strip() or key,
            "mailNickname": nickname,
            "userPrincipalName": key,
            "mail": key,
            "passwordProfile": {
                "forceChangePasswordNextSignIn": True,
                "password": secrets.token_urlsafe(24) + "aA1!",
            },
            **({"givenName": given_name} if given_name else {}),
            **({"surname": family_name} if family_name else {}),
        }
        try:
            body = self._json("POST", "/users", "create_user", key, json=payload)
        except ConflictError:
            # Created meanwhile (a concurrent run): the write converged.
            existing = self.find_user(key)
            if existing is None:
                raise
            return WriteResult.noop("exists", id=existing.id), existing
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("not a Graph user", system=SYSTEM, operation="create_user")
        user = _to_user({"accountEnabled": active, **body})
        return WriteResult(effect=Effect.CREATED, detail={"id": user.id}), user

    def set_active(self, user_id: str, active: bool) -> WriteResult:
        """Enable or disable sign-in (``PATCH accountEnabled``).

        Returns:
            ``updated``, or ``noop`` when the user is already so.

        Raises:
            NotFoundError: no such user.
        """
        return self._set_active(_to_user(self._user(user_id, "set_active")), active)

    def _set_active(self, user: IdpUser, active: bool) -> WriteResult:
        if user.active is active:
            return WriteResult.noop("already active" if active else "already inactive", id=user.id)
        self.http.request(
            "PATCH",
            f"/users/{user.id}",
            json={"accountEnabled": active},
            operation="set_active",
            subject=user.user_name,
        )
        return _updated(id=user.id, active=active)

    def deactivate(self, email: str) -> WriteResult:
        """Disable the user with this address: they can no longer sign in anywhere.

        Returns:
            ``updated``; ``noop`` when already disabled or unknown to the tenant.
        """
        user = self.find_user(email)
        if user is None:
            return WriteResult.noop("no such user")
        return self._set_active(user, False)

    # ------------------------------------------------------------------ groups
    def get_group(self, group_id: str) -> IdpGroup:
        """The group with this object id, with its members' ids.

        Raises:
            NotFoundError: no such group.
        """
        group = self._group(group_id, "get_group")
        return _to_group(group, self._members(str(group["id"]), "get_group"))

    def list_groups(self) -> list[IdpGroup]:
        """Every group with its members' ids, page by page (members read per group: Graph's
        ``$expand=members`` stops at 20)."""
        found = list(self._pages("/groups", "list_groups", "all", {"$select": GROUP_FIELDS}))
        return [_to_group(g, self._members(str(g["id"]), "list_groups")) for g in found]

    def find_group(self, name: str) -> IdpGroup | None:
        """The group with this displayName (case-insensitive; an exact match wins).

        Raises:
            ConflictError: several groups differ from ``name`` only in case.
        """
        params = {"$filter": f"displayName eq {_literal(name)}", "$select": GROUP_FIELDS}
        found = self._pages("/groups", "find_group", name, params)
        hits = [g for g in found if str(g.get("displayName") or "").lower() == name.lower()]
        exact = [g for g in hits if g.get("displayName") == name]
        if len(exact) == 1 or len(hits) == 1:
            group = (exact or hits)[0]
            return _to_group(group, self._members(str(group["id"]), "find_group"))
        if hits:
            raise ConflictError(
                f"{len(hits)} groups are named so",
                system=SYSTEM,
                operation="find_group",
                subject=name,
            )
        return None

    def groups_of(self, user_id: str) -> list[IdpGroup]:
        """The groups a user is a direct member of (``memberOf`` cast to groups, which Graph
        serves as an advanced query). Their ``members`` are left empty.

        Raises:
            NotFoundError: no such user.
        """
        path = f"/users/{quote(user_id, safe='@')}/memberOf/microsoft.graph.group"
        params = {"$select": GROUP_FIELDS, "$count": "true"}
        return [_to_group(g) for g in self._pages(path, "groups_of", user_id, params, _EVENTUAL)]

    def add_to_group(self, group_id: str, user_id: str) -> WriteResult:
        """Add a user to a group (``POST /groups/{id}/members/$ref``).

        Returns:
            ``updated``, or ``noop("already a member")`` (Graph's 400 "One or more added
            object references already exist").

        Raises:
            NotFoundError: no such group (or user).
        """
        group = self._group(group_id, "add_to_group")
        name = str(group.get("displayName") or "")
        ref = {"@odata.id": f"{self.http.base_url}/directoryObjects/{user_id}"}
        try:
            self.http.request(
                "POST",
                f"/groups/{group_id}/members/$ref",
                json=ref,
                operation="add_to_group",
                subject=user_id,
            )
        except ConflictError:
            return WriteResult.noop("already a member", group=name)
        return _updated(group=name, added=user_id)

    def remove_from_group(self, group_id: str, user_id: str) -> WriteResult:
        """Remove a user from a group (``DELETE /groups/{id}/members/{uid}/$ref``).

        Returns:
            ``updated``, or ``noop`` when they are not a member (Graph's 404) or the group is
            gone.
        """
        try:
            name = str(self._group(group_id, "remove_from_group").get("displayName") or "")
        except NotFoundError:
            return WriteResult.noop("no such group", group=group_id)
        try:
            self.http.request(
                "DELETE",
                f"/groups/{group_id}/members/{quote(user_id, safe='')}/$ref",
                operation="remove_from_group",
                subject=user_id,
            )
        except NotFoundError:
            return WriteResult.noop("not a member", group=name)
        return _updated(group=name, removed=user_id)

    # ------------------------------------------------------------------ sessions
    def end_sessions(self, user_id: str) -> WriteResult:
        """Revoke every sign-in session and refresh token of the user
        (``revokeSignInSessions``: Graph resets ``signInSessionsValidFromDateTime`` to now).

        Returns:
            ``updated`` (Graph cannot say how many sessions there were), with
            ``sessions_valid_from``: the user's ``signInSessionsValidFromDateTime`` read back
            after the revocation, Graph's own time, which the verification compares a later
            read with (our clock's time of the call could fall a second after Graph's and fail
            a revocation that happened).

        Raises:
            NotFoundError: no such user.
        """
        path = f"/users/{quote(user_id, safe='@')}/revokeSignInSessions"
        body = self._json("POST", path, "end_sessions", user_id)
        if not isinstance(body, dict) or body.get("value") is not True:
            raise PermanentError(
                "revokeSignInSessions did not answer true",
                system=SYSTEM,
                operation="end_sessions",
                subject=user_id,
            )
        user = self._user(user_id, "end_sessions", "id,signInSessionsValidFromDateTime")
        valid_from = user.get("signInSessionsValidFromDateTime")
        return _updated(id=user_id, **({"sessions_valid_from": valid_from} if valid_from else {}))

    def sessions_ended_since(self, user_id: str, when: datetime) -> bool:
        """Whether Graph's ``signInSessionsValidFromDateTime`` of the user is at or after
        ``when`` (compared to the second, Graph's precision): every session and refresh token
        issued before it is then invalid.

        Raises:
            NotFoundError: no such user.
        """
        body = self._user(user_id, "sessions_ended_since", "id,signInSessionsValidFromDateTime")
        raw = body.get("signInSessionsValidFromDateTime")
        if not raw:
            return False
        try:
            valid_from = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError as exc:
            raise PermanentError(
                f"signInSessionsValidFromDateTime {raw!r} is not a date",
                system=SYSTEM,
                operation="sessions_ended_since",
                subject=user_id,
            ) from exc
        if valid_from.tzinfo is None:
            valid_from = valid_from.replace(tzinfo=UTC)
        since = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return valid_from.replace(microsecond=0) >= since.replace(microsecond=0)
