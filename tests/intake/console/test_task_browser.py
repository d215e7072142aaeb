"""As a task owner, mark a transfer task Done in a real headless Chromium: dana.sole is
terminated on the demo's SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``), where no API moves
content, so her run waits on a transfer task; alice (an IT admin, an assignee) signs in at the
sandbox IdP, finds it in her inbox, does the transfer in the org's console, says Done with a
note, and sees the run go on: the task recorded as hers, the run past its pause (her inbox
shows its next task), the transfer reported as attested by her."""

from __future__ import annotations

import re
from typing import Any

import pytest

from approvals.tasks import decide_task
from domain.identity import SELF_DECLARED
from domain.tasks import TaskState
from ledger.tasks import get_task
from tests.intake.console.browser import screenshot, sign_in, wait_for
from tests.intake.console.world import ConsoleWorld, console_world_scim

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world_scim)

DANA = "dana.sole@acme.com"  # sole Admin of Development, owns content, manages keys
SOFIA = "sofia.lead@acme.com"  # her manager: approves, receives her content
HR = "hr.partner@acme.com"
ALICE = "alice.admin@acme.com"  # an IT admin: the tasks are hers to do


def test_a_task_owner_marks_a_transfer_task_done_and_the_run_goes_on(
    console: ConsoleWorld, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    st = console.stack
    run = st.start(email=DANA, reason="termination", requester=HR)
    r = st.click(st.paused(DANA), SOFIA)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    # The first task (a replacement Admin) answered elsewhere: the transfer is the one here.
    first = st.task_waiting(DANA, "replace_sole_admin")
    st.console("PUT", f"/members/{SOFIA}/projects/Development", ALICE, json={"role": "admin"})
    decide_task(st.svc, first.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    task = st.task_waiting(DANA, "transfer_content")
    assert st.member(DANA) is not None  # her removal waits for the transfer

    sign_in(browser, console.url, ALICE)
    link = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, f"a[href='/console/tasks/{task.id}']"),
        what="the transfer task in alice's inbox",
    )
    link[0].click()
    wait_for(lambda: browser.find_elements(By.ID, "note"), what="the task's form")
    assert browser.find_element(By.TAG_NAME, "h1").text == task.title
    assert "Bulk Transfer Edit Access" in browser.find_element(By.CLASS_NAME, "instructions").text
    # She does it in the org's console, then says so here.
    st.console("POST", "/assets/bulk-transfer", ALICE, json={"from": DANA, "to": SOFIA})
    browser.find_element(By.ID, "note").send_keys("moved everything to sofia")
    screenshot(browser, "console-task")
    browser.find_element(By.CSS_SELECTOR, "button[name='answer'][value='done']").click()

    state = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#state .badge.ok"), what="the task done"
    )
    assert state[0].text == "done"
    assert ALICE in browser.find_element(By.ID, "state").text
    assert browser.find_element(By.ID, "note").text == "moved everything to sofia"
    assert "Your answer is recorded" in browser.find_element(By.CLASS_NAME, "flash").text
    assert not browser.find_elements(By.CSS_SELECTOR, "button[name='answer']")
    done = get_task(st.rt.ledger, task.id)
    assert done.state is TaskState.DONE and done.decided_by == ALICE
    # The ticket is told who answered, as after a Slack click.
    wait_for(
        lambda: any(
            c.startswith(f"Task {task.id} (") and f"Done by {ALICE}: moved everything" in c
            for c in st.get(f"/_sandbox/jira/issues/{task.ticket}")["comments"]
        ),
        what="the ticket's comment saying alice did it",
    )

    # The run left its pause: it removed her and now waits on its next task (her keys),
    # which alice's inbox shows.
    keys = st.task_waiting(DANA, "rotate_keys")
    assert st.member(DANA) is None

    def inbox_shows_keys() -> bool:
        browser.get(f"{console.url}/console/")
        return bool(browser.find_elements(By.CSS_SELECTOR, f"a[href='/console/tasks/{keys.id}']"))

    wait_for(inbox_shows_keys, what="the run's next task in alice's inbox")
    assert not browser.find_elements(By.CSS_SELECTOR, f"a[href='/console/tasks/{task.id}']")
    decide_task(st.svc, keys.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    res = run.wait()
    assert res["status"] == "done", res
    checks = res["verification"]
    assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", checks["task_transfer_content"])
