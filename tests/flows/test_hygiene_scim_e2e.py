"""Invitation hygiene on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``): the org cannot
list invitations, so a person reviews them in the console, once a week, as a task.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scim(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        yield make_stack(sb, tmp_path_factory.mktemp("scim"), backend="amplitude")
    finally:
        sb.stop()


def test_the_hygiene_on_scim_is_a_weekly_review_task_in_the_console(scim: OffboardStack) -> None:
    """The org cannot list invitations: the daily sweep files one review task a week (filed
    once, never waited on: ``waiting_for_task``), and once a person has said Done, the week's
    review is attested; no invitation is touched by API."""
    from domain.tasks import TaskKind
    from flows.hygiene import invitation_hygiene
    from ledger.tasks import list_tasks

    seq = scim.seq()
    first = scim.start(invitation_hygiene).wait()
    assert first["status"] == "waiting_for_task", first
    assert [s["kind"] for s in first["plan"]["steps"]] == ["console_review"]
    (task,) = [t for t in list_tasks(scim.rt.ledger) if t.kind is TaskKind.REVIEW_INVITATIONS]
    assert "48 hours" in task.instructions and "14 days" in task.instructions
    assert scim.start(invitation_hygiene).wait()["status"] == "waiting_for_task"
    assert len([t for t in list_tasks(scim.rt.ledger) if t.kind is task.kind]) == 1
    assert scim.click_done(task, "alice.admin@acme.com").json()["recorded"] is True
    done = scim.start(invitation_hygiene).wait()
    assert done["status"] == "done", done
    (check,) = done["verification"].values()
    assert check.startswith("attested by alice.admin@acme.com at "), check
    again = scim.start(invitation_hygiene).wait()
    assert list(again["effects"].values()) == ["noop(reviewed already)"], again
    org_writes = [w for w in scim.writes(seq) if w["path"].startswith(("/scim/", "/admin/"))]
    assert org_writes == []
