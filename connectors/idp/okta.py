"""The identity provider over Okta's Management API (``/api/v1``): users, groups, lifecycle and
sessions, with the same semantics as the generic SCIM connector (:mod:`connectors.idp.scim`).

What Okta documents and this module follows:

- **Auth**: an API token (``Authorization: SSWS <token>``), or an OAuth 2.0 service app — the
  client credentials grant at the org authorization server (``/oauth2/v1/token``), the client
  authenticated by ``private_key_jwt`` (the only method Okta accepts for Okta-scoped tokens),
  asking for ``okta.users.manage okta.groups.manage`` (``okta.users.manage`` also covers
  ``DELETE /api/v1/users/{id}/sessions``). The client assertion is signed by authlib's
  ``PrivateKeyJWT`` (RFC 7523) and the token kept as authlib's ``OAuth2Token``; it is fetched
  before the first call and again a minute before it expires (:class:`ServiceAppAuth`).
- **Paging**: ``limit`` and the ``Link: <…>; rel="next"`` header (an ``after`` cursor), followed
  only while it points under the configured org URL (the token never goes elsewhere).
- **Rate limits**: ``X-Rate-Limit-Limit/-Remaining/-Reset`` on every answer; a 429 (``E0000047``)
  is retried no sooner than ``X-Rate-Limit-Reset`` (:func:`connectors.http.retry_after_of`).
- **Errors**: ``{errorCode, errorSummary, errorCauses[{errorSummary}]}``, mapped once by
  :func:`okta_error` (by error code first, then status); the message is Okta's own summary.
- **Lifecycle**: ``status`` is one of STAGED, PROVISIONED, ACTIVE, RECOVERY, PASSWORD_EXPIRED,
  LOCKED_OUT, SUSPENDED, DEPROVISIONED; a user is ``active`` in the states whose account is
  enabled (:data:`ACTIVE_STATUSES`), and transitions go through ``/lifecycle/<operation>``.
- Listing users without a filter leaves out DEPROVISIONED users, so :meth:`OktaIdp.iter_users`
  asks for those separately; ``BUILT_IN`` groups (Everyone) are nobody's to change and are left
  out of every group listing.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey
from pydantic import SecretStr

from connectors.errors import (
    AuthError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    TransientError,
    Where,
    error_for_status,
)
from connectors.http import HttpApi, json_body, retry_after_of
from connectors.idp.common import MappedGroups
from connectors.rate import Limiter
from connectors.settings import Settings, SettingsError
from domain.models import Effect, IdpGroup, IdpUser, WriteResult

SYSTEM = "idp"
API = "/api/v1"
# The scopes a service app needs here (Okta's "OAuth 2.0 scopes" of each endpoint).
SCOPES = ("okta.users.manage", "okta.groups.manage")
# Statuses whose account is enabled: the person can sign in (or finish signing up, PROVISIONED;
# or is only locked out for a while). Offboarding must still deactivate each of them.
ACTIVE_STATUSES = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"})
_MAX_PAGE = 200  # Okta's largest page of users
_NOT_FOUND = {"E0000007", "E0000008"}
_STATE_CONFLICT = {"E0000016", "E0000038"}  # already active; not allowed in the current status
_AUTH = {"E0000004", "E0000005", "E0000006", "E0000011", "E0000015"}
_TRANSIENT = {"E0000009", "E0000010", "E0000047"}
_OAUTH_REFUSED = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"}


def _summary(body: Any) -> tuple[str, str]:
    """Okta's error code and its words (summary and causes), or an OAuth error's."""
    if not isinstance(body, dict):
        return "", ""
    if body.get("errorCode"):
        causes = [
            str(c["errorSummary"])
            for c in body.get("errorCauses") or []
            if isinstance(c, dict) and c.get("errorSummary")
        ]
        words = "; ".join([str(body.get("errorSummary") or ""), *causes]).strip("; ")
        return str(body["errorCode"]), words
    if body.get("error"):  # an OAuth 2.0 error of the token endpoint (RFC 6749 §5.2)
        described = f": {body['error_description']}" if body.get("error_description") else ""
        return str(body["error"]), f"{body['error']}{described}"
    return "", ""


def okta_error(
    response: httpx.Response, where: Where, *, secrets: Sequence[str] = ()
) -> ConnectorError:
    """The one mapping of an Okta error answer to the connectors' error tree: by Okta's error
    code first (a 400 ``E0000001`` "already exists" is a conflict, a 403 ``E0000038`` a state
    conflict rather than a refusal), then by status. The message is Okta's summary and causes,
    with any of ``secrets`` blanked out should an answer ever echo one."""
    status = response.status_code
    try:
        code, words = _summary(response.json())
    except ValueError:
        code, words = "", ""
    message = (f"{code} {words}" if code and code not in words else words) or (
        response.text or response.reason_phrase
    )
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = message[:500]
    if status == 429 or status >= 500 or code in _TRANSIENT:
        return TransientError(
            message, status_code=status, retry_after=retry_after_of(response), **where
        )
    cls: type[PermanentError] | None = None
    if code in _NOT_FOUND:
        cls = NotFoundError
    elif code in _STATE_CONFLICT or (code == "E0000001" and "already exist" in message.lower()):
        cls = ConflictError
    elif code in _AUTH or code in _OAUTH_REFUSED:
        cls = AuthError
    if cls is None:
        return error_for_status(status, message, **where)
    return cls(message, status_code=status, **where)


def _private_key(text: str) -> Key:
    """The service app's private key: a JWK (JSON, as Okta's console generates it) or PEM."""
    try:
        if text.lstrip().startswith("{"):
            return JWKRegistry.import_key(json.loads(text))
        for kind in (RSAKey, ECKey, OKPKey):
            try:
                return kind.import_key(text)
            except (JoseError, ValueError, TypeError):
                continue
    except (JoseError, ValueError, TypeError) as exc:
        raise SettingsError("HANDOVER_IDP_PRIVATE_KEY is not a private JWK") from exc
    raise SettingsError("HANDOVER_IDP_PRIVATE_KEY is neither a private JWK nor a PEM key")


class ServiceAppAuth(httpx.Auth):
    """OAuth 2.0 for Okta as an ``httpx.Auth``: a bearer token from the client credentials grant,
    the client authenticated with ``private_key_jwt`` (authlib signs the assertion: ``iss`` =
    ``sub`` = the client id, ``aud`` = the token URL, a fresh ``jti``, ``exp`` within the hour).

    The token request goes through the same client as the API call it precedes (in-process or
    over the network alike). A token is fetched before the first call and again ``leeway``
    seconds before it expires; a 401 with a token fetched earlier (revoked, or the server
    forgot it) fetches a new one once and repeats the call.

    Args:
        client_id: the service app's client id.
        private_key: its private key (JWK JSON or PEM); ``kid`` is sent when the JWK has one.
        token_url: the org authorization server's token endpoint.
        scopes: the scopes asked for.
        leeway: seconds before expiry at which the token is renewed.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str | SecretStr,
        token_url: str,
        scopes: Sequence[str] = SCOPES,
        leeway: int = 60,
    ) -> None:
        secret = (
            private_key.get_secret_value() if isinstance(private_key, SecretStr) else private_key
        )
        key = _private_key(secret)
        alg = "ES256" if isinstance(key, ECKey) else "EdDSA" if isinstance(key, OKPKey) else "RS256"
        header = {"kid": key.kid} if key.kid else None
        self._client = ClientAuth(client_id, key, PrivateKeyJWT(token_url, headers=header, alg=alg))
        self.client_id, self.token_url, self.scope = client_id, token_url, " ".join(scopes)
        self.leeway = leeway
        self._token: OAuth2Token | None = None
        self.fetched = 0  # tokens fetched so far

    def __repr__(self) -> str:  # never the key nor the token
        return f"ServiceAppAuth(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def _token_request(self) -> httpx.Request:
        body = prepare_token_request("client_credentials", scope=self.scope)
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        url, headers, body = self._client.prepare("POST", self.token_url, headers, body)
        return httpx.Request("POST", url, headers=headers, content=body)

    def _accept(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            where: Where = {"system": SYSTEM, "operation": "get_token", "subject": self.client_id}
            raise okta_error(response, where)
        try:
            token = OAuth2Token.from_dict(response.json())
            access = str(token["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            msg = "the token endpoint answered no access_token"
            raise PermanentError(msg, system=SYSTEM, operation="get_token") from exc
        self._token, self.fetched = token, self.fetched + 1
        return access

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token, fresh = self._token, False
        if token is None or token.is_expired(leeway=self.leeway) is not False:
            access, fresh = self._accept((yield self._token_request())), True
        else:
            access = str(token["access_token"])
        request.headers["Authorization"] = f"Bearer {access}"
        response = yield request
        if response.status_code == 401 and not fresh:
            access = self._accept((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {access}"
            yield request


def _to_user(body: dict[str, Any]) -> IdpUser:
    profile = body.get("profile") or {}
    login = str(profile.get("login") or "")
    found = [str(profile[k]).lower() for k in ("email", "secondEmail") if profile.get(k)]
    emails = tuple(dict.fromkeys(found))
    email = emails[0] if emails else login.lower() if "@" in login else None
    status = str(body.get("status") or "")
    return IdpUser(
        id=str(body["id"]),
        user_name=login,
        email=email,
        given_name=str(profile.get("firstName") or ""),
        family_name=str(profile.get("lastName") or ""),
        active=status in ACTIVE_STATUSES,
        emails=emails,
        status=status,
    )


def _group_name(body: dict[str, Any]) -> str:
    return str((body.get("profile") or {}).get("name") or "")


def _quoted(value: str) -> str:
    """A string literal of Okta's filter and search expressions (quotes escaped)."""
    return json.dumps(value, ensure_ascii=False)


def _updated(**detail: Any) -> WriteResult:
    return WriteResult(effect=Effect.UPDATED, detail=detail)


class OktaIdp(MappedGroups):
    """Okta's Management API; implements ``UserDirectory``, ``GroupMembership`` and
    ``SessionControl``.

    Args:
        settings: ``idp_url`` (the org, ``https://acme.okta.com``), ``idp_token`` (SSWS), or
            ``idp_client_id`` + ``idp_private_key`` (+ ``idp_token_url``) for a service app,
            ``idp_rate_per_minute``; read from the environment when neither it nor
            ``base_url`` is given.
        base_url: the org URL; overrides settings.
        token: an SSWS API token; overrides settings.
        client_id: a service app's client id; with ``private_key``, OAuth is used.
        private_key: the service app's private key (JWK JSON or PEM).
        token_url: the token endpoint (default ``<org>/oauth2/v1/token``).
        scopes: the scopes a service app asks for.
        client: an ``httpx.Client`` to send through (e.g. a Starlette TestClient, in-process).
        limiter: a rate limiter instead of the one in use of this URL (connectors/rate.py).
        page_size: the ``limit`` asked for per page (at most 200).
        attempts: tries per call while the errors are transient.

    Raises:
        SettingsError: neither an SSWS token nor a service app is configured.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        token: str | SecretStr | None = None,
        client_id: str | None = None,
        private_key: str | SecretStr | None = None,
        token_url: str | None = None,
        scopes: Sequence[str] = SCOPES,
        client: httpx.Client | None = None,
        limiter: Limiter | None = None,
        page_size: int = _MAX_PAGE,
        attempts: int = 6,
    ) -> None:
        if settings is None and base_url is None:
            settings = Settings()
        url = (base_url or (settings.idp_url if settings else "")).rstrip("/")
        ssws = token if token is not None else settings.idp_token if settings else ""
        ssws = ssws.get_secret_value() if isinstance(ssws, SecretStr) else ssws
        cid = client_id if client_id is not None else settings.idp_client_id if settings else ""
        key = (
            private_key if private_key is not None else settings.idp_private_key if settings else ""
        )
        key = key.get_secret_value() if isinstance(key, SecretStr) else key
        headers = {"Accept": "application/json"}
        self.auth: ServiceAppAuth | None = None
        if cid and key:
            endpoint = token_url or (settings.idp_token_url if settings else "")
            self.auth = ServiceAppAuth(
                client_id=cid,
                private_key=key,
                token_url=endpoint or f"{url}/oauth2/v1/token",
                scopes=scopes,
            )
        elif ssws:
            headers["Authorization"] = f"SSWS {ssws}"
        else:
            raise SettingsError(
                "Okta needs HANDOVER_IDP_TOKEN (an API token) or a service app: "
                "HANDOVER_IDP_CLIENT_ID and HANDOVER_IDP_PRIVATE_KEY"
            )
        self.page_size = max(1, min(page_size, _MAX_PAGE))
        secrets = (ssws, key)

        def errors(response: httpx.Response, where: Where) -> ConnectorError:
            return okta_error(response, where, secrets=secrets)

        self.http = HttpApi(
            system=SYSTEM,
            backend="idp",
            base_url=url,
            headers=headers,
            per_minute=settings.idp_rate_per_minute if settings else None,
            client=client,
            limiter=limiter,
            attempts=attempts,
            auth=self.auth,
            errors=errors,
        )

    def __repr__(self) -> str:
        how = "service app" if self.auth else "SSWS"
        return f"OktaIdp(base_url={self.http.base_url!r}, auth={how!r})"

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    # ------------------------------------------------------------------ wire
    def _json(self, method: str, path: str, operation: str, subject: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, operation=operation, subject=subject, **kw)
        return self._body(resp, operation, subject)

    @staticmethod
    def _body(resp: httpx.Response, operation: str, subject: str) -> Any:
        return json_body(resp, system=SYSTEM, operation=operation, subject=subject)

    def _next(self, resp: httpx.Response, operation: str, subject: str) -> str | None:
        """The path (under the org URL) of the next page, from the ``Link`` header."""
        link = resp.links.get("next", {}).get("url")
        if not link:
            return None
        base = self.http.base_url
        if not link.startswith(base + "/") or urlsplit(link).netloc != urlsplit(base).netloc:
            msg = "the next page's link points outside the org URL"
            raise PermanentError(msg, system=SYSTEM, operation=operation, subject=subject)
        return link[len(base) :]

    def _pages(
        self, path: str, operation: str, subject: str, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing, page by page, as long as Okta gives a next link."""
        query: dict[str, Any] | None = {"limit": self.page_size, **params}
        next_path: str | None = path
        while next_path is not None:
            resp = self.http.request(
                "GET", next_path, operation=operation, subject=subject, params=query
            )
            items = self._body(resp, operation, subject)
            if not isinstance(items, list):
                msg = "a listing answered something else than a JSON array"
                raise PermanentError(msg, system=SYSTEM, operation=operation, subject=subject)
            yield from (i for i in items if isinstance(i, dict))
            next_path, query = (self._next(resp, operation, subject) if items else None), None

    def _user(self, user_id: str, operation: str) -> dict[str, Any]:
        body = self._json("GET", f"{API}/users/{quote(user_id, safe='')}", operation, user_id)
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("not an Okta user", system=SYSTEM, operation=operation)
        return body

    # ------------------------------------------------------------------ users
    def get_user(self, user_id: str) -> IdpUser:
        """The user with this Okta id (or login).

        Raises:
            NotFoundError: no such user.
        """
        return _to_user(self._user(user_id, "get_user"))

    def iter_users(self) -> Iterator[IdpUser]:
        """Every user, paged through: the listing (which leaves DEPROVISIONED users out, as
        Okta's does), then the DEPROVISIONED users by a status filter."""
        for u in self._pages(f"{API}/users", "list_users", "all"):
            if u.get("status") != "DEPROVISIONED":
                yield _to_user(u)
        deprovisioned = 'status eq "DEPROVISIONED"'
        for u in self._pages(f"{API}/users", "list_users", "all", filter=deprovisioned):
            yield _to_user(u)

    def find_user(self, email: str) -> IdpUser | None:
        """The user whose login, or else whose email or secondEmail, is ``email``
        (case-insensitive): the login by ``GET /api/v1/users/{login}`` (exact and current),
        the emails by a search.

        Returns:
            The user, or None when Okta knows no one by that address.

        Raises:
            ConflictError: no login matches and several users carry the email.
        """
        key = email.strip().lower()
        try:
            user = _to_user(self._user(key, "find_user"))
        except NotFoundError:
            user = None
        if user is not None and user.user_name.lower() == key:
            return user
        search = f"profile.email eq {_quoted(key)} or profile.secondEmail eq {_quoted(key)}"
        found = self._pages(f"{API}/users", "find_user", key, search=search)
        # The server's search decides; checking again guards against one that ignores it.
        hits = [u for u in map(_to_user, found) if key in u.emails]
        if len(hits) > 1:
            msg = f"{len(hits)} users have this email"
            raise ConflictError(msg, system=SYSTEM, operation="find_user", subject=key)
        return hits[0] if hits else None

    def create_user(
        self, *, email: str, given_name: str = "", family_name: str = "", active: bool = True
    ) -> tuple[WriteResult, IdpUser]:
        """Create the user (login and email ``email``), unless one exists: ``POST
        /api/v1/users?activate=true`` (Okta emails the activation link; the user waits in
        PROVISIONED until they follow it), or ``activate=false`` (STAGED) when not ``active``.
        Okta's default profile requires firstName and lastName: a name not given is the
        address's local part.

        Returns:
            ``created`` and the new user, or ``noop("exists")`` and the user already there.

        Raises:
            ConflictError: several users have the email.
            InvalidRequestError: Okta refused the profile (its causes in the message).
        """
        key = email.strip().lower()
        existing = self.find_user(key)
        if existing is not None:
            return WriteResult.noop("exists", id=existing.id), existing
        local = key.partition("@")[0]
        profile = {
            "login": key,
            "email": key,
            "firstName": given_name or local,
            "lastName": family_name or local,
        }
        params = {"activate": "true" if active else "false"}
        try:
            body = self._json(
                "POST", f"{API}/users", "create_user", key, params=params, json={"profile": profile}
            )
        except ConflictError:
            # Created meanwhile (a concurrent run): the write converged.
            existing = self.find_user(key)
            if existing is None:
                raise
            return WriteResult.noop("exists", id=existing.id), existing
        new = _to_user(body)
        return WriteResult(effect=Effect.CREATED, detail={"id": new.id}), new

    def set_active(self, user_id: str, active: bool) -> WriteResult:
        """Activate or deactivate a user through Okta's lifecycle operations, as the status
        requires: ``activate`` (STAGED, DEPROVISIONED), ``unsuspend`` (SUSPENDED); ``deactivate``
        from any status but DEPROVISIONED — a SUSPENDED or STAGED user cannot sign in, but an
        admin could restore them in one click, so they are deactivated too.

        Returns:
            ``updated`` (``from``: the status before), or ``noop`` when already so.

        Raises:
            NotFoundError: no such user.
            ConflictError: Okta refused the transition in the user's current status.
        """
        return self._set_active(self._user(user_id, "set_active"), active)

    def _set_active(self, body: dict[str, Any], active: bool) -> WriteResult:
        user = _to_user(body)
        if active and user.active:
            return WriteResult.noop("already active", id=user.id, status=user.status)
        if not active and user.status == "DEPROVISIONED":
            return WriteResult.noop("already inactive", id=user.id, status=user.status)
        if active:
            operation = "unsuspend" if user.status == "SUSPENDED" else "activate"
        else:
            operation = "deactivate"
        path = f"{API}/users/{quote(user.id, safe='')}/lifecycle/{operation}"
        self.http.request("POST", path, operation="set_active", subject=user.user_name)
        return _updated(id=user.id, active=active, **{"from": user.status, "via": operation})

    def deactivate(self, email: str) -> WriteResult:
        """Deactivate the user with this email: they can no longer sign in anywhere.

        Returns:
            ``updated``; ``noop`` when already DEPROVISIONED or unknown to Okta.
        """
        user = self.find_user(email)
        if user is None:
            return WriteResult.noop("no such user")
        return self._set_active(self._user(user.id, "deactivate"), False)

    # ------------------------------------------------------------------ sessions
    def end_sessions(self, user_id: str) -> WriteResult:
        """Clear the user's sessions (``DELETE /api/v1/users/{id}/sessions?oauthTokens=true``):
        every Okta session ends and the OAuth and OpenID Connect tokens Okta issued them are
        revoked. Okta does not say how many there were, so it is always ``updated``.

        Raises:
            NotFoundError: no such user.
        """
        path = f"{API}/users/{quote(user_id, safe='')}/sessions"
        self.http.request(
            "DELETE",
            path,
            operation="end_sessions",
            subject=user_id,
            params={"oauthTokens": "true"},
        )
        return _updated(id=user_id, sessions="ended", oauth_tokens="revoked")

    def sessions_ended_since(self, user_id: str, when: datetime) -> bool | None:
        """Always ``None``: Okta's Management API has no read of a user's sessions (its Sessions
        API reads one session by its id, and the MyAccount API only the caller's own), so
        whether they ended cannot be read back; :meth:`end_sessions`'s 204 is the evidence."""
        return None

    # ------------------------------------------------------------------ groups
    def _group(self, group_id: str, operation: str) -> dict[str, Any]:
        body = self._json("GET", f"{API}/groups/{quote(group_id, safe='')}", operation, group_id)
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("not an Okta group", system=SYSTEM, operation=operation)
        return body

    def _members(self, group_id: str, operation: str) -> tuple[str, ...]:
        path = f"{API}/groups/{quote(group_id, safe='')}/users"
        return tuple(str(u["id"]) for u in self._pages(path, operation, group_id) if "id" in u)

    def _groups(
        self, path: str, operation: str, subject: str, *, members: bool, **params: Any
    ) -> list[IdpGroup]:
        return [
            IdpGroup(
                id=str(g["id"]),
                name=_group_name(g),
                members=self._members(str(g["id"]), operation) if members else (),
            )
            for g in self._pages(path, operation, subject, **params)
            if "id" in g and g.get("type") != "BUILT_IN"
        ]

    def get_group(self, group_id: str) -> IdpGroup:
        """The group with this Okta id, with its members' ids.

        Raises:
            NotFoundError: no such group.
        """
        g = self._group(group_id, "get_group")
        return IdpGroup(
            id=str(g["id"]), name=_group_name(g), members=self._members(g["id"], "get_group")
        )

    def list_groups(self) -> list[IdpGroup]:
        """Every group (but Everyone) with its members' ids, paged through."""
        return self._groups(f"{API}/groups", "list_groups", "all", members=True)

    def find_group(self, name: str) -> IdpGroup | None:
        """The group with this name (case-insensitive; an exact match wins), found by Okta's
        name prefix search (``q``).

        Raises:
            ConflictError: several groups differ from ``name`` only in case.
        """
        found = self._groups(f"{API}/groups", "find_group", name, members=False, q=name)
        hits = [g for g in found if g.name.lower() == name.lower()]
        exact = [g for g in hits if g.name == name]
        if len(exact) == 1 or len(hits) == 1:
            return self.get_group((exact or hits)[0].id)
        if hits:
            msg = f"{len(hits)} groups are named so"
            raise ConflictError(msg, system=SYSTEM, operation="find_group", subject=name)
        return None

    def groups_of(self, user_id: str) -> list[IdpGroup]:
        """The groups a user is in (``GET /api/v1/users/{id}/groups``), members left empty.

        Raises:
            NotFoundError: no such user.
        """
        path = f"{API}/users/{quote(user_id, safe='')}/groups"
        return self._groups(path, "groups_of", user_id, members=False)

    def add_to_group(self, group_id: str, user_id: str) -> WriteResult:
        """Add a user to a group (``PUT /api/v1/groups/{gid}/users/{uid}``).

        Returns:
            ``updated``, or ``noop("already a member")``.

        Raises:
            NotFoundError: no such group or user.
        """
        name = _group_name(self._group(group_id, "add_to_group"))
        if any(g.id == group_id for g in self._groups_of(user_id, "add_to_group")):
            return WriteResult.noop("already a member", group=name)
        path = f"{API}/groups/{quote(group_id, safe='')}/users/{quote(user_id, safe='')}"
        self.http.request("PUT", path, operation="add_to_group", subject=user_id)
        return _updated(group=name, added=user_id)

    def _groups_of(self, user_id: str, operation: str) -> list[IdpGroup]:
        path = f"{API}/users/{quote(user_id, safe='')}/groups"
        return self._groups(path, operation, user_id, members=False)

    def remove_from_group(self, group_id: str, user_id: str) -> WriteResult:
        """Remove a user from a group (``DELETE /api/v1/groups/{gid}/users/{uid}``).

        Returns:
            ``updated``, or ``noop`` when they are not a member (or not a user) or the group
            is gone.
        """
        try:
            name = _group_name(self._group(group_id, "remove_from_group"))
        except NotFoundError:
            return WriteResult.noop("no such group", group=group_id)
        try:
            member = any(g.id == group_id for g in self._groups_of(user_id, "remove_from_group"))
        except NotFoundError:
            member = False
        if not member:
            return WriteResult.noop("not a member", group=name)
        path = f"{API}/groups/{quote(group_id, safe='')}/users/{quote(user_id, safe='')}"
        try:
            self.http.request("DELETE", path, operation="remove_from_group", subject=user_id)
        except NotFoundError:
            return WriteResult.noop("no such group", group=name)
        return _updated(group=name, removed=user_id)
