"""The console's cases over HTTP (as a browser without JavaScript sends them) and in a real
headless Chromium: every runbook run, filtered, each one as a timeline read from the audit log,
with links to its Prefect flow runs; a requester sees only their own cases.

Two real runs on the world's stack make the cases: an emergency offboarding declared by
security (no approval first) and an onboarding asked by a requester and approved by an IT admin
with a signed Slack click.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.records import ApprovalRequest
from flows.onboard import onboard
from ledger.approvals import create_approval
from tests.intake.console.browser import screenshot, sign_in, wait_for
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

REQUESTER = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"
AUDITOR = "audra.audit@acme.com"
IT_ADMIN = "alice.admin@acme.com"
DANA = "dana.sole@acme.com"
NORA = "nora.new@partner.io"


@dataclass
class Cases:
    emergency: int  # dana's emergency offboarding, declared by security
    emergency_run: str
    onboarding: int  # nora's onboarding, asked by the requester, approved by an IT admin
    onboarding_run: str


def _case_id(console: ConsoleWorld, runbook: str, subject: str) -> int:
    (found,) = [
        k for k in console.stack.cases() if k["runbook"] == runbook and k["subject"] == subject
    ]
    return int(found["id"])


@pytest.fixture(scope="module")
def cases(console: ConsoleWorld) -> Iterator[Cases]:
    stack = console.stack
    off = stack.start(**stack.emergency(DANA)).wait()
    assert off["status"] == "done", off
    run = stack.start(onboard, email=NORA, projects={"Development": "viewer"}, requester=REQUESTER)
    appr = stack.paused(NORA)
    assert stack.click(appr, IT_ADMIN).status_code == 200
    on = run.wait()
    assert on["status"] == "done", on
    yield Cases(
        _case_id(console, "offboard", DANA),
        off["run_id"],
        _case_id(console, "onboard", NORA),
        on["run_id"],
    )


def case_links(page: str) -> set[int]:
    return {int(n) for n in re.findall(r'href="/console/cases/(\d+)"', page)}


def test_a_requester_sees_only_their_cases_and_none_of_others(
    console: ConsoleWorld, cases: Cases
) -> None:
    p = Person(console, REQUESTER)
    listed = p.get("/console/cases")
    assert listed.status_code == 200, listed.text
    mine = case_links(listed.text)
    assert cases.onboarding in mine and cases.emergency not in mine
    asked = {
        int(k["id"]) for k in console.stack.cases() if REQUESTER in (k["subject"], k["requester"])
    }
    assert mine == asked
    assert (
        f"{len(asked)} case{'' if len(asked) == 1 else 's'} about you or asked by you"
        in listed.text
    )
    assert p.get(f"/console/cases/{cases.emergency}").status_code == 403
    assert p.get(f"/console/cases/{cases.emergency}/timeline").status_code == 403
    assert p.get(f"/console/cases?run={cases.emergency_run}").status_code == 403
    assert p.get(f"/console/cases?person={DANA}").text.count('href="/console/cases/') == 0
    assert p.get("/console/cases/999999").status_code == 404
    assert p.get("/console/cases/nope").status_code == 404


def test_the_case_page_reads_as_a_timeline_from_the_audit_log(
    console: ConsoleWorld, cases: Cases
) -> None:
    page = Person(console, REQUESTER).get(f"/console/cases/{cases.onboarding}")
    assert page.status_code == 200, page.text
    html = page.text
    sections = [m for m in re.findall(r'<h2 id="h-[a-z]+">([^<]+)</h2>', html)]
    assert sections == [
        "Triggered by",
        "Planned",
        "Approved by",
        "Steps and their effect",
        "Verification",
        "Record",
    ]
    trigger, plan, approval, steps, verify, record = (
        html.split(f'id="{s}"')[1].split("</section>")[0]
        for s in ("trigger", "plan", "approval", "steps", "verification", "record")
    )
    assert REQUESTER in trigger and "access_request" in trigger
    assert f"{NORA} is invited as org viewer: Development=viewer" in plan
    assert "approval.requested" in approval and "approval.decision" in approval
    assert (
        f'{IT_ADMIN} <span class="muted">(slack, slack)</span>' in approval
    )  # who, and how proven
    assert "approval.approved" in approval and "quorum reached" in approval
    assert (
        "onboard.invite" in steps
        and "created" in steps
        and "invite with exactly the roles" in steps
    )
    assert "invitation_pending" in verify and "pass" in verify
    assert "onboard.recorded" in record and "done" in record
    # No live part once closed: nothing asks for the timeline again.
    assert "hx-trigger" not in html
    # The Prefect UI the test server's API URL implies (PREFECT_API_URL without /api).
    from prefect.settings import PREFECT_API_URL

    ui = str(PREFECT_API_URL.value()).removesuffix("/api")
    assert f'<a href="{ui}/runs/flow-run/{cases.onboarding_run}">' in html


def test_the_prefect_ui_setting_names_where_the_flow_run_links_go(
    console: ConsoleWorld, cases: Cases
) -> None:
    svc = console.stack.svc
    before = svc.settings
    svc.settings = before.model_copy(update={"prefect_ui_url": "https://prefect.example.com/"})
    try:
        html = Person(console, AUDITOR).get(f"/console/cases/{cases.emergency}").text
    finally:
        svc.settings = before
    assert f'<a href="https://prefect.example.com/runs/flow-run/{cases.emergency_run}">' in html


def test_auditors_and_security_see_every_case_and_filter_them(
    console: ConsoleWorld, cases: Cases
) -> None:
    both = {cases.emergency, cases.onboarding}
    for who in (AUDITOR, SECURITY, IT_ADMIN):
        assert both <= case_links(Person(console, who).get("/console/cases").text), who
    p = Person(console, AUDITOR)
    today = datetime.now(UTC).date()
    assert case_links(p.get("/console/cases", params={"person": "DANA.sole"}).text) == {
        cases.emergency
    }
    assert cases.onboarding in case_links(
        p.get("/console/cases", params={"person": REQUESTER}).text
    )
    onboardings = case_links(p.get("/console/cases", params={"runbook": "onboard"}).text)
    assert cases.onboarding in onboardings and cases.emergency not in onboardings
    assert not both & case_links(p.get("/console/cases", params={"state": "open"}).text)
    assert both <= case_links(
        p.get("/console/cases", params={"state": "closed", "outcome": "done"}).text
    )
    assert both <= case_links(
        p.get("/console/cases", params={"from": str(today), "to": str(today)}).text
    )
    tomorrow = str(today + timedelta(days=1))
    assert case_links(p.get("/console/cases", params={"from": tomorrow}).text) == set()
    assert (
        case_links(p.get("/console/cases", params={"to": str(today - timedelta(days=1))}).text)
        == set()
    )
    # The emergency's page: no approval first, a post-hoc review instead, every step's effect.
    html = p.get(f"/console/cases/{cases.emergency}").text
    trigger = html.split('id="trigger"')[1].split("</section>")[0]
    assert "offboard.emergency_declared" in trigger and SECURITY in trigger
    assert "approval.post_hoc_review_opened" in html and "emergency: no pre-approval" in html
    assert "offboard.remove_member" in html and "deleted" in html and "member_removed" in html
    assert f"/console/audit?subject={DANA.replace('@', '%40')}" in html  # auditors: the log


def test_bad_filters_are_named_on_the_page_and_nothing_else_fails(
    console: ConsoleWorld, cases: Cases
) -> None:
    p = Person(console, AUDITOR)
    r = p.get(
        "/console/cases",
        params={"from": "2026-13-45", "runbook": "nope", "person": "dana", "page": "x"},
    )
    assert r.status_code == 400
    assert "Opened from: &#39;2026-13-45&#39; is not a date (YYYY-MM-DD)" in r.text
    assert "Runbook: &#39;nope&#39; is not one of offboard, onboard" in r.text
    assert "Page: &#39;x&#39; is not a whole number" in r.text
    assert case_links(r.text) == {cases.emergency}  # the good filter still applies
    backwards = p.get("/console/cases", params={"from": "2026-12-05", "to": "2026-12-01"})
    assert backwards.status_code == 400 and "Opened: the start is after the end" in backwards.text
    hostile = p.get("/console/cases", params={"person": "<script>alert(1)</script>"})
    assert "<script>alert(1)" not in hostile.text and "&lt;script&gt;" in hostile.text


def test_a_flow_run_leads_to_its_case(console: ConsoleWorld, cases: Cases) -> None:
    p = Person(console, REQUESTER)
    r = p.get("/console/cases", params={"run": cases.onboarding_run})
    assert r.status_code == 303 and r.headers["location"] == f"/console/cases/{cases.onboarding}"
    # The emergency's run asked for no approval first: found by its runbook's events.
    sec = Person(console, SECURITY)
    r = sec.get("/console/cases", params={"run": cases.emergency_run})
    assert r.status_code == 303 and r.headers["location"] == f"/console/cases/{cases.emergency}"
    unknown = sec.get("/console/cases", params={"run": "no-such-run"})
    assert unknown.status_code == 404 and "No case recorded by flow run no-such-run" in unknown.text
    now = datetime.now(UTC)
    orphan = create_approval(
        console.stack.svc.ledger,
        ApprovalRequest(
            id="apr-orphan00001",
            flow_run_id="run-without-case",
            runbook="review",
            subject="x@acme.com",
            requester=SECURITY,
            plan_hash="0" * 64,
            rule="access-review-removal",
            created_at=now,
            expires_at=now + timedelta(hours=1),
        ),
    )
    r = sec.get("/console/cases", params={"run": orphan.flow_run_id})
    assert r.status_code == 404
    assert "asked for approval apr-orphan00001, but no case of that approval is recorded" in r.text


def test_an_open_case_refreshes_its_timeline_until_it_closes(
    console: ConsoleWorld, cases: Cases
) -> None:
    stack, newcomer = console.stack, "olga.open@partner.io"
    run = stack.start(
        onboard, email=newcomer, projects={"Development": "viewer"}, requester=REQUESTER
    )
    appr = stack.paused(newcomer)
    case = _case_id(console, "onboard", newcomer)
    p = Person(console, REQUESTER)
    live = f'hx-get="/console/cases/{case}/timeline" hx-trigger="every 2s" hx-swap="outerHTML"'
    assert live in p.get(f"/console/cases/{case}").text
    part = p.get(f"/console/cases/{case}/timeline")
    assert part.status_code == 200 and live in part.text and "<html" not in part.text
    assert "No step done yet" in part.text
    assert stack.click(appr, IT_ADMIN).status_code == 200
    assert run.wait()["status"] == "done"
    closed = p.get(f"/console/cases/{case}/timeline").text
    assert "hx-trigger" not in closed and "onboard.recorded" in closed


def test_in_a_browser_the_filter_form_finds_a_case_whose_timeline_fills_in(
    console: ConsoleWorld, cases: Cases, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    stack, newcomer = console.stack, "paula.live@partner.io"
    run = stack.start(
        onboard, email=newcomer, projects={"Development": "viewer"}, requester=REQUESTER
    )
    appr = stack.paused(newcomer)
    case = _case_id(console, "onboard", newcomer)
    sign_in(browser, console.url, REQUESTER, path="/console/cases")
    browser.find_element(By.ID, "person").send_keys("paula")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(lambda: "person=paula" in browser.current_url, what="the filtered list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    assert len(rows) == 1 and newcomer in rows[0].text and "open" in rows[0].text
    rows[0].find_element(By.LINK_TEXT, f"Case {case}").click()
    wait_for(lambda: browser.find_elements(By.ID, "timeline"), what="the case's timeline")
    assert "No step done yet" in browser.find_element(By.ID, "steps").text
    opened = browser.find_element(By.CSS_SELECTOR, "#facts time")
    assert "UTC" not in opened.text  # shown in the viewer's zone by the page's script
    page_id = browser.execute_script("return window.performance.timeOrigin")
    assert stack.click(appr, IT_ADMIN).status_code == 200
    assert run.wait()["status"] == "done"
    # The live part fills in by itself, on the same page (no reload): the steps, the record,
    # and the end (the case closes just after its record: a refresh may fall between).
    wait_for(
        lambda: "done" in browser.find_element(By.ID, "state").text, timeout=20, what="the end"
    )
    assert browser.execute_script("return window.performance.timeOrigin") == page_id
    assert "onboard.invite" in browser.find_element(By.ID, "steps").text
    assert "onboard.recorded" in browser.find_element(By.ID, "record").text
    hx = browser.find_element(By.ID, "timeline").get_attribute("hx-trigger")
    assert hx is None  # closed: it asks no more
    screenshot(browser, "case-timeline")
