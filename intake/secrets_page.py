"""The page where a rotated key's recipient retrieves its new secret: ``/secrets/<id>``.

The offboarding DMs each recipient this link, never the secret (``tasks.offboard``). Here:

1. ``GET /secrets/<id>`` without a session asks the person to sign in; the link shows nothing
   else, not even whether it exists.
2. ``GET /secrets/<id>/sign-in`` sends the browser to the IdP (OpenID Connect authorization
   code + PKCE: ``approvals.web_signin``), with its state, nonce and verifier in a signed,
   HttpOnly cookie; ``GET /secrets/callback`` checks the state, redeems the code, validates the
   ID token and sets the **session cookie**: signed (HMAC-SHA256, a key derived from
   ``HANDOVER_SECRETS_KEY``), HttpOnly, SameSite=Lax, on ``/secrets`` only, for 15 minutes.
3. ``GET /secrets/<id>`` signed in: a recipient sees the key's name and a button (a form with a
   CSRF token bound to the session and the link); anyone else gets 403 (audited); a retrieved
   or expired link says so (410).
4. ``POST /secrets/<id>`` (the button) reveals the secret, once: ``approvals.secret_links``.

Nothing is revealed by a GET. Every page is ``Cache-Control: no-store``, never framed, never
sends a Referer; a POST from another origin is refused. The cookies' times run on the wall
clock; the link's expiry on the services' clock.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from approvals.secret_links import CALLBACK_PATH, Outcome, callback_of, reveal, view
from approvals.services import Services
from approvals.web_signin import SignInFailed, WebSignIn
from domain.escaping import html_text
from domain.identity import OIDC_CODE, Verified
from intake.web import SECURITY_HEADERS, Signer, csrf_ok, csrf_token, set_cookie
from intake.wire import read_capped
from ledger.rotated_secrets import LINK_ID, derive_key

SESSION_COOKIE = "handover_session"
FLOW_COOKIE = "handover_signin"
COOKIE_PATH = "/secrets"
SESSION_SECONDS = 15 * 60  # long enough to sign in and click; short for a shared machine
FLOW_SECONDS = 10 * 60  # a sign-in at the IdP takes at most this
FORM_LIMIT = 4096  # the button's form: one CSRF token
CSRF_PURPOSE = b"handover intake: csrf v1"  # the CSRF tokens' key, derived from the secrets key


@dataclass(frozen=True)
class _Person:
    email: str
    verified: Verified
    sid: str  # the session's own random id: what the CSRF token is bound to


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html_text(title)}</title></head><body><h1>{html_text(title)}</h1>{body}"
        "</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _said(outcome: Outcome) -> str:
    return f"<p>{html_text(outcome.message)}</p>"


def secrets_router(
    svc: Services,
    *,
    wall_clock: Callable[[], float] = time.time,
    sign_in: WebSignIn | None = None,
) -> APIRouter:
    """The retrieval pages over ``svc`` (browser pages: left out of ``/openapi.json``).

    ``sign_in``: how the browser signs in (by default at the settings' IdP, coming back to
    ``<HANDOVER_INTAKE_URL>/secrets/callback``).
    """
    settings = svc.settings
    master = settings.secrets_key.get_secret_value()
    sessions = Signer(derive_key(master, b"handover intake cookie: session v1"))
    flows = Signer(derive_key(master, b"handover intake cookie: sign-in v1"))
    csrf_key = derive_key(master, CSRF_PURPOSE)
    signin = sign_in or WebSignIn(settings, redirect_uri=callback_of(settings))
    intake = urlsplit(settings.intake_url)
    origin = f"{intake.scheme}://{intake.netloc}"
    secure = intake.scheme == "https"
    router = APIRouter(include_in_schema=False)

    def cookie(response: Response, name: str, value: str, max_age: int) -> None:
        set_cookie(response, name, value, max_age=max_age, path=COOKIE_PATH, secure=secure)

    def person(request: Request) -> _Person | None:
        s = sessions.load(request.cookies.get(SESSION_COOKIE), now=wall_clock())
        if s is None or not all(isinstance(s.get(k), str) for k in ("email", "sub", "iss", "sid")):
            return None
        return _Person(s["email"], Verified(OIDC_CODE, s["sub"], s["iss"]), s["sid"])

    def csrf(who: _Person, link_id: str) -> str:
        return csrf_token(csrf_key, who.sid, link_id)

    def ask_to_sign_in(link_id: str, status: int = 200, why: str = "") -> HTMLResponse:
        said = f"<p>{html_text(why)}</p>" if why else ""
        return _page(
            "Sign in to see this secret",
            f"{said}<p>This link holds a rotated API key's new secret for the people it was "
            "sent to. Sign in with your organisation's account to see it.</p>"
            f"<p><a href='{COOKIE_PATH}/{link_id}/sign-in'>Sign in</a></p>",
            status,
        )

    @router.get(CALLBACK_PATH)
    def signed_in(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        """The IdP sends the browser back: the state checked, the code redeemed, the person
        signed in (the session cookie), and back to the link."""
        flow = flows.load(request.cookies.get(FLOW_COOKIE), now=wall_clock())
        if flow is None or not all(
            isinstance(flow.get(k), str) for k in ("state", "nonce", "verifier", "next")
        ):
            return _page(
                "Sign-in expired",
                "<p>This sign-in expired or was started in another browser: open the link "
                "from your Slack message again.</p>",
                400,
            )
        if not hmac.compare_digest(state.encode(), flow["state"].encode()):
            return _page(
                "Sign-in refused", "<p>The sign-in does not match this browser's.</p>", 400
            )
        if error or not code:
            why = error[:100] or "no code"
            return _page(
                "Not signed in", f"<p>The identity provider said: {html_text(why)}.</p>", 401
            )
        try:
            who = signin.finish(code[:2000], verifier=flow["verifier"], nonce=flow["nonce"])
        except SignInFailed as exc:
            return _page("Not signed in", f"<p>{html_text(str(exc))}</p>", exc.status)
        back = RedirectResponse(f"{COOKIE_PATH}/{flow['next']}", status_code=303)
        session = {
            "email": who.email,
            "sub": who.verified.subject,
            "iss": who.verified.issuer,
            "sid": secrets.token_urlsafe(16),
        }
        cookie(
            back,
            SESSION_COOKIE,
            sessions.dump(session, now=wall_clock(), ttl=SESSION_SECONDS),
            SESSION_SECONDS,
        )
        back.delete_cookie(FLOW_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
        back.headers.update(SECURITY_HEADERS)
        return back

    @router.get(COOKIE_PATH + "/{link_id}/sign-in")
    def start_sign_in(link_id: str) -> Response:
        """Off to the IdP, with this browser's state, nonce and PKCE verifier in a cookie."""
        if not LINK_ID.match(link_id):
            return _page("No such link", "<p>Check the link in your Slack message.</p>", 404)
        try:
            started = signin.start()
        except SignInFailed as exc:
            return _page("Cannot sign in now", f"<p>{html_text(str(exc))}</p>", exc.status)
        go = RedirectResponse(started.url, status_code=302)
        flow = {
            "state": started.state,
            "nonce": started.nonce,
            "verifier": started.verifier,
            "next": link_id,
        }
        cookie(go, FLOW_COOKIE, flows.dump(flow, now=wall_clock(), ttl=FLOW_SECONDS), FLOW_SECONDS)
        go.headers.update(SECURITY_HEADERS)
        return go

    @router.get(COOKIE_PATH + "/{link_id}")
    def show(request: Request, link_id: str) -> Response:
        """The link: sign in; then, for a recipient, the button that reveals the secret."""
        if not LINK_ID.match(link_id):
            return _page("No such link", "<p>Check the link in your Slack message.</p>", 404)
        who = person(request)
        if who is None:
            return ask_to_sign_in(link_id)
        outcome = view(svc, link_id, email=who.email, verified=who.verified)
        if outcome.status != 200 or outcome.sealed is None:
            return _page("Nothing to show", _said(outcome), outcome.status)
        until = outcome.sealed.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        return _page(
            f"The new secret of API key {outcome.sealed.key_name}",
            f"<p>Signed in as <b>{html_text(who.email)}</b>. The key was rotated because "
            f"{html_text(outcome.sealed.subject)} left.</p>"
            f"<p>The secret is shown once, to one recipient, until {html_text(until)}: "
            "have somewhere safe to store it (a secrets manager) before you click.</p>"
            f"<form method='post' action='{COOKIE_PATH}/{link_id}'>"
            f"<input type='hidden' name='csrf' value='{csrf(who, link_id)}'>"
            "<button>Show the secret once</button></form>",
        )

    @router.post(COOKIE_PATH + "/{link_id}")
    async def retrieve(request: Request, link_id: str) -> Response:
        """The button: the secret, once, to a signed-in recipient (``approvals.secret_links``)."""
        if not LINK_ID.match(link_id):
            return _page("No such link", "<p>Check the link in your Slack message.</p>", 404)
        sent_from = request.headers.get("origin")
        if sent_from is not None and sent_from != origin:
            return _page("Refused", "<p>This form was sent from another site.</p>", 403)
        raw = await read_capped(request, FORM_LIMIT)
        who = person(request)
        if who is None:
            return ask_to_sign_in(link_id, 401, "Your session expired: sign in again.")
        try:
            given = parse_qs((raw or b"").decode("utf-8")).get("csrf", [""])[0]
        except UnicodeDecodeError:
            given = ""
        if not csrf_ok(csrf_key, who.sid, link_id, given):
            return _page("Refused", "<p>The form is stale: open the link again.</p>", 403)
        outcome = await run_in_threadpool(
            reveal, svc, link_id, email=who.email, verified=who.verified
        )
        if outcome.secret is None or outcome.sealed is None:
            return _page("Nothing to show", _said(outcome), outcome.status)
        return _page(
            f"The new secret of API key {outcome.sealed.key_name}",
            f"{_said(outcome)}<pre>{html_text(outcome.secret.get_secret_value())}</pre>",
        )

    return router
