"""Temporary-access expiry on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``): the org can
neither read nor revoke a project role by API, so an ended role becomes a ``revoke_access``
task, filed once; the sweep does not wait on it (status ``waiting_for_task``, the grant still
active, never "revoked" for what was not). A person removes the role in the console and clicks
Done; the next sweep records the grant expired, attested by that person.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from domain.records import Grant, GrantStatus
from domain.tasks import TaskKind
from ledger.grants import grants, record_grant
from ledger.tasks import list_tasks
from tests.flows.offboard_stack import OffboardStack, scim_stack
from tests.flows.sweep_stack import CARLA, SPONSOR, access_ticket, sandbox_now, sweep

pytestmark = pytest.mark.slow

ALICE = "alice.admin@acme.com"


scim = pytest.fixture(name="scim")(scim_stack)


def expire_sweep(st: OffboardStack) -> dict[str, Any]:
    from flows.expire import expire_access

    return sweep(expire_access, st)


def test_an_ended_role_on_scim_is_a_task_and_expires_once_done(scim: OffboardStack) -> None:
    st = scim
    now = sandbox_now(st.url)
    st.console("PUT", f"/members/{CARLA}/projects/Staging", ALICE, json={"role": "manager"})
    ticket = access_ticket(st.rt, CARLA, f"Temporary Staging Manager for {CARLA}")
    g = record_grant(
        st.rt.ledger,
        Grant(
            subject=CARLA,
            project="Staging",
            role="manager",
            start=now - timedelta(days=3),
            end=now - timedelta(hours=1),
            ticket=ticket,
            sponsor=SPONSOR,
        ),
    )

    first = expire_sweep(st)
    assert first["status"] == "waiting_for_task", first
    (effect,) = first["effects"].values()
    assert effect.startswith("waiting(task "), effect
    assert first["verification"] == {}
    assert any("SCIM only" in w for w in first["warnings"]), first["warnings"]
    (task,) = [t for t in list_tasks(st.rt.ledger) if t.kind is TaskKind.REVOKE_ACCESS]
    assert "Staging manager" in task.instructions and ALICE in task.assignees
    (still,) = [x for x in grants(st.rt.ledger) if x.id == g.id]
    assert still.status is GrantStatus.ACTIVE  # not revoked: never said so

    again = expire_sweep(st)  # the next sweep: the same task, not a second one
    assert again["status"] == "waiting_for_task", again
    assert [t.id for t in list_tasks(st.rt.ledger) if t.kind is TaskKind.REVOKE_ACCESS] == [task.id]

    st.console("DELETE", f"/members/{CARLA}/projects/Staging", ALICE)
    assert st.click_done(task, ALICE).json()["recorded"] is True

    done = expire_sweep(st)
    assert done["status"] == "done", done
    assert list(done["effects"].values()) == ["attested"]
    (check,) = done["verification"].values()
    assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", check), check
    (after,) = [x for x in grants(st.rt.ledger) if x.id == g.id]
    assert after.status is GrantStatus.EXPIRED
    issue = st.get(f"/_sandbox/jira/issues/{ticket}")
    assert sum("revoked the temporary access" in c for c in issue["comments"]) == 1
    assert expire_sweep(st)["status"] == "nothing_to_do"
