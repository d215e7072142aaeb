"""`handover login` end to end, as a person does it: the CLI (a subprocess) asks the sandbox's
IdP for a device code and waits; the person (this test, over HTTP) types the code on the
verification page and signs in; then `handover approve` — without ``--as`` — decides as that
person, and the audit event names the verified subject and the method. Outside sandbox mode
``--as`` and ``--requester`` are refused (exit 2, nothing recorded), and the signed-in person
still decides; a tampered, expired or missing session is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from cli.identity import AS_REFUSED, current_session
from connectors.oidc import OidcClient
from connectors.settings import DEV_CREDENTIALS, Settings
from domain.records import ApprovalRequest
from ledger import open_ledger
from ledger.approvals import create_approval, get_approval
from sandbox.app import create_app
from tests.anchors import anchor_in
from tests.conftest import IDP, LiveSandbox, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ALICE = "alice.admin@acme.com"
HANDOVER = str(Path(sys.executable).with_name("handover"))


@pytest.fixture(scope="module")
def idp() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


class Here:
    """One test's Handover: its home (session, ledger) and the environment of its CLI runs."""

    def __init__(self, sb: LiveSandbox, home: Path) -> None:
        self.sb = sb
        self.home = home
        self.ledger_url = f"sqlite:///{home / 'ledger.db'}"
        self.issuer = f"{sb.url}/idp/oidc"
        self.env = {
            **os.environ,
            "HANDOVER_SANDBOX": "1",
            "HANDOVER_HOME": str(home),
            "HANDOVER_ORG_URL": sb.url,
            "HANDOVER_IDP_URL": f"{sb.url}/idp/scim/v2",
            "HANDOVER_SLACK_API_URL": f"{sb.url}/slack/api/",
            "HANDOVER_JIRA_URL": f"{sb.url}/jira",
            "HANDOVER_LEDGER_URL": self.ledger_url,
            "HANDOVER_OIDC_ISSUER": self.issuer,
        }
        self.db = open_ledger(self.ledger_url, anchor=anchor_in(home))

    def production(self) -> dict[str, str]:
        """The same, outside sandbox mode: no HANDOVER_SANDBOX, and credentials of its own
        (the development ones are refused there)."""
        env = {k: v for k, v in self.env.items() if k != "HANDOVER_SANDBOX"}
        # Long enough for every credential (HANDOVER_SECRETS_KEY: at least 32 characters).
        env |= {
            f"HANDOVER_{name.upper()}": f"not-the-{name}-of-the-sandbox-at-all"
            for name in DEV_CREDENTIALS
        }
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HANDOVER, *args],
            env=env or self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def approval(self, approval_id: str) -> ApprovalRequest:
        now = datetime.now(UTC)
        return create_approval(
            self.db,
            ApprovalRequest(
                id=approval_id,
                runbook="offboard",
                subject="dana.sole@acme.com",
                requester="it.ops@acme.com",
                plan_hash="ab" * 32,
                rule="test",
                required=[[ALICE]],
                created_at=now,
                expires_at=now + timedelta(days=1),
            ),
        )

    def audit(self) -> list[dict[str, Any]]:
        out = self.run("audit", "export")
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def decisions_about(self, approval_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.audit()
            if e["action"] == "approval.decision" and e["target"] == approval_id
        ]


def idp_id(sb: LiveSandbox, email: str) -> str:
    r = httpx.get(
        f"{sb.url}/idp/scim/v2/Users",
        params={"filter": f'userName eq "{email}"'},
        headers=IDP,
    )
    return str(r.json()["Resources"][0]["id"])


def login(here: Here, email: str = ALICE) -> subprocess.CompletedProcess[str]:
    """`handover login` in a subprocess; this test plays the person at the verification page."""
    proc = subprocess.Popen(
        [HANDOVER, "login"],
        env=here.env,
        cwd=here.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        found = re.search(r"open (\S+) and enter the code (\S+)", first)
        assert found, first
        uri, user_code = found.groups()
        assert uri == f"{here.issuer}/device"
        page = httpx.post(
            uri,
            data={
                "user_code": user_code,
                "email": email,
                "password": "sandbox-password",
                "action": "allow",
            },
        )
        assert page.status_code == 200, page.text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, first + err)


def test_login_then_approve_as_the_signed_in_person(idp: LiveSandbox, tmp_path: Path) -> None:
    here = Here(idp, tmp_path)
    done = login(here)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"signed in as {ALICE}"
    session = tmp_path / "session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    assert ALICE in here.run("whoami").stdout

    # Sandbox mode, no --as: the signed-in person decides.
    here.approval("apr-oidc-1")
    ok = here.run("approve", "apr-oidc-1")
    assert ok.returncode == 0, ok.stderr
    assert f"approve by {ALICE} recorded" in ok.stdout
    (event,) = here.decisions_about("apr-oidc-1")
    assert event["on_behalf_of"] == ALICE
    assert event["after"]["auth"] == "oidc-device"
    assert event["after"]["auth_subject"] == idp_id(idp, ALICE)
    assert event["after"]["auth_issuer"] == here.issuer
    (decision,) = get_approval(here.db, "apr-oidc-1").decisions
    assert decision.auth == "oidc-device"

    # Outside sandbox mode: --as is refused, and nothing is recorded.
    here.approval("apr-oidc-2")
    prod = here.production()
    refused = here.run("approve", "apr-oidc-2", "--as", "raj.admin@acme.com", env=prod)
    assert refused.returncode == 2 and AS_REFUSED in refused.stderr
    for args in (
        ("tasks", "done", "task-1", "--as", ALICE),
        ("tasks", "cant", "task-1", "--as", ALICE, "--reason", "no"),
        ("org", "resume", "--as", ALICE),
    ):
        out = here.run(*args, env=prod)
        assert out.returncode == 2 and AS_REFUSED in out.stderr, (args, out.stderr)
    click = here.run("sandbox", "click", "apr-oidc-2", "--as", ALICE, env=prod)
    assert click.returncode == 2 and "only in sandbox mode" in click.stderr
    asks = here.run(
        "offboard", "dana.sole@acme.com", "--reason", "termination", "--dry-run",
        "--requester", "raj.admin@acme.com", env=prod,
    )  # fmt: skip
    assert asks.returncode == 2 and "--requester works only in sandbox mode" in asks.stderr
    assert get_approval(here.db, "apr-oidc-2").decisions == []
    assert here.decisions_about("apr-oidc-2") == []

    # The development credentials outside sandbox mode: refused, naming the switch.
    dev = {k: v for k, v in here.env.items() if k != "HANDOVER_SANDBOX"}
    out = here.run("approve", "apr-oidc-2", env=dev)
    assert out.returncode == 2 and "HANDOVER_SANDBOX=1" in out.stderr
    assert get_approval(here.db, "apr-oidc-2").decisions == []

    # Outside sandbox mode, signed in: the person decides, proven.
    ok = here.run("approve", "apr-oidc-2", "--deny", env=prod)
    assert ok.returncode == 0, ok.stderr
    (event,) = here.decisions_about("apr-oidc-2")
    assert event["effect"] == "deny" and event["on_behalf_of"] == ALICE
    assert event["after"]["auth"] == "oidc-device"
    assert event["after"]["auth_subject"] == idp_id(idp, ALICE)

    # A session someone edited is refused; so is none at all.
    here.approval("apr-oidc-3")
    body = json.loads(session.read_text())
    head, payload, sig = body["id_token"].split(".")
    body["id_token"] = f"{head}.{payload[:-4]}AAAA.{sig}"
    session.write_text(json.dumps(body))
    out = here.run("approve", "apr-oidc-3")
    assert out.returncode == 2 and "session is not valid" in out.stderr, out.stderr
    assert here.run("logout").stdout.strip() == "signed out"
    out = here.run("approve", "apr-oidc-3", env=prod)
    assert out.returncode == 2 and "sign in first: handover login" in out.stderr
    assert get_approval(here.db, "apr-oidc-3").decisions == []


def test_an_expired_session_says_so(idp: LiveSandbox, tmp_path: Path, capsys: Any) -> None:
    here = Here(idp, tmp_path)
    assert login(here).returncode == 0
    settings = Settings(home=tmp_path, oidc_issuer=here.issuer, sandbox=False)
    now = current_session(settings)
    assert now is not None and now.email == ALICE
    later = OidcClient(
        here.issuer, "handover-cli", clock=lambda: datetime.now(UTC) + timedelta(hours=2)
    )
    with pytest.raises(typer.Exit) as exited:
        current_session(settings, client=later)
    assert exited.value.exit_code == 2
    assert "your session has expired: sign in first: handover login" in capsys.readouterr().err
    # A session for another provider is not used either.
    other = Settings(home=tmp_path, oidc_issuer=f"{idp.url}/elsewhere", sandbox=False)
    with pytest.raises(typer.Exit):
        current_session(other)


def test_an_inactive_idp_user_cannot_sign_in(idp: LiveSandbox, tmp_path: Path) -> None:
    here = Here(idp, tmp_path)
    proc = subprocess.Popen(
        [HANDOVER, "login"],
        env=here.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        uri, user_code = re.search(  # type: ignore[union-attr]
            r"open (\S+) and enter the code (\S+)", proc.stderr.readline()
        ).groups()
        form = {"user_code": user_code, "password": "sandbox-password"}
        frank = httpx.post(uri, data={**form, "email": "frank.former@acme.com", "action": "allow"})
        assert frank.status_code == 403
        # The person gives up: Deny; the CLI says it is not signed in (exit 3).
        assert httpx.post(uri, data={**form, "email": ALICE, "action": "deny"}).status_code == 200
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3 and "access_denied" in err
    assert not (tmp_path / "session.json").exists()
