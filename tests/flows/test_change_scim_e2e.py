"""A change of access on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``): the org can
neither read nor set roles by API, so the plan is one human task with the target; every project
asked counts as production (the production rule's approvers, the IT admins in the project
admin's seat). A person changes the access in the console (the sandbox's admin API, acting as
that person) and clicks Done; the run reports the task as attested, never as a pass.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.flows.offboard_stack import ADMIN, OffboardStack, scim_stack

pytestmark = pytest.mark.slow

SOFIA = "sofia.lead@acme.com"
ALICE = "alice.admin@acme.com"  # an IT admin: the task is hers to do


scim = pytest.fixture(name="scim")(scim_stack)


def test_a_change_on_scim_is_a_task_done_in_the_console(scim: OffboardStack) -> None:
    from flows.change import change_access

    params = {"email": SOFIA, "projects": {"Staging": "viewer"}, "modules_add": ["experiment"]}
    seq = scim.seq()
    dry = scim.start(change_access, dry_run=True, **params).wait()
    assert dry["status"] == "planned", dry
    assert [s["kind"] for s in dry["plan"]["steps"]] == ["human_task"]
    assert scim.writes(seq) == []

    run = scim.start(change_access, requester="hr.partner@acme.com", **params)
    appr = scim.paused(SOFIA)
    # Staging counts as production (the org cannot say): the production rule's approvers.
    assert appr.rule == "production-access", appr
    scim.approve_every_seat(appr)

    task = scim.task_waiting(SOFIA, "change_access")
    for asked in ("Viewer in project Staging", "add modules experiment", "permission group"):
        assert asked in task.instructions, task.instructions
    assert ALICE in task.assignees
    scim.console("PUT", f"/members/{SOFIA}/projects/Staging", ALICE, json={"role": "viewer"})
    scim.console("PUT", f"/members/{SOFIA}/modules", ALICE, json={"add": ["experiment"]})
    assert scim.click_done(task, ALICE).json()["recorded"] is True

    res = run.wait()
    assert res["status"] == "done", res
    checks = res["verification"]
    assert checks["in_org"] == "pass", checks
    assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", checks["task_change_access"]), checks
    assert set(checks) == {"in_org", "task_change_access"}  # nothing unread reported as a pass
    m = scim.member(SOFIA)
    assert m is not None
    assert {p["project"]: p["role"] for p in m["projects"]}.get("Staging") == "viewer"
    assert "experiment" in m["modules"]


def test_an_email_change_on_scim_invites_then_people_copy_and_move(scim: OffboardStack) -> None:
    """SCIM invites the new address; a person copies the access and, once the new address has
    joined, transfers the content; the old address leaves its IdP groups (IdP first) and is
    removed over SCIM."""
    from flows.email_change import change_email

    old, new = "ben.haddad@acme.com", "ben.h@acme.com"
    user = scim.rt.idp.find_user(old)
    assert user is not None
    assert any(g.name.startswith("amplitude-") for g in scim.rt.idp.groups_of(user.id))
    owned = scim.get("/admin/v1/assets", owner=old)["total"]

    run = scim.start(change_email, old=old, new=new, requester="hr.partner@acme.com")
    appr = scim.paused(old)
    scim.approve_every_seat(appr)

    copy = scim.task_waiting(old, "set_access")
    assert f"the access {old} has" in copy.instructions, copy.instructions
    invited = scim.member(new)
    assert invited is not None and invited["status"] == "pending"
    before = scim.member(old)
    assert before is not None
    scim.console("PUT", f"/members/{new}/org-role", ALICE, json={"role": before["org_role"]})
    assert scim.click_done(copy, ALICE).json()["recorded"] is True

    move = scim.task_waiting(old, "transfer_content")
    assert scim.member(old) is not None  # not removed before the content is moved
    r = httpx.post(f"{scim.url}/_sandbox/members/{new}/accept", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    scim.console("POST", "/assets/bulk-transfer", ALICE, json={"from": old, "to": new})
    assert scim.click_done(move, ALICE).json()["recorded"] is True

    res = run.wait()
    assert res["status"] == "done", res
    checks = res["verification"]
    for name in ("new_in_org", "old_removed", "old_out_of_idp_groups"):
        assert checks[name] == "pass", checks
    for name in ("task_set_access", "task_transfer_content"):
        assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", checks[name]), checks
    assert scim.member(old) is None
    assert scim.get("/admin/v1/assets", owner=new)["total"] >= owned
    assert not [g for g in scim.rt.idp.groups_of(user.id) if g.name.startswith("amplitude-")]
