"""An approver in a real headless Chromium: signs in at the sandbox IdP, finds the request in
their inbox, reads the plan on the approval page, approves it there — the last seat — and sees
the page's live part turn *approved* (htmx, without a reload) while the paused onboarding
resumes and finishes. Screenshots: ``console-inbox``, ``console-approval``."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.records import ApprovalRequest, ApprovalState
from flows.onboard import onboard
from ledger.approvals import get_approval
from tests.intake.console.browser import screenshot, sign_in, wait_for
from tests.intake.console.world import ConsoleWorld, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

REQUESTER = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"
ALICE = "alice.admin@acme.com"


def run_state(appr: ApprovalRequest) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        state = c.read_flow_run(UUID(appr.flow_run_id)).state
    return state.name if state is not None and state.name else ""


def settled(console: ConsoleWorld, appr: ApprovalRequest) -> bool:
    """The flow tallied every decision so far (each marked counted or why not) and is paused
    again: the next decision is the one that wakes it."""
    now = get_approval(console.stack.svc.ledger, appr.id)
    tallied = all(d.counted or d.reason for d in now.decisions)
    return tallied and now.state is ApprovalState.PENDING and run_state(appr) == "Paused"


def test_an_approver_approves_in_the_browser_and_the_paused_run_resumes(
    console: ConsoleWorld, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    who = "pat.browser@vendorco.com"
    run = console.stack.start(
        onboard,
        email=who,
        projects={"Production": "admin"},
        requester=REQUESTER,
        justification="quarterly analysis",
    )
    appr = console.stack.paused(who)
    # The project admin's seat from Slack first: the browser's click is the last one.
    assert console.stack.click(appr, ALICE).json()["recorded"] is True
    wait_for(lambda: settled(console, appr), timeout=60, what="the flow to tally alice's click")

    sign_in(browser, console.url, SECURITY)
    link = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, f"a[href='/console/approvals/{appr.id}']"),
        what="the request in the inbox",
    )[0]
    assert who in browser.find_element(By.ID, "to-decide").find_element(By.XPATH, "..").text
    screenshot(browser, "console-inbox")

    link.click()
    wait_for(lambda: browser.find_elements(By.ID, "decide"), what="the approval page's form")
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Approval {appr.id}"
    lines = browser.find_element(By.ID, "plan-lines").text
    assert all(line in lines for line in appr.plan_lines) and "Production=admin" in lines
    assert "naming convention" in browser.find_element(By.ID, "warnings").text
    seats = browser.find_element(By.ID, "seats").text
    assert "production-access:project-admin" in seats and ALICE in seats
    assert browser.find_element(By.ID, "filled").text == "1 of 2"
    assert browser.find_element(By.ID, "state").text == "pending"
    # Times in the viewer's zone (the page's script ran): not the UTC the server wrote.
    assert "UTC" not in browser.find_element(By.CSS_SELECTOR, "#decisions time").text
    screenshot(browser, "console-approval")

    browser.find_element(By.ID, "comment").send_keys("least privilege checked")
    browser.find_element(By.ID, "approve").click()
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".flash[role='status']"),
        what="the page again, saying the decision is recorded",
    )
    assert "You approved this plan" in browser.find_element(By.ID, "outcome").text
    assert not browser.find_elements(By.ID, "decide")  # decided: no second form
    # A mark in this page: if it survives, the state below changed without a reload (htmx).
    browser.execute_script("document.body.dataset.mark = 'this page'")
    wait_for(
        lambda: browser.find_element(By.ID, "state").text == "approved",
        timeout=60,
        what="the live part to show the approval approved",
    )
    assert browser.execute_script("return document.body.dataset.mark") == "this page"
    assert browser.find_element(By.ID, "filled").text == "2 of 2"
    # Closed: the live part no longer polls.
    live = browser.find_element(By.ID, "live")
    assert live.get_attribute("hx-trigger") is None

    # The paused run resumed and finished: the ledger and Prefect say so.
    result = run.wait(timeout=120)
    assert result["status"] == "done", result
    assert run_state(appr) == "Completed"
    decided = get_approval(console.stack.svc.ledger, appr.id)
    [mine] = [d for d in decided.decisions if d.approver == SECURITY]
    assert (mine.channel, mine.auth, mine.counted) == ("console", "oidc-code", True)
    assert mine.comment == "least privilege checked"

    # The case's timeline, from the approval page's link: approved by both, and the invitation.
    browser.find_element(By.LINK_TEXT, "the case of this run").click()
    wait_for(
        lambda: "onboard.invite" in browser.find_element(By.TAG_NAME, "main").text,
        timeout=60,
        what="the case timeline to show the invitation",
    )
    timeline = browser.find_element(By.TAG_NAME, "main").text
    assert "approval.approved" in timeline and SECURITY in timeline and ALICE in timeline
