"""One extension approval per grant at a time (issue 15), end to end: the demo sandbox over
loopback, the intake in-process, extension runs (``flows.expire.extend_grant``) on the session's
real Prefect server.

A second Extend click while the first extension waits for its approval is answered "already
waiting for approval": no second run, no second approval, no new DM to any approver. Once that
extension has ended (denied here), Extend asks again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.records import ApprovalState
from intake.app import create_intake
from intake.launch import thread_launcher
from ledger.approvals import list_approvals
from tests.flows.offboard_stack import OffboardStack
from tests.flows.sweep_stack import (
    CARLA,
    SPONSOR,
    demo_stack,
    sandbox_now,
    temporary_staging_manager,
)
from tests.flows.test_expire_e2e import click_extend

pytestmark = pytest.mark.slow

stack = pytest.fixture(name="stack")(demo_stack)


def asked(st: OffboardStack, email: str) -> list[dict[str, Any]]:
    """The approval requests ``email`` was sent in Slack."""
    return [d for d in st.dms(email) if d["text"].startswith("Approval needed: extend")]


def extensions(st: OffboardStack) -> list[Any]:
    return [a for a in list_approvals(st.svc.ledger) if a.runbook == "extend"]


def test_a_second_extend_click_asks_nobody_again(stack: OffboardStack) -> None:
    from flows.expire import extend_grant
    from tasks.runtime import use_runtime

    st = stack
    with use_runtime(st.rt):  # the launcher's runs start in a copy of this context
        launcher = thread_launcher(extend_grant)
    intake = TestClient(create_intake(st.svc, extend_launcher=launcher))
    g = temporary_staging_manager(st.rt, sandbox_now(st.url))
    value = f"grant:{g.id}"

    first = click_extend(intake, st, CARLA, value)
    assert first.status_code == 200 and first.json()["started"] is True, first.text
    appr = st.paused(CARLA)
    approvers = sorted({p for seat in appr.required for p in seat})
    dms = {p: len(asked(st, p)) for p in approvers}
    assert dms[SPONSOR] == 1, dms

    # Clicked again (by her, and by her sponsor) while it waits: answered, nobody asked.
    for who in (CARLA, SPONSOR, CARLA):
        again = click_extend(intake, st, who, value)
        assert again.status_code == 200, again.text
        assert again.json()["started"] is False
        assert "already waiting for approval" in again.json()["message"]
    time.sleep(1)  # what a wrongly started run would take to ask (it starts in a thread)
    assert len(launcher.runs) == 1
    assert [a.id for a in extensions(st)] == [appr.id]
    assert {p: len(asked(st, p)) for p in approvers} == dms

    # Denied: the extension has ended, and Extend asks again.
    r = st.click(appr, SPONSOR, deny=True)
    assert r.status_code == 200 and r.json()["recorded"], r.text
    (ref,) = launcher.runs
    out = launcher.wait(ref, timeout=180)
    assert isinstance(out, dict) and out["status"] == "denied", out
    third = click_extend(intake, st, CARLA, value)
    assert third.status_code == 200 and third.json()["started"] is True, third.text
    deadline = time.monotonic() + 180
    while len(extensions(st)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = [a for a in extensions(st) if a.id != appr.id]
    assert len(new) == 1 and new[0].state is ApprovalState.PENDING
    assert st.click(st.paused(CARLA), SPONSOR, deny=True).status_code == 200
    for ref in launcher.runs:
        launcher.wait(ref, timeout=180)
