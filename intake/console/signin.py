"""Signing in to the console: ``/console/sign-in`` → the IdP (OpenID Connect authorization code
with PKCE, ``approvals.web_signin``) → ``/console/callback`` → the page asked for;
``POST /console/sign-out`` ends the session.

The state, nonce and verifier travel in a signed, HttpOnly cookie of their own that lives ten
minutes; the callback checks the state against it, redeems the code and validates the ID token,
then sets the session cookie (who, and a random session id that CSRF tokens are bound to).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from approvals.web_signin import SignInFailed
from intake.console.base import (
    FLOW_COOKIE,
    FLOW_SECONDS,
    HEADERS,
    PREFIX,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Console,
    PageRefused,
    _local_path,
)


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/sign-in")
    def start_sign_in(next: str = PREFIX + "/") -> Response:
        """Off to the IdP, with this browser's state, nonce and PKCE verifier in a cookie."""
        try:
            started = c.signin.start()
        except SignInFailed as exc:
            raise PageRefused(exc.status, "Cannot sign in now", str(exc)) from None
        go = RedirectResponse(started.url, status_code=302)
        flow = {
            "state": started.state,
            "nonce": started.nonce,
            "verifier": started.verifier,
            "next": _local_path(next[:2000]),
        }
        c.cookie(
            go, FLOW_COOKIE, c.flows.dump(flow, now=c.wall_clock(), ttl=FLOW_SECONDS), FLOW_SECONDS
        )
        go.headers.update(HEADERS)
        return go

    @router.get("/callback")
    def signed_in(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        """The IdP sends the browser back: the state checked, the code redeemed, the person
        signed in, and on to the page they asked for."""
        flow = c.flows.load(request.cookies.get(FLOW_COOKIE), now=c.wall_clock())
        if flow is None or not all(
            isinstance(flow.get(k), str) for k in ("state", "nonce", "verifier", "next")
        ):
            raise PageRefused(
                400,
                "Sign-in expired",
                "This sign-in expired or was started in another browser: sign in again.",
                sign_in=f"{PREFIX}/sign-in",
            )
        if not hmac.compare_digest(state.encode(), flow["state"].encode()):
            raise PageRefused(400, "Sign-in refused", "The sign-in does not match this browser's.")
        if error or not code:
            raise PageRefused(
                401, "Not signed in", f"The identity provider said: {error[:100] or 'no code'}."
            )
        try:
            who = c.signin.finish(code[:2000], verifier=flow["verifier"], nonce=flow["nonce"])
        except SignInFailed as exc:
            raise PageRefused(exc.status, "Not signed in", str(exc)) from None
        back = RedirectResponse(_local_path(flow["next"]), status_code=303)
        session = {
            "email": who.email,
            "sub": who.verified.subject,
            "iss": who.verified.issuer,
            "sid": secrets.token_urlsafe(16),
        }
        c.cookie(
            back,
            SESSION_COOKIE,
            c.sessions.dump(session, now=c.wall_clock(), ttl=SESSION_SECONDS),
            SESSION_SECONDS,
        )
        back.delete_cookie(FLOW_COOKIE, path=PREFIX, httponly=True, samesite="lax")
        back.headers.update(HEADERS)
        return back

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        """The session ends in this browser (its cookie is dropped)."""
        await c.posted(request, "sign-out")
        back = c.redirect(f"{PREFIX}/signed-out")
        back.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="lax")
        return back

    @router.get("/signed-out")
    def signed_out() -> Response:
        return c.render(
            None,
            "message.html",
            title="Signed out",
            why="You are signed out of Handover's console.",
            link=f"{PREFIX}/sign-in",
        )
