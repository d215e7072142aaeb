"""The console's access review campaign (issue 16): security works a review run item by item and
in bulk to its signed-off report; the decisions are the review's own per-item approvals, so a
revoked person is offboarded by the offboarding runbook and a certified one stays.

Over HTTP (a browser without JavaScript, signed in at the sandbox IdP) for who may see and
decide, and in the real headless Chromium for the campaign worked to its report. Each test runs
its own review (``approve="per_item"``) of the demo world against a trimmed roster (dana.sole
active: four items to decide — frank.former and jon.smith@gmail.com to remove, the Cyrillic
look-alike's and expired.invite's invitations to revoke — beside the reported ones).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.campaign import CampaignItem
from ledger.approvals import get_approval
from ledger.campaigns import get_campaign, list_campaigns
from tests.flows.offboard_stack import Run
from tests.intake.console.browser import screenshot, sign_in, wait_for
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

SECURITY = "sec.lead@acme.com"
AUDITOR = "audra.audit@acme.com"
REQUESTER = "sofia.lead@acme.com"
FRANK = "frank.former@acme.com"
JON_GMAIL = "jon.smith@gmail.com"
CYRILLIC = "j\u043en.smith@acme.com"
EXPIRED = "expired.invite@partner.io"


def _roster(world: ConsoleWorld) -> Path:
    """The sandbox's HR roster with dana.sole active (her offboarding is not this test's)."""
    rows = httpx.get(f"{world.sandbox.url}/_sandbox/roster", timeout=10).json()["rows"]
    for r in rows:
        if r["email"] == "dana.sole@acme.com":
            r["status"], r["end_date"] = "active", None
    path = world.stack.tmp / f"roster-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def start_review(world: ConsoleWorld) -> tuple[Run, str, dict[str, CampaignItem]]:
    """A per-item review running in a thread; its run id and actionable items by subject, once
    every item's approval is open."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.review import access_review
    from tasks.runtime import use_runtime

    db = world.stack.rt.ledger
    before = {c.run for c in list_campaigns(db)}
    roster = _roster(world)
    run = Run(threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            with (
                temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                use_runtime(world.stack.rt),
            ):
                run.result.append(
                    access_review(
                        roster=str(roster),
                        approve="per_item",
                        report_dir=str(world.stack.tmp / "reports"),
                    )
                )
        except BaseException as exc:  # surfaced by Run.wait
            run.error.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()

    def opened() -> tuple[str, dict[str, CampaignItem]] | None:
        new = [c.run for c in list_campaigns(db) if c.run not in before]
        if not new:
            return None
        _, items = get_campaign(db, new[0])
        actionable = {i.subject: i for i in items if i.actionable}
        if not actionable or not all(i.approval_id for i in actionable.values()):
            return None
        return new[0], actionable

    found = wait_for(opened, timeout=120, what="the review's campaign with its approvals")
    return run, found[0], found[1]


def _values(page: httpx.Response) -> dict[str, str]:
    """The bulk form's checkbox values on a campaign page, by finding id."""
    return {
        v.split("@")[0]: v
        for v in re.findall(r'form="bulk" name="item" value="([^"]+)"', page.text)
    }


def test_who_may_see_and_decide_a_campaign_and_security_certifies_it_all(
    console: ConsoleWorld,
) -> None:
    run, rid, items = start_review(console)
    # Four items; three when the browser's campaign ran first (frank was offboarded there).
    assert {JON_GMAIL, CYRILLIC, EXPIRED} <= set(items) <= {FRANK, JON_GMAIL, CYRILLIC, EXPIRED}
    n = len(items)
    page_url, decide = f"/console/reviews/{rid}", f"/console/reviews/{rid}/decide"

    # A requester sees no review, and cannot decide one.
    requester = Person(console, REQUESTER)
    assert requester.get("/console/reviews").status_code == 403
    assert requester.get(page_url).status_code == 403
    assert requester.post(decide, {"csrf": "0" * 64, "decision": "revoke"}).status_code == 403

    # The auditor reads the campaign and its evidence, with no form; a forged POST is refused.
    auditor = Person(console, AUDITOR)
    listed = auditor.get("/console/reviews")
    assert listed.status_code == 200 and page_url in listed.text
    seen = auditor.get(page_url)
    assert seen.status_code == 200, seen.text
    assert "not on the HR roster" in seen.text  # jon.smith@gmail.com's evidence
    assert "Prod Managers" in seen.text  # gina.groups: the group that gives her role
    assert "Not plain ASCII: j\\u043en.smith@acme.com" in seen.text  # the look-alike
    assert f"0 of {n} items decided" in seen.text
    assert f'action="{decide}"' not in seen.text and 'id="read-only"' in seen.text
    jon = items[JON_GMAIL].finding_id
    forged = auditor.post(decide, {"csrf": "0" * 64, "decision": "revoke", "item": f"{jon}@x"})
    assert forged.status_code == 403

    # Security: a stale token (another session's, another form's) is refused.
    sec = Person(console, SECURITY)
    page = sec.get(page_url)
    assert page.status_code == 200 and f'action="{decide}"' in page.text
    token = sec.csrf_of(page, decide)
    values = _values(page)
    assert set(values) == {i.finding_id for i in items.values()}
    again = Person(console, SECURITY)  # a new sign-in: a new session
    stale = again.post(decide, {"csrf": token, "decision": "revoke", "item": list(values.values())})
    assert stale.status_code == 403 and "stale" in stale.text
    other = sec.post(
        decide,
        {
            "csrf": sec.csrf_of(page, "/console/sign-out"),
            "decision": "revoke",
            "item": list(values.values()),
        },
    )
    assert other.status_code == 403
    # A plan other than the one the item's approval asks about is refused, nothing recorded.
    changed = sec.post(decide, {"csrf": token, "decision": "revoke", "item": f"{jon}@{'0' * 12}"})
    assert changed.status_code == 409 and "plan changed" in changed.text
    for i in items.values():
        assert get_approval(console.stack.svc.ledger, i.approval_id).decisions == []

    # Security certifies everything in one POST: nobody is removed; the report says who.
    done = sec.post(decide, {"csrf": token, "decision": "certify", "item": list(values.values())})
    assert done.status_code == 303 and done.headers["location"].endswith(f"?decided={n}")
    out = run.wait(180)
    assert out["status"] == "denied"
    assert console.stack.member(JON_GMAIL) is not None
    assert (console.stack.member(FRANK) is not None) == (FRANK in items)
    twice = sec.post(decide, {"csrf": token, "decision": "revoke", "item": values[jon]})
    assert twice.status_code == 403  # decided (and closed) already
    report = sec.get(f"{page_url}/report")
    assert report.status_code == 200 and 'id="signed-off"' in report.text
    assert report.text.count('<td class="decision">certified</td>') == n
    assert "sec.lead@acme.com" in report.text and "console" in report.text
    csv_text = auditor.get(f"{page_url}/report.csv")
    assert csv_text.status_code == 200 and csv_text.headers["content-type"].startswith("text/csv")
    rows = {r.split(",")[0]: r for r in csv_text.text.splitlines()[1:]}
    assert f",certified,{SECURITY}," in rows[jon] and ",console," in rows[jon]
    listed = auditor.get("/console/reviews")
    assert f"{n} of {n} decided" in listed.text and "done: nothing revoked" in listed.text


def test_as_security_work_a_review_campaign_to_its_report(
    console: ConsoleWorld, browser: Any
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    run, rid, items = start_review(console)
    ids = {subject: i.finding_id for subject, i in items.items()}
    sign_in(browser, console.url, SECURITY, f"/console/reviews/{rid}")
    assert "0 of 4 items decided" in browser.find_element(By.ID, "progress-count").text

    def decided(subject: str) -> bool:
        try:  # the page is being replaced (the POST's redirect): not yet
            row = browser.find_element(By.ID, f"item-{ids[subject]}")
            return row.get_attribute("data-decision") != "undecided"
        except WebDriverException:
            return False

    def decide_one(subject: str, decision: str) -> None:
        row = browser.find_element(By.ID, f"item-{ids[subject]}")
        row.find_element(By.CSS_SELECTOR, f"button[value='{decision}']").click()
        wait_for(lambda: decided(subject), what=f"{subject} decided")

    # Per item: jon.smith@gmail.com (unknown to HR) and the look-alike invitation are kept.
    decide_one(JON_GMAIL, "certify")
    decide_one(CYRILLIC, "certify")
    assert "2 of 4 items decided" in browser.find_element(By.ID, "progress-count").text
    row = browser.find_element(By.ID, f"item-{ids[JON_GMAIL]}")
    assert "certified" in row.text and SECURITY in row.text

    # In bulk: frank.former and the stale invitation are revoked.
    for subject in (FRANK, EXPIRED):
        browser.find_element(By.ID, f"pick-{ids[subject]}").click()
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, "console-review")
    browser.find_element(By.ID, "bulk-revoke").click()
    wait_for(lambda: all(decided(s) for s in ids), what="every item decided")
    assert "4 of 4" in browser.find_element(By.ID, "progress-count").text
    # The review applies them (frank's offboarding is a subflow); the live progress shows
    # the report once it has ended.
    out = run.wait(300)
    assert out["status"] == "done", out["findings"]
    link = wait_for(
        lambda: browser.find_elements(By.ID, "report-link"), timeout=30, what="the report link"
    )
    link[0].click()
    wait_for(lambda: browser.find_elements(By.ID, "signed-off"), what="the signed-off report")
    rows = {
        s: browser.find_element(By.ID, f"row-{ids[s]}").text for s in (FRANK, JON_GMAIL, EXPIRED)
    }
    assert "revoked" in rows[FRANK] and SECURITY in rows[FRANK] and "offboard done" in rows[FRANK]
    assert "offboarding run" in rows[FRANK]
    assert "certified" in rows[JON_GMAIL] and SECURITY in rows[JON_GMAIL]
    assert "revoke_invitation deleted" in rows[EXPIRED]
    screenshot(browser, "console-review-report")

    # The org: frank offboarded, jon kept; the stale invitation revoked, the certified kept.
    stack = console.stack
    assert stack.member(FRANK) is None
    assert stack.member(JON_GMAIL) is not None
    invites = {i.email: i.state for i in stack.rt.org.list_invitations()}  # type: ignore[union-attr]
    assert invites[EXPIRED] == "revoked" and invites[CYRILLIC] == "pending"


def test_the_report_csv_never_holds_a_formula() -> None:
    from intake.console.reviews import _csv

    text = _csv([{"id": "rv-1", "detail": '=HYPERLINK("http://x")', "decided_by": "+1"}])
    assert "'=HYPERLINK" in text and ",'+1" in text
