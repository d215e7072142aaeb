"""The console's approval page over HTTP, as a browser without JavaScript sends it (issue 16):
what it shows (the plan, its warnings, the seats and who filled them, the decisions and how
their authors were authenticated, the history from the audit log), who may see it, and the
decision form's refusals — the requester, an auditor, a person with no seat, a stale plan, a
closed approval, a GET — each recording nothing; then a decision that counts and wakes the
paused onboarding, which finishes. Also: the Slack DM links to the page, and a decision whose
wake-up found the run not yet paused still resumes it (the gate rechecks the ledger).

Against the demo sandbox on loopback and the onboarding flow on the session's Prefect server.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from approvals.gate import PlanSummary, open_approval
from domain.policy import ApprovalContext
from domain.records import ApprovalRequest, ApprovalState
from flows.onboard import onboard
from intake.web import csrf_token
from ledger.approvals import get_approval
from ledger.audit import records
from ledger.rotated_secrets import derive_key
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

REQUESTER = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"
ALICE = "alice.admin@acme.com"  # an it_admin, and the Production project's admin
AUDITOR = "audra.audit@acme.com"
STRANGER = "gov.lead@acme.com"  # an active IdP user with no seat and no console role


def forged_token(world: ConsoleWorld, person: Person, target: str) -> str:
    """The CSRF token the server would accept from ``person``'s session for ``target``: what a
    person who crafts their own POST (no form on their page) could compute at best."""
    cookie = person.http.cookies.get("handover_console")
    assert cookie
    sid = json.loads(base64.urlsafe_b64decode(cookie.split(".")[0]))["sid"]
    master = world.stack.svc.settings.secrets_key.get_secret_value()
    return csrf_token(derive_key(master, b"handover console: csrf v1"), sid, target)


def decisions(world: ConsoleWorld, appr: ApprovalRequest) -> list[Any]:
    return get_approval(world.stack.svc.ledger, appr.id).decisions


def test_the_page_shows_the_request_and_only_seat_holders_may_decide(
    console: ConsoleWorld,
) -> None:
    who = "pat.page@vendorco.com"
    run = console.stack.start(
        onboard, email=who, projects={"Production": "admin"}, requester=REQUESTER
    )
    appr = console.stack.paused(who)
    path = f"/console/approvals/{appr.id}"
    sec = Person(console, SECURITY)
    page = sec.get(path)
    assert page.status_code == 200, page.text
    # A Referer to this origin only (under no-referrer a browser's form POST says Origin: null).
    assert page.headers["referrer-policy"] == "same-origin"
    # The plan itself, its warnings (the naming convention), who asked, about whom.
    assert appr.plan_lines and all(line in page.text for line in appr.plan_lines)
    assert "Production=admin" in page.text
    assert appr.plan_warnings and "naming convention" in page.text
    assert f'id="requester">{REQUESTER}<' in page.text and f'id="subject">{who}<' in page.text
    # The policy's rule and seats, by name, with their candidates; none filled yet.
    assert "production-access:project-admin" in page.text
    assert "production-access:security" in page.text and "sec.oncall@acme.com" in page.text
    assert "0 of 2" in page.text
    # The history from the audit log, the run's state, and the link to the case.
    assert "requested" in page.text and f"/console/cases?run={appr.flow_run_id}" in page.text
    assert 'data-run-state="Paused"' in page.text
    # The live part polls while the approval is open.
    assert 'hx-trigger="every 2s"' in page.text and f'hx-get="{path}/live"' in page.text
    # The form carries the plan hash the page drew.
    assert f'name="plan_hash" value="{appr.plan_hash}"' in page.text
    token = sec.csrf_of(page, path)

    # A GET decides nothing, whatever it carries.
    sec.get(path, params={"decision": "approve", "plan_hash": appr.plan_hash, "csrf": token})
    sec.get(f"{path}/live", params={"decision": "approve"})
    assert decisions(console, appr) == []

    # The requester sees their request, no form; a forged POST with a valid token is refused.
    mine = Person(console, REQUESTER)
    own = mine.get(path)
    assert own.status_code == 200 and 'id="decide"' not in own.text
    assert "you asked for this" in own.text
    forged = mine.post(
        path,
        {
            "csrf": forged_token(console, mine, f"approval:{appr.id}"),
            "plan_hash": appr.plan_hash,
            "decision": "approve",
        },
    )
    assert forged.status_code == 403 and "you asked for this" in forged.text
    # An auditor reads it all, and decides nothing.
    audra = Person(console, AUDITOR)
    read = audra.get(path)
    assert read.status_code == 200 and 'id="decide"' not in read.text
    assert "decide none" in read.text and appr.plan_lines[0] in read.text
    refused = audra.post(
        path,
        {
            "csrf": forged_token(console, audra, f"approval:{appr.id}"),
            "plan_hash": appr.plan_hash,
            "decision": "approve",
        },
    )
    assert refused.status_code == 403
    # A person with no relation to it gets 403 for the page, the live part and the form.
    other = Person(console, STRANGER)
    assert other.get(path).status_code == 403
    assert other.get(f"{path}/live").status_code == 403
    sent = {
        "csrf": forged_token(console, other, f"approval:{appr.id}"),
        "plan_hash": appr.plan_hash,
        "decision": "deny",
    }
    assert other.post(path, sent).status_code == 403
    # An unknown approval: 404.
    assert sec.get("/console/approvals/apr-000000000000").status_code == 404
    # A token of another approval, a decision that is neither, an older plan: refused.
    wrong = sec.post(path, {"csrf": token.replace(token[0], "f" if token[0] != "f" else "e")})
    assert wrong.status_code == 403
    odd = sec.post(path, {"csrf": token, "plan_hash": appr.plan_hash, "decision": "maybe"})
    assert odd.status_code == 400
    stale = sec.post(path, {"csrf": token, "plan_hash": "0" * 64, "decision": "approve"})
    assert stale.status_code == 409 and "the plan changed" in stale.text
    assert "Nothing was recorded" in stale.text
    assert decisions(console, appr) == []

    # Alice fills her seat from Slack; security approves in the console, with a comment.
    assert console.stack.click(appr, ALICE).json()["recorded"] is True
    done = sec.post(
        path,
        {"csrf": token, "plan_hash": appr.plan_hash, "decision": "approve", "comment": "ok <b>"},
    )
    assert done.status_code == 303 and done.headers["location"] == path
    result = run.wait(timeout=120)
    assert result["status"] == "done", result

    closed = get_approval(console.stack.svc.ledger, appr.id)
    assert closed.state is ApprovalState.APPROVED
    [mine_d] = [d for d in closed.decisions if d.approver == SECURITY]
    assert (mine_d.channel, mine_d.auth, mine_d.counted) == ("console", "oidc-code", True)
    assert mine_d.comment == "ok <b>"
    [event] = [
        r
        for r in records(console.stack.svc.ledger, subject=who)
        if r.action == "approval.decision" and r.on_behalf_of == SECURITY
    ]
    assert event.after is not None and event.after["channel"] == "console"
    assert event.after["auth"] == "oidc-code" and event.after["auth_subject"]

    after = sec.get(path)
    assert 'data-state="approved"' in after.text and "2 of 2" in after.text
    assert "hx-trigger" not in after.text  # closed: no more polling
    assert "You approved this plan" in after.text and 'id="decide"' not in after.text
    assert "ok &lt;b&gt;" in after.text  # what a person typed is shown as text
    # Which seat each counted approval filled, and how its author was authenticated.
    assert re.search(
        r"alice\.admin@acme\.com</th>.*?production-access:project-admin", after.text, re.S
    )
    assert re.search(r"sec\.lead@acme\.com</th>.*?signed in to the console", after.text, re.S)
    assert "Slack click" in after.text and "approved" in after.text
    # A decision on a closed approval is refused, and recorded nowhere.
    late = sec.post(path, {"csrf": token, "plan_hash": appr.plan_hash, "decision": "deny"})
    assert late.status_code == 409
    assert len(decisions(console, appr)) == 2


def test_the_slack_message_links_to_the_page(console: ConsoleWorld) -> None:
    who = "pat.link@vendorco.com"
    run = console.stack.start(
        onboard, email=who, projects={"Production": "admin"}, requester=REQUESTER
    )
    appr = console.stack.paused(who)
    url = f"{console.url}/console/approvals/{appr.id}"
    dm = [d for d in console.stack.dms(SECURITY) if appr.id in json.dumps(d["blocks"])][-1]
    buttons = [b["accessory"] for b in dm["blocks"] if "accessory" in b]
    assert {"url": url, "text": "Open in the console"}.items() <= {
        "url": buttons[0]["url"],
        "text": buttons[0]["text"]["text"],
    }.items()
    console.stack.click(appr, SECURITY, deny=True)
    assert run.wait(timeout=120)["status"] == "denied"


def test_a_stale_page_after_a_replan_records_nothing(console: ConsoleWorld) -> None:
    """The gate re-plans (the world changed before apply): the form drawn for the old plan is
    refused, saying so, and the page shows the new plan to decide."""
    svc = console.stack.svc
    ctx = ApprovalContext(
        runbook="onboard",
        subject="pat.stale@vendorco.com",
        requester=REQUESTER,
        reason="access_request",
        production_roles=("admin",),
        project_admins=(ALICE,),
    )
    first = PlanSummary({"invite": 1}, lines=["pat.stale@vendorco.com: Production=viewer"])
    appr, _ = open_approval(
        svc, ctx, plan_hash="a" * 64, summary=first, flow_run_id="", run_key="stale-page"
    )
    path = f"/console/approvals/{appr.id}"
    sec = Person(console, SECURITY)
    page = sec.get(path)
    token = sec.csrf_of(page, path)
    assert 'data-run-state=""' in page.text  # no flow run: its state is unknown
    second = PlanSummary({"invite": 1}, lines=["pat.stale@vendorco.com: Production=admin"])
    open_approval(
        svc, ctx, plan_hash="b" * 64, summary=second, flow_run_id="", run_key="stale-page"
    )
    stale = sec.post(path, {"csrf": token, "plan_hash": "a" * 64, "decision": "approve"})
    assert stale.status_code == 409
    assert "the plan changed, look at it again" in stale.text
    assert f'name="plan_hash" value="{"b" * 64}"' in stale.text  # the new plan, to decide
    assert "Production=admin" in stale.text and "replanned" in stale.text
    assert decisions(console, appr) == []
