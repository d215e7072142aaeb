"""On a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``) the runbooks that have no human-task
path yet (bulk onboarding) end *blocked* before they
read or write anything, saying what the org lacks — never a
crash halfway, never a silent skip, never "done" for what was not done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _runbooks(roster: Path) -> list[Any]:
    from flows.onboard_bulk import onboard_bulk

    return [
        pytest.param(
            onboard_bulk,
            {"csv_text": "email,projects\nnew.one@acme.com,Staging=viewer\n"},
            "onboard-bulk",
        ),
    ]


@pytest.mark.parametrize("which", range(1))
def test_a_runbook_without_a_task_path_is_refused_before_anything(
    scim: OffboardStack, which: int
) -> None:
    flow, params, name = _runbooks(scim.roster)[which].values
    seq = scim.seq()
    res = scim.start(flow, **params).wait()
    assert res["status"] == "blocked", res
    assert res["failure"].startswith(f"{name} does not run on this org yet"), res["failure"]
    assert "SCIM only" in res["failure"] and "nothing was read or written" in res["failure"]
    org_calls = [r for r in scim.get("/_sandbox/requests", since=seq)["requests"]]
    assert not [r for r in org_calls if r["path"].startswith(("/scim/", "/admin/"))], org_calls


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
