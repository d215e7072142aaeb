"""A rotated key's new secret in the console, ``/console/secrets/<id>``: the same sealed secret
the DM's ``/secrets/<id>`` link opens (intake/secrets_page.py), under the console's sign-in.

The rules are ``approvals.secret_links``' and nowhere else: only a recipient sees the page
(anyone else 403, audited), the secret is revealed once — by a POST (target ``secret:<id>``),
only in that POST's response — before it expires, and every retrieval and refusal is audited.
The inbox lists the ones still waiting for the viewer (``ledger.rotated_secrets.
waiting_secrets``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from approvals.secret_links import Outcome, reveal, view
from intake.console.base import Console, PageRefused, Viewer

TITLE = "A rotated key's new secret"


def target(link_id: str) -> str:
    """What a secret's form acts on (its CSRF token is bound to it)."""
    return f"secret:{link_id}"


def routes(router: APIRouter, c: Console) -> None:
    def shown(who: Viewer, link_id: str, outcome: Outcome) -> Response:
        if outcome.sealed is None or (outcome.status != 200):
            raise PageRefused(outcome.status, "Nothing to show", outcome.message)
        return c.render(
            who,
            "secret.html",
            title=f"The new secret of API key {outcome.sealed.key_name}",
            sealed=outcome.sealed,
            message=outcome.message,
            # Only in the response of the POST that retrieved it; never kept, never logged.
            secret=outcome.secret.get_secret_value() if outcome.secret is not None else None,
            target=target(link_id),
        )

    @router.get("/secrets/{link_id}")
    def secret_page(request: Request, link_id: str) -> Response:
        """For a recipient, while it waits: the key, whose leaving rotated it, the expiry and
        the button; nothing is revealed here."""
        who = c.need(request)
        link_id = link_id[:100]
        return shown(who, link_id, view(c.svc, link_id, email=who.email, verified=who.verified))

    @router.post("/secrets/{link_id}")
    async def secret_reveal(request: Request, link_id: str) -> Response:
        """The button: the secret, once, to a signed-in recipient."""
        link_id = link_id[:100]
        who, _ = await c.posted(request, target(link_id))
        outcome = await run_in_threadpool(
            reveal, c.svc, link_id, email=who.email, verified=who.verified
        )
        if outcome.secret is None:  # retrieved already, expired, not a recipient: why
            raise PageRefused(outcome.status, "Nothing to show", outcome.message)
        return shown(who, link_id, outcome)
