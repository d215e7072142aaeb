"""Onboarding on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``, real Amplitude's API):
SCIM invites with the email only, so the org role, project roles and modules the ticket asks for
are a human task after the invitation. A person sets them in the console (the sandbox's admin
API, acting as that person) and clicks Done; the run reports that task as attested, never as a
pass, and the org ends with exactly the access asked for.
"""

from __future__ import annotations

import re

import pytest

from tests.flows.offboard_stack import OffboardStack, scim_stack

pytestmark = pytest.mark.slow

VENDOR = "analytics-vendor-max.roe@vendorco.com"  # ACC-1: Staging Manager, Production Viewer
ALICE = "alice.admin@acme.com"  # an IT admin: the task is hers to do


scim = pytest.fixture(name="scim")(scim_stack)


def test_acc1_on_scim_invites_then_a_person_sets_the_access(scim: OffboardStack) -> None:
    from flows.onboard import onboard

    run = scim.start(onboard, ticket="ACC-1")
    appr = scim.paused(VENDOR)
    # The org cannot say which project is production: every project asked counts as one (the
    # production rule: a project admin, from the IT admins here, and security); govern → data
    # governance.
    assert appr.rule == "production-access,governance-modules", appr
    scim.approve_every_seat(appr)

    task = scim.task_waiting(VENDOR, "set_access")
    for asked in ("org role Member", "Manager in project Staging", "Viewer in project Production"):
        assert asked in task.instructions, task.instructions
    assert "modules govern" in task.instructions and ALICE in task.assignees
    # SCIM carried the email only: a pending Viewer with no project yet.
    m = scim.member(VENDOR)
    assert m is not None and m["status"] == "pending" and m["org_role"] == "viewer"
    assert not m["projects"], m

    scim.console("PUT", f"/members/{VENDOR}/org-role", ALICE, json={"role": "member"})
    for project, role in (("Staging", "manager"), ("Production", "viewer")):
        scim.console("PUT", f"/members/{VENDOR}/projects/{project}", ALICE, json={"role": role})
    scim.console("PUT", f"/members/{VENDOR}/modules", ALICE, json={"add": ["govern"]})
    r = scim.click_done(task, ALICE)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text

    res = run.wait()
    assert res["status"] == "done", res
    assert [s["kind"] for s in res["plan"]["steps"]] == ["invite", "human_task", "record_grant"]
    checks = res["verification"]
    assert checks["in_org"] == "pass" and checks["grant_recorded"] == "pass", checks
    assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", checks["task_set_access"]), checks
    # What no API of this org reads back is not reported at all, never as a pass.
    assert not {"exact_project_roles", "exact_org_role", "exact_modules"} & checks.keys()

    m = scim.member(VENDOR)
    assert m is not None and m["org_role"] == "member"
    assert {p["project"]: p["role"] for p in m["projects"]} == {
        "Staging": "manager",
        "Production": "viewer",
    }
    assert m["modules"] == ["govern"]

    # The same ticket again: handled, nothing twice.
    again = scim.start(onboard, ticket="ACC-1").wait()
    assert again["status"] == "nothing_to_do", again


def test_idp_managed_on_scim_provisions_through_the_idp_groups(scim: OffboardStack) -> None:
    from flows.onboard import onboard

    who = "nina.new@acme.com"
    run = scim.start(
        onboard,
        email=who,
        projects={"Staging": "member"},
        modules=["experiment"],
        idp_managed=True,
        requester="sofia.lead@acme.com",
    )
    appr = scim.paused(who)
    scim.approve_every_seat(appr)
    # The IdP's groups carry the roles; no group maps modules: a person grants them.
    task = scim.task_waiting(who, "set_access")
    assert "modules experiment" in task.instructions and "the IdP provisions them" in (
        task.instructions
    )
    scim.console("PUT", f"/members/{who}/modules", ALICE, json={"add": ["experiment"]})
    assert scim.click_done(task, ALICE).json()["recorded"] is True

    res = run.wait()
    assert res["status"] == "done", res
    kinds = [s["kind"] for s in res["plan"]["steps"]]
    assert kinds[0] == "idp_create_user" and "grant_modules" not in kinds, kinds
    checks = res["verification"]
    for name in ("idp_user_active", "idp_groups", "provisioned_in_org"):
        assert checks[name] == "pass", checks
    assert checks["task_set_access"].startswith(f"attested by {ALICE}"), checks
    assert "project_roles" not in checks  # the org cannot say them: not reported
    m = scim.member(who)
    assert m is not None and {p["project"]: p["role"] for p in m["projects"]} == {
        "Staging": "member"
    }
    assert m["modules"] == ["experiment"]
