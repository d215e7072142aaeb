"""The console's plumbing: who is signed in, pages rendered from templates, forms checked.

Every page is server-rendered (Jinja, autoescaped: whatever a person typed is shown as text) and
checks on the server who may see it; every change is a POST carrying a CSRF token bound to the
session and to the object it acts on, from this origin only. Nothing is decided by a GET.

The session cookie (``handover_console``, path ``/console``, HttpOnly, SameSite=Lax, signed with
a key derived from ``HANDOVER_SECRETS_KEY``) holds only who signed in and a random session id;
the person's roles are read from the IdP at every request (approvals/console_roles.py), so a
person removed from a group or deactivated loses the pages at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from approvals.console_roles import ConsolePerson, IdpUnreachable, Role, console_person
from approvals.services import Services
from approvals.web_signin import WebSignIn
from domain.identity import OIDC_CODE, Verified
from intake.web import SECURITY_HEADERS, Signer, csrf_ok, csrf_token, set_cookie
from intake.wire import read_capped
from ledger.rotated_secrets import derive_key

PREFIX = "/console"
SESSION_COOKIE = "handover_console"
FLOW_COOKIE = "handover_console_signin"
SESSION_SECONDS = 8 * 3600  # a working day; roles are re-read from the IdP at every request
FLOW_SECONDS = 10 * 60  # a sign-in at the IdP takes at most this
FORM_LIMIT = 64 * 1024  # a bulk review form names a few hundred items at most
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
# The console's own scripts and styles (htmx, the local-time script) come from its origin only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Referer to this origin only, never to another site: under ``no-referrer`` a browser sends
# ``Origin: null`` with a form's POST, which :meth:`Console.posted` refuses as another site's.
HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": CSP, "Referrer-Policy": "same-origin"}


@dataclass(frozen=True)
class Viewer(ConsolePerson):
    """The person signed in to this browser: who the IdP says they are now, and this session."""

    sid: str
    verified: Verified


class PageRefused(Exception):
    """A page or form that cannot be served to this person: a status, a title, why."""

    def __init__(self, status: int, title: str, why: str, *, sign_in: str = "") -> None:
        super().__init__(why)
        self.status, self.title, self.why, self.sign_in = status, title, why, sign_in


def _local_path(next_: str) -> str:
    """``next_`` when it is a console path on this site (never another site: no open redirect)."""
    parts = urlsplit(next_)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or "\\" in next_:
        return PREFIX + "/"
    return next_


def when(at: datetime | None) -> Markup:
    """A time as a ``<time>`` element: UTC in the page, the viewer's zone once the page's
    script has run (static/console.js), UTC as it is without scripts."""
    if at is None:
        return Markup("—")
    utc = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    return Markup('<time datetime="{}" data-local>{}</time>').format(
        utc.isoformat(timespec="seconds"), utc.strftime("%Y-%m-%d %H:%M UTC")
    )


def age(at: datetime | None, now: datetime) -> str:
    """How long ago ``at`` was, in the largest whole unit (``3 d``, ``5 h``, ``12 min``)."""
    if at is None:
        return ""
    seconds = (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{int(seconds // size)} {unit}"
    return "now"


class Console:
    """What every console page shares, over the intake's services ``svc``."""

    def __init__(
        self,
        svc: Services,
        *,
        wall_clock: Callable[[], float] = time.time,
        sign_in: WebSignIn | None = None,
    ) -> None:
        self.svc = svc
        self.wall_clock = wall_clock
        settings = svc.settings
        master = settings.secrets_key.get_secret_value()
        self.sessions = Signer(derive_key(master, b"handover console cookie: session v1"))
        self.flows = Signer(derive_key(master, b"handover console cookie: sign-in v1"))
        self.csrf_key = derive_key(master, b"handover console: csrf v1")
        self.signin = sign_in or WebSignIn(
            settings, redirect_uri=settings.intake_url.rstrip("/") + PREFIX + "/callback"
        )
        intake = urlsplit(settings.intake_url)
        self.origin = f"{intake.scheme}://{intake.netloc}"
        self.secure = intake.scheme == "https"
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = when
        self.env.globals["prefix"] = PREFIX

    # -- who is here -------------------------------------------------------------------------

    def cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        set_cookie(response, name, value, max_age=max_age, path=PREFIX, secure=self.secure)

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in person, as the IdP knows them now; None: no session, or the IdP no
        longer knows them as an active user.

        Raises:
            IdpUnreachable: the IdP could not be asked.
        """
        s = self.sessions.load(request.cookies.get(SESSION_COOKIE), now=self.wall_clock())
        if s is None or not all(isinstance(s.get(k), str) for k in ("email", "sub", "iss", "sid")):
            return None
        person = console_person(self.svc, s["email"])
        if person is None:
            return None
        return Viewer(
            person.email,
            person.addresses,
            person.roles,
            sid=s["sid"],
            verified=Verified(OIDC_CODE, s["sub"], s["iss"]),
        )

    def need(self, request: Request, *roles: Role) -> Viewer:
        """The signed-in viewer holding one of ``roles`` (any role when none is named).

        Raises:
            PageRefused: not signed in (a GET is sent to sign in), or lacking the role (403).
        """
        try:
            who = self.viewer(request)
        except IdpUnreachable as exc:
            raise PageRefused(503, "The identity provider cannot be reached", str(exc)) from None
        if who is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise PageRefused(
                401,
                "Sign in",
                "Sign in with your organisation's account to see this page.",
                sign_in=f"{PREFIX}/sign-in?next={quote(path)}",
            )
        if roles and not who.has(*roles):
            names = ", ".join(r.value for r in roles)
            raise PageRefused(403, "Not for you", f"This page is for: {names}.")
        return who

    def csrf(self, who: Viewer, target: str) -> str:
        return csrf_token(self.csrf_key, who.sid, target)

    async def posted(
        self, request: Request, target: str, *roles: Role
    ) -> tuple[Viewer, dict[str, list[str]]]:
        """A form sent to act on ``target``: from this origin, within the size limit, by a
        signed-in person holding one of ``roles``, with the CSRF token of ``target``.

        Raises:
            PageRefused: any of those does not hold (nothing is changed).
        """
        sent_from = request.headers.get("origin")
        if sent_from is not None and sent_from != self.origin:
            raise PageRefused(403, "Refused", "This form was sent from another site.")
        raw = await read_capped(request, FORM_LIMIT)
        if raw is None:
            raise PageRefused(413, "Refused", "The form is too large.")
        try:
            form = parse_qs(raw.decode("utf-8"), max_num_fields=2000)
        except (UnicodeDecodeError, ValueError):
            raise PageRefused(400, "Refused", "The form could not be read.") from None
        who = await run_in_threadpool(self.need, request, *roles)
        given = (form.get("csrf") or [""])[0]
        if not csrf_ok(self.csrf_key, who.sid, target, given):
            raise PageRefused(
                403, "Refused", "The form is stale or not from this session: open the page again."
            )
        return who, form

    # -- pages -------------------------------------------------------------------------------

    def render(
        self, who: Viewer | None, template: str, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        """``template`` rendered for ``who`` (the navigation follows their roles)."""
        html = self.env.get_template(template).render(
            viewer=who,
            nav=self.nav(who),
            csrf=(lambda target: self.csrf(who, target)) if who else (lambda target: ""),
            now=self.svc.clock(),
            age=lambda at: age(at, self.svc.clock()),
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def refused(self, exc: PageRefused, who: Viewer | None = None) -> HTMLResponse:
        return self.render(
            who, "message.html", status=exc.status, title=exc.title, why=exc.why, link=exc.sign_in
        )

    def nav(self, who: Viewer | None) -> list[tuple[str, str]]:
        """The sections this person may open: (label, path)."""
        if who is None:
            return []
        items = [("Inbox", f"{PREFIX}/"), ("Cases", f"{PREFIX}/cases")]
        if who.has(Role.SECURITY, Role.AUDITOR):
            items.append(("Reviews", f"{PREFIX}/reviews"))
        items.append(("Grants", f"{PREFIX}/grants"))
        if who.has(Role.SECURITY, Role.AUDITOR):
            items.append(("Audit", f"{PREFIX}/audit"))
        return items

    def redirect(self, path: str) -> RedirectResponse:
        """After a POST: back to a page with a GET (303), so a reload never posts again."""
        go = RedirectResponse(_local_path(path), status_code=303)
        go.headers.update(HEADERS)
        return go


def one(form: dict[str, list[str]], name: str, limit: int = 2000) -> str:
    """A form field's first value, cut to ``limit`` characters ("" when absent)."""
    return (form.get(name) or [""])[0][:limit]


def every(form: dict[str, list[str]], name: str) -> list[str]:
    """Every value of a repeated form field (checkboxes), in order, each named once."""
    return list(dict.fromkeys(form.get(name) or []))
