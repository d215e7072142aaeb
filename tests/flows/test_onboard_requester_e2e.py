"""Who asked for access, from a Jira ticket: the reporter's account, its email (read from the
account when the issue hides it) and the IdP user it belongs to — never a display name.
Over HTTP against the demo sandbox (its Jira, SCIM IdP and Slack), on a real Prefect server.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ledger.approvals import get_approval
from tests.flows.offboard_stack import OffboardStack, demo_stack

pytestmark = pytest.mark.slow

ALICE = "alice.admin@acme.com"
NEWCOMER = "new.analyst@vendorco.com"
JIRA_AUTH = ("handover", "sandbox-jira-token")


stack = pytest.fixture(name="stack")(demo_stack)


def jira_account(stack: OffboardStack, **account: Any) -> str:
    """A Jira account (the sandbox's control); its accountId."""
    r = httpx.post(f"{stack.url}/_sandbox/jira/users", json=account, timeout=10)
    r.raise_for_status()
    return str(r.json()["user"]["accountId"])


def ticket_from(stack: OffboardStack, account_id: str) -> str:
    """An access request for Production filed by the account ``account_id``; its key."""
    r = httpx.post(
        f"{stack.url}/jira/rest/api/2/issue",
        auth=JIRA_AUTH,
        json={
            "fields": {
                "project": {"key": "ACC"},
                "issuetype": {"name": "Access Request"},
                "summary": f"Amplitude access for {NEWCOMER}",
                "description": f"email: {NEWCOMER}\nprojects: Production=viewer",
                "reporter": {"accountId": account_id},
            }
        },
        timeout=10,
    )
    r.raise_for_status()
    return str(r.json()["key"])


def test_a_reporter_shown_by_display_name_is_still_the_person_and_never_approves(
    stack: OffboardStack,
) -> None:
    """The issue shows 'Alice Admin' and no email; her account's email is alice's: she asked,
    so her approval does not count (it did, when the display name stood for the requester)."""
    from flows.onboard import onboard

    aid = jira_account(
        stack, name="aadmin", display_name="Alice Admin", email=ALICE, email_visible=False
    )
    key = ticket_from(stack, aid)
    shown = httpx.get(f"{stack.url}/jira/rest/api/2/issue/{key}", auth=JIRA_AUTH, timeout=10)
    reporter = shown.json()["fields"]["reporter"]
    assert reporter["displayName"] == "Alice Admin" and "emailAddress" not in reporter
    run = stack.start(onboard, ticket=key)
    appr = stack.paused(NEWCOMER)
    assert appr.requester == ALICE
    assert all(ALICE not in seat for seat in appr.required), appr.required
    assert stack.click(appr, ALICE).status_code == 200  # she approves anyway
    assert stack.click(appr, "sec.lead@acme.com").json()["recorded"] is True
    # Both read by the flow; alice's not counted, so the project-admin seat is still empty.
    deadline = time.monotonic() + 60
    while True:
        mine = [d for d in get_approval(stack.svc.ledger, appr.id).decisions if d.approver == ALICE]
        if mine and (mine[0].counted or mine[0].reason):
            break
        assert time.monotonic() < deadline, "the flow never tallied alice's decision"
        time.sleep(0.2)
    assert (mine[0].counted, mine[0].reason) == (
        False,
        "the requester or the subject cannot approve",
    )
    assert run.thread.is_alive()
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    out = run.wait()
    assert out["status"] == "done", out


def test_a_reporter_nobody_can_be_matched_to_is_refused_on_the_ticket(
    stack: OffboardStack,
) -> None:
    """An account with a display name and no email: who asked is unknown, so nobody is asked
    to approve and nothing is provisioned; the ticket says why and is Rejected."""
    from flows.onboard import onboard

    key = ticket_from(stack, jira_account(stack, name="ghost", display_name="Alice Admin"))
    seq = stack.seq()
    out = stack.start(onboard, ticket=key).wait()
    assert out["status"] == "rejected" and "reporter" in out["problems"], out
    issue = stack.get(f"/_sandbox/jira/issues/{key}")
    assert issue["status"] == "Rejected"
    assert any("display name is never used" in c for c in issue["comments"]), issue
    assert stack.member(NEWCOMER) is None
    assert [w for w in stack.writes(seq) if w["api"] not in ("jira", "slack")] == []
