"""The console's server-side checks over HTTP, as a browser without JavaScript sends them:
sign-in through the sandbox IdP (authorization code + PKCE), roles from IdP groups read at every
request, the inbox of an approver, and the refusals (no session, a forged cookie, a form from
another site)."""

from __future__ import annotations

import pytest

from flows.onboard import onboard
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

NEWCOMER = "nora.new@partner.io"
REQUESTER = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"
AUDITOR = "audra.audit@acme.com"


def test_without_a_session_a_page_sends_the_browser_to_sign_in(console: ConsoleWorld) -> None:
    import httpx

    r = httpx.get(f"{console.url}/console/?tab=x", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in?next=/console/%3Ftab%3Dx"
    forged = httpx.get(
        f"{console.url}/console/", cookies={"handover_console": "e30.AAAA"}, follow_redirects=False
    )
    assert forged.status_code == 303
    posted = httpx.post(f"{console.url}/console/sign-out", data={"csrf": "x"})
    assert posted.status_code == 401 and "Sign in" in posted.text


def test_the_inbox_shows_an_approver_the_request_and_the_requester_their_own(
    console: ConsoleWorld,
) -> None:
    run = console.stack.start(
        onboard, email=NEWCOMER, projects={"Production": "admin"}, requester=REQUESTER
    )
    appr = console.stack.paused(NEWCOMER)
    sec = Person(console, SECURITY)
    page = sec.get("/console/")
    assert page.status_code == 200, page.text
    assert f"/console/approvals/{appr.id}" in page.text and NEWCOMER in page.text
    assert "security" in page.text  # the role read from the IdP group
    mine = Person(console, REQUESTER).get("/console/")
    assert "Nothing waits for your approval" in mine.text
    assert f"/console/approvals/{appr.id}" in mine.text  # under "your requests"
    audit = Person(console, AUDITOR).get("/console/")
    assert "auditor" in audit.text and "Nothing waits for your approval" in audit.text
    r = console.stack.click(appr, SECURITY, deny=True)
    assert r.status_code == 200, r.text
    assert run.wait()["status"] == "denied"


def test_sign_out_needs_the_session_token_and_ends_the_session(console: ConsoleWorld) -> None:
    p = Person(console, SECURITY)
    page = p.get("/console/")
    refused = p.post("/console/sign-out", {"csrf": "0" * 64})
    assert refused.status_code == 403
    other_site = p.post(
        "/console/sign-out",
        {"csrf": p.csrf_of(page, "/console/sign-out")},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    out = p.post("/console/sign-out", {"csrf": p.csrf_of(page, "/console/sign-out")})
    assert out.status_code == 303
    assert p.get("/console/").status_code == 303  # signed out: sent to sign in again
