"""Jira as organisations configure it (issue 17), end to end over HTTP: a Jira Software project
without an "Access Request" type (requests filed as Tasks), a label that marks a request, a Jira
Service Management request type, a ticket that is none of these, and Jira Cloud people known
by accountId only.

One world for the module: the demo sandbox over loopback with a ``WEB`` project (Jira
Software's default scheme) and a ``HELP`` service desk, Handover configured with
``HANDOVER_JIRA_REQUEST_TYPES=Task,Request access`` and ``HANDOVER_JIRA_REQUEST_LABEL=
access-request``, the intake taking signed Jira webhooks and starting onboarding runs on the
session's real Prefect server; the CLI in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intake.app import create_intake
from intake.jira_hook import sign_jira
from intake.launch import ThreadLauncher, thread_launcher
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow

JIRA_AUTH = ("handover", "sandbox-jira-token")
JIRA_SECRET = "sandbox-jira-secret"
ALICE = "alice.admin@acme.com"
SOFIA = "sofia.lead@acme.com"
SETTINGS = {
    "HANDOVER_JIRA_REQUEST_TYPES": "Task, Request access",
    "HANDOVER_JIRA_REQUEST_LABEL": "access-request",
}


class World:
    """The module's sandbox, stack, intake (with its launcher) and the JSM request type ids."""

    def __init__(self, stack: OffboardStack, launcher: ThreadLauncher, desk: dict[str, str]):
        self.stack, self.launcher, self.desk = stack, launcher, desk
        self.intake = TestClient(create_intake(stack.svc, onboard_launcher=launcher))

    @property
    def url(self) -> str:
        return self.stack.url

    def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/_sandbox/jira/{path}", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def file(self, project: str, issuetype: str, email: str, **fields: Any) -> str:
        """A ticket asking for Staging viewer for ``email`` (reporter: Sofia unless given)."""
        reporter = fields.pop("reporter", {"name": SOFIA})
        r = httpx.post(
            f"{self.url}/jira/rest/api/2/issue",
            auth=JIRA_AUTH,
            json={
                "fields": {
                    "project": {"key": project},
                    "issuetype": {"name": issuetype},
                    "summary": f"Amplitude access for {email}",
                    "description": f"email: {email}\nprojects: Staging=viewer",
                    "reporter": reporter,
                    **fields,
                }
            },
            timeout=10,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def issue(self, key: str) -> dict[str, Any]:
        return dict(self.stack.get(f"/_sandbox/jira/issues/{key}"))

    def deliver(self, key: str, event: str = "jira:issue_created") -> httpx.Response:
        """A signed webhook about ``key`` carrying the issue as Jira's REST API shows it."""
        shown = httpx.get(f"{self.url}/jira/rest/api/2/issue/{key}", auth=JIRA_AUTH, timeout=10)
        body = json.dumps(
            {"webhookEvent": event, "timestamp": time.time_ns() // 10**6, "issue": shown.json()}
        ).encode()
        return self.intake.post("/hooks/jira", content=body, headers=sign_jira(JIRA_SECRET, body))

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """``handover ARGS…`` in a subprocess, configured as the module's world."""
        exe = Path(sys.executable).with_name("handover")
        return subprocess.Popen(
            [str(exe), *args],
            env={**self.stack.env(), **SETTINGS},
            cwd=self.stack.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def approve(self, email: str) -> None:
        """Wait for the run about ``email`` at its gate and fill every seat."""
        appr = self.stack.paused(email)
        assert appr.requester == SOFIA, appr
        self.stack.approve_every_seat(appr)


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[World]:
    from flows.onboard import onboard
    from sandbox.app import create_app
    from tasks.runtime import use_runtime

    with pytest.MonkeyPatch.context() as env:
        for k, v in SETTINGS.items():  # what the stack's Settings read, as the CLI's do
            env.setenv(k, v)
        sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=17))
        try:
            stack = make_stack(sb, tmp_path_factory.mktemp("jira-kinds"))
            with use_runtime(stack.rt):  # the launcher's runs start in a copy of this context
                launcher = thread_launcher(onboard)
            w = World(stack, launcher, {})
            w.control("projects", {"key": "WEB", "name": "Web Platform"})  # no Access Request
            w.desk = w.control(
                "projects",
                {
                    "key": "HELP",
                    "name": "IT Help",
                    "issue_types": ["Service Request", "Incident"],
                    "request_types": [
                        {"name": "Request access", "issue_type": "Service Request"},
                        {"name": "Report a broken laptop", "issue_type": "Incident"},
                    ],
                },
            )["request_types"]
            yield w
        finally:
            stack.svc.ledger.dispose()
            sb.stop()


def started(w: World, r: httpx.Response) -> dict[str, Any]:
    """The outcome of the run a delivery started (after its approvals)."""
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "started"
    return dict(r.json())


def finished(w: World, ref: str) -> dict[str, Any]:
    out = w.launcher.wait(ref, timeout=180)
    assert isinstance(out, dict), out
    return out


# --- a Jira whose requests are Tasks ------------------------------------------------------------


def test_a_task_in_a_jira_without_access_requests_goes_through_from_the_cli(w: World) -> None:
    email = "web.task@vendorco.com"
    key = w.file("WEB", "Task", email)
    p = w.cli("onboard", "--ticket", key, "--json")
    try:
        w.approve(email)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    res = json.loads(out)
    assert res["status"] == "done", res
    assert w.stack.member(email) is not None
    assert w.issue(key)["status"] == "Done"


def test_a_task_in_a_jira_without_access_requests_goes_through_from_the_webhook(
    w: World,
) -> None:
    email = "web.hook@vendorco.com"
    key = w.file("WEB", "Task", email)
    ref = started(w, w.deliver(key))["run"]
    w.approve(email)
    assert finished(w, ref)["status"] == "done"
    assert w.stack.member(email) is not None and w.issue(key)["status"] == "Done"


def test_a_ticket_marked_by_the_label_is_a_request_whatever_its_type(w: World) -> None:
    email = "label.mark@vendorco.com"
    key = w.file("WEB", "Story", email, labels=["access-request"])
    ref = started(w, w.deliver(key))["run"]
    w.approve(email)
    assert finished(w, ref)["status"] == "done"
    assert w.stack.member(email) is not None


def test_a_jsm_request_type_is_a_request(w: World) -> None:
    """A service desk's "Request access" (an issue of type Service Request, not configured):
    its request type makes it one."""
    email = "jsm.request@vendorco.com"
    key = w.file("HELP", "Service Request", email, customfield_10010=w.desk["Request access"])
    ref = started(w, w.deliver(key))["run"]
    w.approve(email)
    assert finished(w, ref)["status"] == "done"
    assert w.stack.member(email) is not None


# --- a ticket that is not a request -------------------------------------------------------------


def test_a_wrong_type_ticket_exits_2_says_so_on_the_ticket_and_provisions_nothing(
    w: World,
) -> None:
    email = "bug.filer@vendorco.com"
    key = w.file("WEB", "Bug", email)
    seq = w.stack.seq()
    p = w.cli("onboard", "--ticket", key)
    out, err = p.communicate(timeout=180)
    assert p.returncode == 2, (out, err)
    assert "Traceback" not in out + err
    assert f'{key} is not an access request (its type is "Bug", its labels: none)' in err
    assert '"Task" or "Request access"' in err and 'labelled "access-request"' in err
    comments = w.issue(key)["comments"]
    assert len(comments) == 1 and "is not an access request" in comments[0]
    assert "To ask for access, file a ticket of type" in comments[0]
    assert w.issue(key)["status"] == "Open"  # somebody's Bug: not Handover's to close
    writes = w.stack.writes(seq)
    assert [(x["api"], x["method"]) for x in writes] == [("jira", "POST")], writes
    assert w.stack.member(email) is None
    # Asked again: the same answer, and no second comment.
    again = w.cli("onboard", "--ticket", key, "--json")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 2 and json.loads(out)["status"] == "not_an_access_request"
    assert len(w.issue(key)["comments"]) == 1


def test_the_webhook_ignores_tickets_that_are_not_requests(w: World) -> None:
    bug = w.file("WEB", "Bug", "bug.hook@vendorco.com")
    laptop = w.file(
        "HELP",
        "Incident",
        "laptop@vendorco.com",
        customfield_10010=w.desk["Report a broken laptop"],
    )
    runs = len(w.launcher.runs)
    for key in (bug, laptop):
        for event in ("jira:issue_created", "jira:issue_updated"):
            r = w.deliver(key, event)
            assert r.status_code == 200 and r.json() == {"ok": True, "ignored": event}, r.text
        assert w.issue(key)["comments"] == []
    assert len(w.launcher.runs) == runs


def test_an_unknown_ticket_exits_2(w: World) -> None:
    p = w.cli("onboard", "--ticket", "WEB-9999")
    out, err = p.communicate(timeout=180)
    assert p.returncode == 2, (out, err)
    assert "Traceback" not in out + err
    assert "WEB-9999: no such ticket in Jira" in err


# --- people on Jira Cloud -----------------------------------------------------------------------


def cloud_account(w: World, name: str, **flags: Any) -> str:
    body = {"name": name, "display_name": "Alice Admin", "email": ALICE, "account_only": True}
    return str(w.control("users", body | flags)["user"]["accountId"])


def test_a_reporter_known_by_account_id_only_is_the_idp_user(w: World) -> None:
    """Jira Cloud shows the reporter as an accountId and a display name; the account, read by
    accountId, has Alice's email: the requester is Alice as the IdP knows her, and she is no
    approver of her own request."""
    from flows.onboard import onboard

    email = "cloud.person@vendorco.com"
    aid = cloud_account(w, "alice-cloud", email_visible=False)
    key = w.file("WEB", "Task", email, reporter={"accountId": aid})
    shown = httpx.get(f"{w.url}/jira/rest/api/2/issue/{key}", auth=JIRA_AUTH, timeout=10)
    assert set(shown.json()["fields"]["reporter"]) >= {"accountId", "displayName"}
    assert not {"name", "key", "emailAddress"} & set(shown.json()["fields"]["reporter"])
    run = w.stack.start(onboard, ticket=key)
    appr = w.stack.paused(email)
    assert appr.requester == ALICE
    assert all(ALICE not in seat for seat in appr.required), appr.required
    assert w.stack.click(appr, appr.required[0][0], deny=True).status_code == 200
    assert run.wait()["status"] == "denied"


def test_a_reporter_that_cannot_be_resolved_is_refused(w: World) -> None:
    """An accountId whose profile hides its email from apps too: nobody can tell who asked, so
    the request is refused on the ticket and nothing is provisioned."""
    from flows.onboard import onboard

    email = "nobody.asked@vendorco.com"
    aid = cloud_account(w, "alice-private", email_visible=False, email_to_apps=False)
    key = w.file("WEB", "Task", email, reporter={"accountId": aid})
    seq = w.stack.seq()
    out = w.stack.start(onboard, ticket=key).wait()
    assert out["status"] == "rejected" and "reporter" in out["problems"], out
    issue = w.issue(key)
    assert issue["status"] == "Rejected"
    assert any("display name is never used" in c for c in issue["comments"]), issue
    assert w.stack.member(email) is None
    assert [x for x in w.stack.writes(seq) if x["api"] not in ("jira", "slack")] == []
