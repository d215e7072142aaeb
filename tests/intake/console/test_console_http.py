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


def _session_cookie(console: ConsoleWorld, email: str, *, issued_hours_ago: float) -> str:
    """A session cookie as the console signs one (the test holds the secrets key)."""
    import time

    from intake.web import Signer
    from ledger.rotated_secrets import derive_key

    key = console.stack.svc.settings.secrets_key.get_secret_value()
    signer = Signer(derive_key(key, b"handover console cookie: session v1"))
    payload = {"email": email, "sub": "x", "iss": "y", "sid": "s" * 22}
    return signer.dump(payload, now=time.time() - issued_hours_ago * 3600, ttl=8 * 3600)


def test_a_session_lasts_8_hours_and_counts_only_for_an_active_idp_user(
    console: ConsoleWorld,
) -> None:
    import httpx

    def inbox(cookie: str) -> httpx.Response:
        return httpx.get(
            f"{console.url}/console/",
            cookies={"handover_console": cookie},
            follow_redirects=False,
        )

    assert inbox(_session_cookie(console, SECURITY, issued_hours_ago=7.9)).status_code == 200
    assert inbox(_session_cookie(console, SECURITY, issued_hours_ago=8.1)).status_code == 303
    # frank.former is deactivated in the IdP: a session of his is nobody's.
    frank = _session_cookie(console, "frank.former@acme.com", issued_hours_ago=0)
    assert inbox(frank).status_code == 303


def test_roles_are_read_from_the_idp_at_every_request(console: ConsoleWorld) -> None:
    oncall = Person(console, "sec.oncall@acme.com")
    assert oncall.get("/console/audit").status_code == 200
    idp = console.stack.rt.idp
    group = idp.find_group("handover-security")
    user = idp.find_user("sec.oncall@acme.com")
    assert group is not None and user is not None
    idp.remove_from_group(group.id, user.id)
    try:
        # The same session, the next request: no longer security.
        assert oncall.get("/console/audit").status_code == 403
        assert "security" not in oncall.get("/console/").text.split("Signed in as")[1][:200]
    finally:
        idp.add_to_group(group.id, user.id)
    assert oncall.get("/console/audit").status_code == 200
