"""Deployments on the session's real Prefect server: prefect.yaml deployed as written, a real
process worker, and the intake starting runs through ``run_deployment`` — an HR webhook
delivered twice (and re-launched) yields exactly one flow run, which the worker runs against a
demo sandbox up to its approval gate.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.deploy import POOL, PREFECT_YAML, _descendants, _start_time, deploy_all
from tests.cli.deploy_stack import DeployStack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EMAIL = "dana.sole@acme.com"


def test_deploy_and_one_run_per_hr_event(stack: DeployStack) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.client.schemas.sorting import FlowRunSort

    from intake.app import create_intake
    from intake.hooks import sign_hr
    from intake.launch import deployment_launcher
    from ledger.approvals import list_approvals
    from ledger.audit import records, verify

    t0 = time.monotonic()
    names = deploy_all(PREFECT_YAML, env=stack.env)
    t_deploy = time.monotonic() - t0
    by_name = {n.split("/", 1)[1]: n for n in names}
    assert set(by_name) == {
        "offboard",
        "offboard-bulk",
        "onboard",
        "change-access",
        "expire-access",
        "invitation-hygiene",
        "access-review",
        "extend-grant",
    }
    assert by_name["offboard"] == "offboard/offboard"

    with get_client(sync_client=True) as client:
        deps = {short: client.read_deployment_by_name(full) for short, full in by_name.items()}
        for d in deps.values():
            assert d.work_pool_name == POOL
        assert client.read_work_pool(POOL).type == "process"

        def only(short: str) -> Any:
            scheds = [s for s in deps[short].schedules if s.active]
            assert len(scheds) == 1, (short, deps[short].schedules)
            return scheds[0].schedule

        expiry = only("expire-access")
        assert isinstance(expiry, IntervalSchedule)
        assert expiry.interval == timedelta(seconds=900)
        hygiene = only("invitation-hygiene")
        assert isinstance(hygiene, CronSchedule)
        minute, hour, dom, month, dow = hygiene.cron.split()
        assert (dom, month, dow) == ("*", "*", "*") and minute.isdigit() and hour.isdigit()
        review = only("access-review")
        assert isinstance(review, CronSchedule)
        assert review.cron == "0 6 1 1,4,7,10 *"
        assert deps["access-review"].parameters["roster"] == stack.env["HANDOVER_ROSTER"]
        for short in ("offboard", "offboard-bulk", "onboard", "change-access", "extend-grant"):
            assert not deps[short].schedules  # started by events, not by time
        offboard_id = deps["offboard"].id

        # The server's scheduler really creates the runs (it cannot with SQLAlchemy 2.1: the
        # reason for the pin in pyproject.toml).
        def scheduled(short: str) -> list[Any]:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deps[short].id]))
            )

        wait_for(
            "scheduled runs of the timed deployments",
            lambda: scheduled("expire-access") and scheduled("invitation-hygiene"),
            timeout=180,
        )

    # A real process worker, with the sandbox's settings and a tmp ledger.
    worker = stack.worker()

    # The intake in this process reads the same ledger; runs go through the deployment.
    svc = stack.runtime()
    assert str(svc.settings.ledger_database_url()) == stack.env["HANDOVER_LEDGER_URL"]
    launcher = deployment_launcher("offboard/offboard")
    body = json.dumps(
        {
            "event_id": "hr-evt-deploy-1",
            "type": "employee.terminated",
            "employee": {"email": EMAIL, "name": "Dana Sole"},
        }
    ).encode()
    secret = svc.settings.hr_webhook_secret.get_secret_value()
    t1 = time.monotonic()
    with TestClient(create_intake(svc, launcher=launcher)) as intake:
        first = intake.post("/hooks/hr", content=body, headers=sign_hr(secret, body))
        again = intake.post("/hooks/hr", content=body, headers=sign_hr(secret, body))
    assert first.status_code == 202, first.text
    run_id = first.json()["run"]
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["run"] == run_id
    # Even a re-launch of the same event (a crash between "launched" and "remembered") is
    # the same flow run: the event id is the idempotency key.
    relaunch = {"email": EMAIL, "reason": "termination", "requester": "hr-system:hr-evt-deploy-1"}
    assert launcher(relaunch) == run_id

    with get_client(sync_client=True) as client:

        def of_this_event() -> list[Any]:
            # Other tests of the session may have run this deployment for other requests.
            return [
                r
                for r in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[offboard_id])),
                    sort=FlowRunSort.START_TIME_DESC,
                )
                if r.parameters.get("requester") == "hr-system:hr-evt-deploy-1"
            ]

        runs = of_this_event()
        assert [str(r.id) for r in runs] == [run_id]

        # The worker runs it against the sandbox; it plans and pauses at the approval gate.
        def paused() -> Any:
            fr = client.read_flow_run(runs[0].id)
            assert not (fr.state and fr.state.is_final()), f"run ended: {fr.state}"
            return fr if fr.state and fr.state.is_paused() else None

        stack.wait("the run to pause at the gate", paused, timeout=90)
        t_paused = time.monotonic() - t1
        appr = wait_for(
            "its approval in the worker's ledger",
            lambda: next((a for a in list_approvals(svc.ledger) if a.subject == EMAIL), None),
            timeout=10,
        )
        assert appr.flow_run_id == run_id
        # Still exactly one run of the deployment.
        assert len(of_this_event()) == 1

        # Stopping the worker (Ctrl-C on `handover up`) ends the paused run's process too: the
        # run is Crashed, for the recovery sweep to start again (tests/cli/test_crash_recovery).
        (run_process,) = _descendants(worker.proc.pid)
        worker.stop()
        assert not worker.alive()
        assert _start_time(run_process[0]) != run_process[1], "the run's process is left"
        state = client.read_flow_run(runs[0].id).state
        assert state is not None and state.is_crashed(), state
        assert state.message == "Execution was aborted by a termination signal."
        # The stack's finalizer cancels it (forget_crashed_runs), for no later test's recovery
        # sweep to start it again.
    # The worker's process recorded the request and checkpointed it outside the ledger, beside
    # it in HANDOVER_HOME; the log verifies against it here, with the same key.
    (asked,) = [r for r in records(svc.ledger) if r.action == "approval.requested"]
    lines = (stack.home / "audit-checkpoint.jsonl").read_text().splitlines()
    assert asked.seq in [json.loads(line)["seq"] for line in lines]
    assert verify(svc.ledger).ok
    print(f"deploy {t_deploy:.1f} s; webhook → paused on the worker {t_paused:.1f} s")
