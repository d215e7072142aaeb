"""A rotated key's new secret never reaches chat (issue 15, "Secrets never in chat"), over HTTP:
the demo sandbox and the intake on loopback ports, a real offboarding on the session's Prefect
server, and browsers (httpx clients with their cookies) signing in at the sandbox IdP with the
authorization code flow and PKCE.

The DM carries only ``<HANDOVER_INTAKE_URL>/secrets/<id>``; no Slack message, ticket or audit
event holds the secret; the recipient signs in and retrieves it once, and it is the key's live
secret in the org; a second retrieval, a non-recipient, an expired link, a missing session, a
stale form or another site's form reveal nothing; a re-run of the rotation step seals one
secret and sends one link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from approvals.secret_links import link_ttl, secret_box
from cli.stack import Running, free_port, serve_app
from domain.plan import Step
from domain.steps import RotateKey
from intake.app import create_intake
from intake.secrets_page import CSRF_PURPOSE, SESSION_COOKIE
from ledger.audit import export, records
from ledger.rotated_secrets import Rotation, SealedSecretRow, derive_key, seal_secret
from sandbox.app import create_app
from sandbox.org.models import ApiKey
from tasks.offboard import execute_offboard_step
from tasks.steps import StepScope
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow

DANA = "dana.sole@acme.com"
ALICE = "alice.admin@acme.com"  # manages "Production ingestion" with dana
SOFIA = "sofia.lead@acme.com"  # dana's manager: approves, but no recipient of the key
HR = "hr.partner@acme.com"
PASSWORD = "sandbox-password"


@dataclass
class World:
    sandbox: LiveSandbox
    stack: OffboardStack
    intake: Running
    result: dict[str, Any]  # dana's offboarding

    def link_of(self, dm: str) -> str:
        found = re.search(rf"{re.escape(self.intake.url)}/secrets/[A-Za-z0-9_-]{{43}}", dm)
        assert found, dm
        return found.group(0)

    def seal(self, secret: str, *, case_id: int, hours_ago: float = 0) -> str:
        """A secret sealed for alice as the offboarding seals one; its link."""
        s = self.stack.rt.settings
        sealed = seal_secret(
            self.stack.rt.ledger,
            secret_box(s),
            Rotation(
                case_id=case_id,
                step_id="rotate_key:9",
                subject="someone.gone@acme.com",
                key_id="9",
                key_name="Test key",
                recipients=(ALICE,),
            ),
            SecretStr(secret),
            now=self.stack.svc.clock() - timedelta(hours=hours_ago),
            ttl=link_ttl(s),
        )
        return f"{self.intake.url}/secrets/{sealed.id}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[World]:
    """dana.sole terminated (approved by sofia's signed click), with the intake served where
    ``HANDOVER_INTAKE_URL`` says."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    intake: Running | None = None
    try:
        port = free_port()
        stack = make_stack(
            sb, tmp_path_factory.mktemp("secrets"), intake_url=f"http://127.0.0.1:{port}"
        )
        intake = serve_app(create_intake(stack.svc), port=port, name="intake")
        run = stack.start(email=DANA, reason="termination", requester=HR)
        r = stack.click(stack.paused(DANA), SOFIA)
        assert r.status_code == 200 and r.json()["recorded"] is True, r.text
        yield World(sb, stack, intake, run.wait())
    finally:
        if intake is not None:
            intake.stop()
        sb.stop()


class Browser:
    """One person's browser: its cookies, the intake and the sandbox IdP's sign-in form."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=20, follow_redirects=False)

    def sign_in(self, link: str, email: str) -> None:
        go = self.http.get(f"{link}/sign-in")
        assert go.status_code == 302, go.text
        authorize = go.headers["location"]
        params = dict(parse_qsl(urlsplit(authorize).query))
        assert params["code_challenge_method"] == "S256" and params["nonce"]
        form = self.http.get(authorize)
        assert form.status_code == 200 and "<form" in form.text
        back = self.http.post(
            authorize.split("?")[0],
            data={**params, "email": email, "password": PASSWORD, "action": "allow"},
        )
        assert back.status_code == 302, back.text
        done = self.http.get(back.headers["location"])
        assert done.status_code == 303, done.text
        assert done.headers["location"] == urlsplit(link).path

    def open(self, link: str) -> httpx.Response:
        return self.http.get(link)

    def reveal(self, link: str) -> httpx.Response:
        """Open the link and press its button (the form's CSRF token sent back)."""
        page = self.open(link)
        token = re.search(r"name='csrf' value='([0-9a-f]{64})'", page.text)
        return self.http.post(link, data={"csrf": token.group(1) if token else ""})


def shown(r: httpx.Response) -> str:
    found = re.search(r"<pre>(.*?)</pre>", r.text, re.S)
    assert found, r.text
    return html.unescape(found.group(1))


def assert_private(r: httpx.Response) -> None:
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def audit_of(world: World, action: str, subject: str | None = None) -> list[Any]:
    return [e for e in records(world.stack.rt.ledger, subject=subject) if e.action == action]


def form_token(world: World, browser: Browser, link: str) -> str:
    """The CSRF token the page would give this browser's session for ``link`` (computed from
    the secrets key, as only the intake can): a form a non-recipient could never get."""
    value = next(c.value for c in browser.http.cookies.jar if c.name == SESSION_COOKIE)
    assert value is not None
    sid = json.loads(base64.urlsafe_b64decode(value.split(".")[0]))["sid"]
    key = derive_key(world.stack.rt.settings.secrets_key.get_secret_value(), CSRF_PURPOSE)
    return hmac.new(key, f"{sid}:{link.rsplit('/', 1)[1]}".encode(), hashlib.sha256).hexdigest()


def test_the_rotation_dm_carries_a_one_time_signed_in_link_never_the_secret(
    world: World,
) -> None:
    st = world.stack
    assert world.result["status"] == "done", world.result
    (dm,) = [m["text"] for m in st.dms(ALICE) if "was rotated" in m["text"]]
    link = world.link_of(dm)
    # Before anyone signs in, the link shows a sign-in page and nothing else.
    anonymous = httpx.get(link, timeout=10)
    assert anonymous.status_code == 200 and "Sign in" in anonymous.text
    assert "Production ingestion" not in anonymous.text
    assert_private(anonymous)

    # Someone else signed in (dana's manager, who approved): refused, nothing revealed — also
    # with a valid form token (which their page never gives them).
    sofia = Browser()
    sofia.sign_in(link, SOFIA)
    page = sofia.open(link)
    assert page.status_code == 403 and "csrf" not in page.text
    assert "Production ingestion" not in page.text
    refused = sofia.http.post(link, data={"csrf": form_token(world, sofia, link)})
    assert refused.status_code == 403 and "<pre>" not in refused.text
    assert [e.actor for e in audit_of(world, "secret.refused", DANA)] == [SOFIA, SOFIA]

    # The recipient signs in: a page with a button (nothing revealed by a GET), then the secret.
    alice = Browser()
    alice.sign_in(link, ALICE)
    cookie = next(c for c in alice.http.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.path == "/secrets" and cookie.has_nonstandard_attr("HttpOnly")
    assert str(cookie.get_nonstandard_attr("SameSite")).lower() == "lax"
    page = alice.open(link)
    assert page.status_code == 200 and "Production ingestion" in page.text
    assert "<pre>" not in page.text
    got = alice.reveal(link)
    assert got.status_code == 200, got.text
    assert_private(got)
    secret = shown(got)
    # It is the key's live secret in the org: its hash is the key's, ingestion accepts it.
    with world.sandbox.world.db.session() as s:
        key = s.scalars(select(ApiKey).where(ApiKey.name == "Production ingestion")).one()
        assert (key.rotation_count, key.secret_hash) == (
            1,
            hashlib.sha256(secret.encode()).hexdigest(),
        )
    assert st.ingest(secret) == 200
    assert st.ingest(st.seed_secrets()[str(key.id)]) != 200

    # Once: the link, or the same form sent again, is told who retrieved it and when.
    again = alice.open(link)
    assert again.status_code == 410 and "<pre>" not in again.text
    assert f"Already retrieved by {ALICE} at " in html.unescape(again.text)
    token = re.search(r"name='csrf' value='([0-9a-f]{64})'", page.text)
    assert token is not None
    second = alice.http.post(link, data={"csrf": token.group(1)})
    assert second.status_code == 410 and "<pre>" not in second.text
    assert f"Already retrieved by {ALICE} at " in html.unescape(second.text)
    (rotation,) = [e for e in audit_of(world, "offboard.rotate_key", DANA) if e.target == "1"]
    assert rotation.after == {"notified": [ALICE]}
    (event,) = audit_of(world, "secret.retrieved", DANA)
    assert (event.actor, event.subject, event.after["auth"]) == (ALICE, DANA, "oidc-code")
    assert event.after["auth_issuer"] == st.rt.settings.oidc_issuer

    # Nowhere else: no Slack message (DMs, channels, updates), the ticket, the audit log, the
    # ledger's own database (the ciphertext is gone with the retrieval).
    everything = json.dumps(st.get("/_sandbox/slack/messages"))
    assert secret not in everything and not re.search(r"amp_[0-9a-f]{8,}", everything)
    (case,) = st.cases()
    assert secret not in json.dumps(st.get(f"/_sandbox/jira/issues/{case['ticket']}"))
    assert secret not in "".join(export(st.rt.ledger))
    with st.rt.ledger.sessions() as s:
        rows = s.scalars(select(SealedSecretRow)).all()
        assert [(r.ciphertext, r.retrieved_by) for r in rows] == [(None, ALICE)]
    assert secret.encode() not in (st.tmp / "ledger.db").read_bytes()


def test_an_expired_link_is_refused_and_its_secret_erased(world: World) -> None:
    link = world.seal("amp_expired0123456789", case_id=9001, hours_ago=25)
    alice = Browser()
    alice.sign_in(link, ALICE)
    page = alice.open(link)
    assert page.status_code == 410 and "expired" in page.text
    got = alice.http.post(link, data={"csrf": form_token(world, alice, link)})
    assert got.status_code == 410 and "amp_expired" not in got.text
    with world.stack.rt.ledger.sessions() as s:
        row = s.get(SealedSecretRow, link.rsplit("/", 1)[1])
        assert row is not None and row.ciphertext is None and row.erased_at is not None
    assert "Test key" in [e.after["key_name"] for e in audit_of(world, "secret.expired")]


def test_nothing_is_revealed_without_a_session_a_fresh_form_or_from_another_site(
    world: World,
) -> None:
    link = world.seal("amp_guarded0123456789", case_id=9002)
    # No session: the button's POST asks to sign in.
    r = httpx.post(link, data={"csrf": "0" * 64}, timeout=10)
    assert r.status_code == 401 and "amp_guarded" not in r.text
    # A forged session cookie is no session.
    forged = httpx.Client(timeout=10, cookies={SESSION_COOKIE: "e30.AAAA"})
    assert "Sign in" in forged.get(link).text
    alice = Browser()
    alice.sign_in(link, ALICE)
    # Signed in, but the form's token missing or wrong, or posted from another origin.
    good = {"csrf": form_token(world, alice, link)}
    for data, headers in (
        ({}, {}),
        ({"csrf": "0" * 64}, {}),
        (good, {"Origin": "https://evil.example"}),
    ):
        r = alice.http.post(link, data=data, headers=headers)
        assert r.status_code == 403 and "amp_guarded" not in r.text
    # A sign-in answer without this browser's sign-in, or with another state, is refused.
    callback = f"{world.intake.url}/secrets/callback"
    assert alice.http.get(callback, params={"code": "x", "state": "y"}).status_code == 400
    assert alice.http.get(f"{link}/sign-in").status_code == 302  # this browser's sign-in
    assert alice.http.get(callback, params={"code": "x", "state": "y"}).status_code == 400
    # Nothing was consumed: the right form still reveals it, once.
    assert shown(alice.reveal(link)) == "amp_guarded0123456789"


def test_a_re_run_of_the_rotation_step_seals_one_secret_and_sends_one_link(world: World) -> None:
    """The step re-run (killed after its DM, before it was recorded done): the org replays the
    same rotation, the same sealed secret and link are found, nobody is told twice."""
    st = world.stack
    before = len([m for m in st.dms(SOFIA) if "was rotated" in m["text"]])
    step = Step.of(
        RotateKey(name="Marketing export", notify=[SOFIA]), "4", reason="mike.stale leaves"
    )
    scope = StepScope(runbook="offboard", subject="mike.stale@acme.com", case_id=9003)
    for _ in range(2):
        execute_offboard_step(st.rt, step, scope)
    dms = [m["text"] for m in st.dms(SOFIA) if "was rotated" in m["text"]]
    assert len(dms) == before + 1
    with st.rt.ledger.sessions() as s:
        (row,) = s.scalars(select(SealedSecretRow).where(SealedSecretRow.case_id == 9003)).all()
        assert row.told == [SOFIA]
    assert row.id in dms[-1]
    sofia = Browser()
    sofia.sign_in(world.link_of(dms[-1]), SOFIA)
    secret = shown(sofia.reveal(world.link_of(dms[-1])))
    assert st.ingest(secret) == 200
