"""What the intake's browser pages share (the rotated-secret page and the console): signed,
expiring cookie values, the security headers of every page, and CSRF tokens bound to a session.

A cookie value is ``base64(json).base64(HMAC-SHA256)`` under a key derived from
``HANDOVER_SECRETS_KEY`` (one derivation per purpose: a sign-in cookie is never a session). A
CSRF token is an HMAC of the session's own random id and what the form acts on, so a token taken
from one person's page is worth nothing in another session or on another object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from starlette.responses import Response

# Every browser page: never cached, never framed, never sends a Referer (links carry ids).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Signer:
    """Signed, expiring cookie values: ``base64(json).base64(HMAC-SHA256)``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dump(self, payload: dict[str, Any], *, now: float, ttl: int) -> str:
        body = base64.urlsafe_b64encode(json.dumps({**payload, "exp": int(now) + ttl}).encode())
        return f"{body.decode()}.{base64.urlsafe_b64encode(self._mac(body)).decode()}"

    def load(self, value: str | None, *, now: float) -> dict[str, Any] | None:
        """The payload, or None: absent, altered, signed with another key, or expired."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body, mac = value.split(".")
        try:
            ok = hmac.compare_digest(base64.urlsafe_b64decode(mac), self._mac(body.encode()))
            payload = json.loads(base64.urlsafe_b64decode(body)) if ok else None
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return None
        return payload if now < payload["exp"] else None


def set_cookie(
    response: Response, name: str, value: str, *, max_age: int, path: str, secure: bool
) -> None:
    """A browser page's cookie: HttpOnly, on ``path`` only, ``Secure`` behind https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",  # the IdP's redirect back (a top-level GET) must carry it
        secure=secure,
    )


def csrf_token(key: bytes, sid: str, target: str) -> str:
    """The token a form acting on ``target`` carries in the session ``sid``."""
    return hmac.new(key, f"{sid}:{target}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, sid: str, target: str, given: str) -> bool:
    """Whether ``given`` is the token of ``target`` in the session ``sid`` (constant time)."""
    return hmac.compare_digest(given.encode(), csrf_token(key, sid, target).encode())
