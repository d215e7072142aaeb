"""The web console (issue 16), served by the intake under ``/console``: signed in through the
organisation's IdP, with roles from its groups; every page checks on the server who may see it
and every decision is a CSRF-protected POST (intake/console/base.py).

Pages: the inbox (``/``), sign-in and sign-out (signin.py); each other section adds its module
to :data:`PAGES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from approvals.services import Services
from approvals.web_signin import WebSignIn
from intake.console import (
    approvals,
    audit,
    cases,
    grants,
    inbox,
    reviews,
    secrets,
    signin,
    tasks,
)
from intake.console.base import PREFIX, STATIC, Console, PageRefused

# Each section's module: ``routes(router, console)`` adds its pages.
PAGES = (signin, inbox, approvals, tasks, secrets, cases, reviews, grants, audit)


def install_console(
    app: FastAPI,
    svc: Services,
    *,
    wall_clock: Callable[[], float] = time.time,
    sign_in: WebSignIn | None = None,
) -> Console:
    """Serve the console on ``app`` under ``/console`` (left out of ``/openapi.json``)."""
    console = Console(svc, wall_clock=wall_clock, sign_in=sign_in)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    for page in PAGES:
        page.routes(router, console)
    app.include_router(router)
    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="console-static")

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        if exc.sign_in and request.method == "GET":
            return console.redirect(exc.sign_in)  # not signed in: off to sign in, and back
        return console.refused(exc)

    app.add_exception_handler(PageRefused, refused)
    return console
