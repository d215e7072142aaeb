"""The onboarding runbook end to end, over HTTP against the demo sandbox, on a real Prefect
server (issue 6, "Done when").

Covered: ticket ACC-1 through a signed ``POST /hooks/jira`` → Slack approval by a signed click →
an invitation pending with exactly the planned roles and modules → ticket Done and a grant with
its end date; the same ticket again (its own update event) starts nothing, and once edited a
run that does nothing twice; ACC-2 (invalid) → one explanatory comment, Rejected, nothing
provisioned; an existing member → change_needed; a pending invitee → resend, never a
duplicate; the IdP-managed path (user created, added to the mapped groups, provisioned into
the org).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from domain.runbook import RunbookFailed
from ledger.grants import grants
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, Run, make_stack

pytestmark = pytest.mark.slow

VENDOR = "analytics-vendor-max.roe@vendorco.com"
SOFIA = "sofia.lead@acme.com"
GOV = "gov.lead@acme.com"
ALICE = "alice.admin@acme.com"
JIRA_SECRET = "sandbox-jira-secret"
ORG_PATHS = ("/admin/", "/scim/", "/idp/")


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    return make_stack(sandbox, tmp_path)


def start(stack: OffboardStack, **params: Any) -> Run:
    """Run the onboarding flow in a thread (it pauses at the gate until a decision)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.onboard import onboard
    from tasks.runtime import use_runtime

    run = Run(threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            with (
                temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                use_runtime(stack.rt),
            ):
                run.result.append(onboard(**params))
        except RunbookFailed as exc:  # a failed run's outcome
            run.result.append(exc.outcome)
        except BaseException as exc:
            run.error.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()
    return run


def org_writes(stack: OffboardStack, since: int) -> list[dict[str, Any]]:
    return [w for w in stack.writes(since) if w["path"].startswith(ORG_PATHS)]


def issue(stack: OffboardStack, key: str) -> dict[str, Any]:
    return stack.get(f"/_sandbox/jira/issues/{key}")  # type: ignore[no-any-return]


def hook_body(
    key: str, event: str = "jira:issue_created", ts: int = 1, description: str | None = None
) -> bytes:
    fields: dict[str, Any] = {"issuetype": {"name": "Access Request"}}
    if description is not None:
        fields["description"] = description  # what tells an edit of the request (intake)
    return json.dumps(
        {"webhookEvent": event, "timestamp": ts, "issue": {"key": key, "fields": fields}}
    ).encode()


def test_acc1_from_the_jira_hook_to_done(stack: OffboardStack) -> None:
    from flows.onboard import onboard
    from intake.jira_hook import jira_router, sign_jira
    from intake.launch import thread_launcher
    from tasks.runtime import use_runtime

    with use_runtime(stack.rt):  # the launcher's runs start in a copy of this context
        launcher = thread_launcher(onboard)
    app = FastAPI()
    app.include_router(jira_router(stack.svc, launcher))
    hooks = TestClient(app)
    seq0 = stack.seq()

    # Unsigned: refused, nothing started.
    body = hook_body("ACC-1")
    assert hooks.post("/hooks/jira", content=body).status_code == 401
    r = hooks.post("/hooks/jira", content=body, headers=sign_jira(JIRA_SECRET, body))
    assert r.status_code == 202, r.text
    ref = r.json()["run"]
    # The same delivery again: claimed once.
    again = hooks.post("/hooks/jira", content=body, headers=sign_jira(JIRA_SECRET, body))
    assert again.status_code == 200 and again.json()["duplicate"] is True

    appr = stack.paused(VENDOR)
    # Production Viewer → the production rule (its admin, security); govern → data
    # governance; the reporter never approves.
    assert appr.rule == "production-access,governance-modules", appr
    assert [GOV] in appr.required and len(appr.required) == 3, appr.required
    stack.approve_every_seat(appr)
    res = launcher.wait(ref, timeout=180)
    assert isinstance(res, dict), res
    assert res["status"] == "done", res
    assert all(v == "pass" for v in res["verification"].values()), res["verification"]
    assert [s["kind"] for s in res["plan"]["steps"]] == ["invite", "record_grant"]

    m = stack.member(VENDOR)
    assert m is not None and m["status"] == "pending"
    got = stack.rt.org.get_member(VENDOR)
    assert got is not None
    assert {g.project: g.role.value for g in got.projects} == {
        "Staging": "manager",
        "Production": "viewer",
    }
    assert [x.value for x in got.modules] == ["govern"]
    assert got.org_role is not None and got.org_role.value == "member"
    assert "ACC-1" in got.note and "SOW-2230" in got.note

    t = issue(stack, "ACC-1")
    assert t["status"] == "Done"
    # The ticket showed the plan the approvers decided, step by step.
    asked = next(c for c in t["comments"] if "requested for plan" in c)
    assert f"- {VENDOR} is invited as org member: Production=viewer, Staging=manager" in asked
    assert any(f"Onboarding of {VENDOR}: done" in c and "until" in c for c in t["comments"])
    until = res["granted"].rsplit("until ", 1)[1]
    gs = grants(stack.rt.ledger, subject=VENDOR)
    assert gs and {g.end.date().isoformat() for g in gs} == {until}
    assert {g.ticket for g in gs} == {"ACC-1"}
    assert any("Onboarding of" in d["text"] for d in stack.dms(SOFIA))
    invites = [
        w
        for w in org_writes(stack, seq0)
        if w["method"] == "POST" and w["path"].rstrip("/").endswith("/members")
    ]
    assert len(invites) == 1

    # Our own comment and transition make Jira send issue_updated: the ticket's run has ended
    # and its request is unchanged, so nothing starts (one run per ticket).
    seq1 = stack.seq()
    comments = len(t["comments"])
    body2 = hook_body("ACC-1", "jira:issue_updated", ts=2)
    r = hooks.post("/hooks/jira", content=body2, headers=sign_jira(JIRA_SECRET, body2))
    assert r.status_code == 200 and r.json()["status"] == "handled", r.text
    assert r.json()["run"] == ref and list(launcher.runs) == [ref]
    # Its request edited after the end: a new run, and the runbook does nothing twice.
    body3 = hook_body("ACC-1", "jira:issue_updated", ts=3, description="email: edited")
    r = hooks.post("/hooks/jira", content=body3, headers=sign_jira(JIRA_SECRET, body3))
    assert r.status_code == 202 and r.json()["ticket_run"] == "ACC-1#2", r.text
    res2 = launcher.wait(r.json()["run"], timeout=180)
    assert res2["status"] == "nothing_to_do", res2
    assert org_writes(stack, seq1) == []
    assert len(issue(stack, "ACC-1")["comments"]) == comments
    assert len(grants(stack.rt.ledger, subject=VENDOR)) == len(gs)

    # Other issue types are ignored.
    other = json.dumps(
        {"webhookEvent": "jira:issue_created", "issue": {"key": "IT-1", "fields": {}}}
    ).encode()
    r = hooks.post("/hooks/jira", content=other, headers=sign_jira(JIRA_SECRET, other))
    assert r.status_code == 200 and "ignored" in r.json()


def test_acc2_invalid_gets_one_comment_and_nothing_is_provisioned(stack: OffboardStack) -> None:
    seq0 = stack.seq()
    res = start(stack, ticket="ACC-2").wait()
    assert res["status"] == "rejected", res
    t = issue(stack, "ACC-2")
    assert t["status"] == "Rejected"
    (comment,) = t["comments"]
    assert "not-an-email" in comment and "line 1" in comment and "line 2" in comment
    assert "2020-01-01" in comment
    assert org_writes(stack, seq0) == []
    # Again (the update our comment causes): no second comment.
    res2 = start(stack, ticket="ACC-2").wait()
    assert res2["status"] == "nothing_to_do"
    assert len(issue(stack, "ACC-2")["comments"]) == 1


def test_an_existing_member_is_a_change_not_an_invite(stack: OffboardStack) -> None:
    seq0 = stack.seq()
    res = start(stack, email="jon.smith@acme.com", projects={"Production": "manager"}).wait()
    assert res["status"] == "change_needed", res
    assert any("use change" in w for w in res["warnings"])
    assert res["plan"]["steps"] == []
    assert org_writes(stack, seq0) == []


def test_a_pending_invitee_gets_a_resend_never_a_duplicate(stack: OffboardStack) -> None:
    who = "slow.accept@partner.io"
    before = [i for i in stack.rt.org.list_invitations() if i.email == who]
    seq0 = stack.seq()
    res = start(stack, email=who, projects={"Production": "viewer"}).wait()
    assert res["status"] == "done", res
    assert [s["kind"] for s in res["plan"]["steps"]] == ["resend_invitation"]
    writes = org_writes(stack, seq0)
    assert [w["method"] for w in writes] == ["POST"] and "resend" in writes[0]["path"]
    after = [i for i in stack.rt.org.list_invitations() if i.email == who]
    assert len(after) == len(before)
    assert max(i.resend_count for i in after) == max(i.resend_count for i in before) + 1


def test_the_idp_managed_path_provisions_through_the_idp(stack: OffboardStack) -> None:
    who = "analytics-vendor-ann.lee@vendorco.com"
    run = start(
        stack,
        email=who,
        projects={"Production": "viewer", "Staging": "member"},
        org_role="member",
        idp_managed=True,
    )
    appr = stack.paused(who)
    stack.approve_every_seat(appr)  # Production Viewer: the production rule's two seats
    res = run.wait()
    assert res["status"] == "done", res
    assert [s["kind"] for s in res["plan"]["steps"]] == [
        "idp_create_user",
        "idp_add_group",
        "idp_add_group",
        "idp_add_group",
    ]
    assert res["verification"]["provisioned_in_org"] == "pass"
    user = stack.rt.idp.find_user(who)
    assert user is not None and user.active
    names = {g.name for g in stack.rt.idp.groups_of(user.id)}
    assert {
        "amplitude-org-members",
        "amplitude-project-viewers-production",
        "amplitude-project-members-staging",
    } <= names
    m = stack.rt.org.get_member(who)
    assert m is not None and m.idp_managed
    assert {g.project: g.role.value for g in m.projects} == {
        "Production": "viewer",
        "Staging": "member",
    }
    # Run again: nothing twice (already provisioned → the same access, nothing to do).
    seq1 = stack.seq()
    res2 = start(
        stack,
        email=who,
        projects={"Production": "viewer", "Staging": "member"},
        org_role="member",
        idp_managed=True,
    ).wait()
    assert res2["status"] in ("nothing_to_do", "change_needed"), res2
    assert org_writes(stack, seq1) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give a ticket"),
        (["--email", "a@b.com"], "give a ticket"),
        (["--email", "a@b.com", "--project", "Production"], "NAME=ROLE"),
        (["--email", "a@b.com", "--project", "Production=owner"], "projects"),
        (["--email", "a@b.com", "--project", "Production=viewer", "--module", "x"], "modules"),
        (["--email", "not-an-email", "--project", "Production=viewer"], "email"),
        (["--email", "a@b.com", "--project", "P=viewer", "--until", "2020-01-01"], "future"),
        (["--ticket", "ACC-1", "--email", "a@b.com", "--project", "P=viewer"], "not both"),
    ],
)
def test_bad_input_exits_2_before_anything(args: list[str], says: str) -> None:
    import typer
    from typer.testing import CliRunner

    from cli.onboard_cmd import onboard as onboard_cmd

    app = typer.Typer()
    app.command()(onboard_cmd)
    app.command("noop")(lambda: None)  # a group, so the command is addressed by name
    r = CliRunner().invoke(app, ["onboard", *args])
    assert r.exit_code == 2, r.output
    assert says in r.output
