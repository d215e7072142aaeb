"""Crash recovery on a real worker (``cli.recover``): the worker and its flow-run process are
SIGKILLed while an offboarding waits at its approval gate; the server's automation marks the
run Crashed when its heartbeats stop; the approver's click lands while nothing runs; the
recovery sweep starts the run again, which finds its case and its approval (with that click)
and finishes the offboarding — once, with nobody asked twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any
from uuid import UUID

import httpx
import psutil
import pytest
from sqlalchemy import select

from approvals.handler import decide
from cli.deploy import PREFECT_YAML, deploy_all
from cli.recover import AUTOMATION, ensure_crash_detection, resume_crashed
from domain.identity import SELF_DECLARED
from ledger.approvals import list_approvals
from ledger.audit import AuditRow
from tests.cli.deploy_stack import DeployStack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

EMAIL = "dana.sole@acme.com"


def test_a_run_whose_worker_died_is_crashed_resumed_and_finishes_once(stack: DeployStack) -> None:
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    # Detection after 45 s without a heartbeat (30 s apart) keeps the test short; deploy_all
    # keeps an automation that exists (production: 90 s), and an earlier test of this session's
    # server may have made that one: it goes first.
    with contextlib.suppress(ValueError):
        Automation.read(name=AUTOMATION).delete()
    ensure_crash_detection(within=45)
    deploy_all(PREFECT_YAML, env=stack.env)
    assert Automation.read(name=AUTOMATION).trigger.within.total_seconds() == 45
    admin = httpx.Client(
        base_url=f"{stack.url}/admin/v1",
        headers={"Authorization": "Bearer sandbox-admin-token"},
    )
    assert admin.get(f"/members/{EMAIL}").status_code == 200

    w = stack.worker()
    run = run_deployment(
        "offboard/offboard",
        parameters={"email": EMAIL, "reason": "termination", "requester": "it.ops@acme.com"},
        timeout=0,
    )
    svc = stack.runtime()

    def state(run_id: UUID) -> Any:
        with get_client(sync_client=True) as c:
            return c.read_flow_run(run_id).state

    stack.wait("the run to pause at the gate", lambda: state(run.id).is_paused(), timeout=120)
    (appr,) = [a for a in list_approvals(svc.ledger) if a.subject == EMAIL]
    # A run waiting at its gate is alive (its process keeps sending heartbeats): past the
    # detection window it is still Paused, not Crashed.
    time.sleep(50)
    assert state(run.id).is_paused(), state(run.id)

    # The machine dies: worker and flow-run process at once, no chance to report anything
    # (the flow-run process has a session of its own: killed by pid, not by group).
    doomed = [w.proc.pid, *(p.pid for p in psutil.Process(w.proc.pid).children(recursive=True))]
    assert len(doomed) >= 2, "the flow-run process was not found"
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    w.proc.wait()
    t_kill = time.monotonic()
    # HR approves meanwhile: recorded in the ledger; there is no process to wake.
    decide(
        svc,
        appr.id,
        approver="hr.partner@acme.com",
        decision="approve",
        plan_hash=appr.plan_hash,
        verified=SELF_DECLARED,
    )

    # The machine comes back: a new worker, started while the automation waits out its window
    # (it only takes Scheduled runs; the dead run is not one, and none is until the recovery).
    stack.worker("worker2.log")
    crashed = wait_for(
        "the automation to mark the run Crashed",
        lambda: state(run.id).is_crashed(),
        timeout=150,
    )
    t_crashed = time.monotonic() - t_kill
    assert crashed
    (resumed,) = [r for r in resume_crashed() if r.crashed == str(run.id)]
    assert not [r for r in resume_crashed() if r.crashed == str(run.id)], "started twice"
    new_id = UUID(resumed.run)
    stack.wait(
        "the resumed run to finish",
        lambda: state(new_id).is_final(),
        timeout=150,
        log="worker2.log",
    )
    assert state(new_id).is_completed(), state(new_id)
    assert admin.get(f"/members/{EMAIL}").status_code == 404
    # One approval, approved by the click given while nothing ran; nobody asked twice.
    (after,) = [a for a in list_approvals(svc.ledger) if a.subject == EMAIL]
    assert after.id == appr.id and after.state.value == "approved"
    assert after.flow_run_id == str(new_id)
    with svc.ledger.sessions() as s:
        asked = s.scalars(
            select(AuditRow.seq).where(
                AuditRow.action == "approval.requested", AuditRow.subject == EMAIL
            )
        ).all()
    assert len(asked) == 1
    print(f"kill → Crashed {t_crashed:.0f} s")
