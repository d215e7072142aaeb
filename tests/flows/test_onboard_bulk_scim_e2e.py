"""Bulk onboarding on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``): one approval for the
batch (every project counts as production: the production rule, the IT admins in the project
admin's seat), SCIM invites each row, and each row's ``set_access`` task waits in a flow run of
its own, so both tasks are open at once (nobody waits in line); once a person has set the access
in the console and said Done for each, the batch is done.
"""

from __future__ import annotations

import pytest

from tests.flows.offboard_stack import OffboardStack, scim_stack
from tests.flows.test_onboard_bulk_e2e import paused_batch

pytestmark = pytest.mark.slow

ALICE = "alice.admin@acme.com"
ONE, TWO = "analytics-vendor-una.one@vendorco.com", "analytics-vendor-tom.two@vendorco.com"


scim = pytest.fixture(name="scim")(scim_stack)


def test_bulk_onboarding_on_scim_runs_each_rows_task_on_its_own(scim: OffboardStack) -> None:
    from flows.onboard_bulk import onboard_bulk

    text = (
        "email,projects,org_role,modules,until,justification,sow\r\n"
        f"{ONE},Staging=viewer,viewer,,,bulk on scim,SOW-9\r\n"
        f'{TWO},"Staging=member, Production=viewer",member,,,bulk on scim,SOW-9\r\n'
    )
    run = scim.start(onboard_bulk, csv_text=text, requester="sofia.lead@acme.com")
    appr = paused_batch(scim)
    assert appr.rule == "production-access", appr
    scim.approve_every_seat(appr)

    one = scim.task_waiting(ONE, "set_access")
    two = scim.task_waiting(TWO, "set_access")  # both open at once: no row waits for another
    assert "Viewer in project Staging" in one.instructions
    assert "Member in project Staging" in two.instructions
    for who, role, projects in (
        (ONE, "viewer", {"Staging": "viewer"}),
        (TWO, "member", {"Staging": "member", "Production": "viewer"}),
    ):
        scim.console("PUT", f"/members/{who}/org-role", ALICE, json={"role": role})
        for project, r in projects.items():
            scim.console("PUT", f"/members/{who}/projects/{project}", ALICE, json={"role": r})
    for task in (two, one):
        assert scim.click_done(task, ALICE).json()["recorded"] is True

    res = run.wait()
    assert res["status"] == "done", res
    assert res["counts"] == {"done": 2}, res["rows"]
    for who in (ONE, TWO):
        m = scim.member(who)
        assert m is not None and m["status"] == "pending"  # invited over SCIM
    two_m = scim.member(TWO)
    assert two_m is not None
    assert {p["project"]: p["role"] for p in two_m["projects"]} == {
        "Staging": "member",
        "Production": "viewer",
    }
