"""The warm executor (issue 18): ``handover warm-worker`` processes on the session's real
Prefect server, against a sandbox over loopback.

- An HR ``security_risk`` webhook, through the intake's ``WarmLauncher``, runs on the warm
  worker (no deployment, no process worker exists here): the member is removed, the run is a
  flow run of its own named after the background task, and the launcher's ``ended`` says
  when it is over. An emergency handed over while the server wrongly believes a worker
  serves (one that died after saying so) is withdrawn when nobody takes it in time and goes
  to the fallback; the worker that subscribes later does not run it.
- A bulk offboarding shares its leavers between two warm workers, each allowed two at once:
  every leaver removed, every row done, and each worker ran some of them. A bulk onboarding's
  rows then run on the same workers: every row invited, each by a warm worker.
- A warm run whose worker died (its flow run Crashed) is started again by the recovery sweep
  as a run of the ``offboard/offboard`` deployment, with the same parameters, once.
- A warm worker stopped with SIGTERM ends at once and the server forgets it: the next
  emergency goes to the fallback. Anything but an emergency goes there too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from cli.warm_cmd import start_warm_worker
from cli.watchdog_cmd import ChildProcess
from sandbox.app import create_app
from tasks.runtime import use_runtime
from tests.cli.deploy_stack import wait_for
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import IDP_PATHS, OffboardStack, make_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HR = "hr.partner@acme.com"


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="scale:200", rng_seed=8))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    return make_stack(sandbox, tmp_path)


def warm_env(stack: OffboardStack) -> dict[str, str]:
    """The stack's settings for a warm worker process (the same org, IdP, Slack, Jira, ledger
    and roster as this process's runtime), and this process's scheduling storage."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    s = stack.rt.settings
    url = stack.url
    return {
        "HANDOVER_ORG_URL": url,
        "HANDOVER_IDP_KIND": "scim",
        "HANDOVER_IDP_URL": f"{url}{IDP_PATHS['scim']}",
        "HANDOVER_SLACK_API_URL": f"{url}/slack/api/",
        "HANDOVER_JIRA_URL": f"{url}/jira",
        "HANDOVER_OIDC_ISSUER": f"{url}/idp/oidc",
        "HANDOVER_LEDGER_URL": str(s.ledger_database_url()),
        "HANDOVER_ROSTER": str(stack.roster),
        "HANDOVER_HOME": str(stack.tmp / "home"),
        "HANDOVER_SANDBOX": "1",
        "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
    }


def warm_workers(
    stack: OffboardStack, request: pytest.FixtureRequest, n: int, limit: int
) -> list[ChildProcess]:
    procs = []
    for i in range(n):
        p = start_warm_worker(limit=limit, env=warm_env(stack), log=stack.tmp / f"warm-{i}.log")
        request.addfinalizer(p.stop)
        procs.append(p)
    from flows.warm import warm_workers as serving

    wait_for(f"{n} warm workers", lambda: serving() >= n, timeout=120)
    return procs


def joined_plain_members(stack: OffboardStack, n: int) -> list[str]:
    members = stack.get("/admin/v1/members", limit=1000)["members"]
    people = sorted(
        m["email"] for m in members if m["status"] == "joined" and m["org_role"] != "admin"
    )
    return people[:: len(people) // n][:n]


def test_an_hr_emergency_runs_on_the_warm_worker(
    stack: OffboardStack, request: pytest.FixtureRequest
) -> None:
    from fastapi.testclient import TestClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from flows.warm import RUN_PREFIX, offboard_warm, taken_or_withdrawn
    from flows.warm import warm_workers as serving
    from intake.app import create_intake
    from intake.hooks import sign_hr
    from intake.launch import WARM, WarmLauncher

    cold: list[dict[str, Any]] = []

    def fallback(params: dict[str, Any]) -> str:
        cold.append(params)
        return "cold-run"

    who, spared = joined_plain_members(stack, 2)
    # No worker serves yet, but the launcher is told one does: nobody takes the task, so it is
    # withdrawn after the pickup time and the emergency goes to the fallback.
    submitted: list[Any] = []

    class Recording:
        def delay(self, params: dict[str, Any]) -> Any:
            submitted.append(offboard_warm.delay(params))
            return submitted[-1]

    orphan = WarmLauncher(
        Recording(),
        serving=lambda: True,
        fallback=fallback,
        taken=lambda task_run_id: taken_or_withdrawn(task_run_id, within=1.0),
    )
    lost = {"email": spared, "reason": "security_incident", "emergency": True}
    assert orphan(lost) == "cold-run" and cold == [lost]
    cold.clear()
    # Prefect stored the task's parameters for a worker, here (a worker deletes them: below).
    with get_client(sync_client=True) as client:
        history = client.read_task_run_states(submitted[0].task_run_id)
    (params_id,) = {s.state_details.task_parameters_id for s in history} - {None}
    assert (PREFECT_LOCAL_STORAGE_PATH.value() / "parameters" / str(params_id)).is_file()

    (proc,) = warm_workers(stack, request, 1, limit=2)
    launcher = WarmLauncher(offboard_warm, serving=lambda: serving() > 0, fallback=fallback)
    body = json.dumps(
        {
            "event_id": "warm-evt-1",
            "type": "employee.terminated",
            "employee": {"email": who},
            "security_risk": True,
        }
    ).encode()
    secret = stack.svc.settings.hr_webhook_secret.get_secret_value()
    with TestClient(create_intake(stack.svc, launcher=launcher)) as intake:
        r = intake.post("/hooks/hr", content=body, headers=sign_hr(secret, body))
        again = intake.post("/hooks/hr", content=body, headers=sign_hr(secret, body))
    assert r.status_code == 202, r.text
    ref = r.json()["run"]
    assert ref.startswith(WARM) and not cold
    # A redelivered event is the same run: the intake records each event once.
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["run"] == ref

    wait_for("the member removed", lambda: stack.member(who) is None, timeout=240)
    wait_for("the warm run ended", lambda: launcher.ended(ref) is True, timeout=120)
    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[f"{RUN_PREFIX}{ref.removeprefix(WARM)}"])
                )
            )
        ]
        assert runs and runs[0].parameters["email"] == who
        assert len(runs) == 1 and runs[0].deployment_id is None
        assert runs[0].state is not None and runs[0].state.is_completed(), runs[0].state
        # The flow's steps keep their results to themselves: none was written to the
        # scheduling storage (where the background task's parameters and outcome go).
        steps = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id]))
        )
        assert steps and all(t.state is not None for t in steps)
        assert [t.name for t in steps if t.state.data is not None] == []  # type: ignore[union-attr]
        task_run = client.read_task_run(UUID(ref.removeprefix(WARM)))
        assert task_run.state is not None and task_run.state.is_completed()
        result = task_run.state.result()
        history = client.read_task_run_states(task_run.id)
    assert result["status"] == "done" and result["run_id"] == str(runs[0].id), result
    # The parameters Prefect stored for the worker (with the submitter's settings) are deleted
    # once the run is over.
    (params_id,) = {s.state_details.task_parameters_id for s in history} - {None}
    assert not (PREFECT_LOCAL_STORAGE_PATH.value() / "parameters" / str(params_id)).exists()
    # The withdrawn emergency did not run on the worker that subscribed later (Prefect may
    # deliver it there; the task checks its history first): its fallback has it.
    with get_client(sync_client=True) as client:
        withdrawn = client.read_task_run(submitted[0].task_run_id).state
        none_ran = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[f"{RUN_PREFIX}{submitted[0].task_run_id}"])
            )
        )
    assert withdrawn is not None and withdrawn.is_final(), withdrawn
    assert none_ran == [] and stack.member(spared) is not None

    # Stopped as `handover up` stops it (SIGTERM): at once, and the server forgets it, so the
    # next emergency goes to the fallback.
    proc.proc.terminate()
    assert proc.proc.wait(30) == 0
    assert "warm worker: stopped" in proc.log.read_text()  # type: ignore[union-attr]
    wait_for("the server to forget the worker", lambda: serving() == 0, timeout=60)
    assert launcher({"email": who, "reason": "security_incident", "emergency": True}) == (
        "cold-run"
    )


def test_a_bulk_offboarding_is_shared_by_two_warm_workers(
    stack: OffboardStack, request: pytest.FixtureRequest
) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.offboard_bulk import offboard_bulk
    from tests.flows import test_onboard_bulk_e2e as onboard_e2e
    from tests.flows.test_offboard_bulk_e2e import paused_batch

    workers = warm_workers(stack, request, 2, limit=2)
    people = joined_plain_members(stack, 6)
    out: list[dict[str, Any]] = []

    def run() -> None:
        with (
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
            use_runtime(stack.rt),
        ):
            out.append(
                offboard_bulk(
                    emails=people,
                    reason="termination",
                    requester="it.ops@acme.com",
                    max_workers=4,
                )
            )

    t = threading.Thread(target=run, daemon=True)
    t.start()
    appr = paused_batch(stack)
    r = stack.click(appr, HR)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    t.join(400)
    assert out, "the bulk run did not end"
    result = out[0]
    assert result["status"] == "done", result
    assert [m["status"] for m in result["members"]] == ["done"] * 6
    assert all(stack.member(p) is None for p in people)
    # Each worker, allowed two at once, ran some of the six (the server gave each submission
    # to one of them): its log names each leaver it took.
    ran = [
        [p for p in people if p in w.log.read_text()]  # type: ignore[union-attr]
        for w in workers
    ]
    assert all(ran) and sorted(p for r in ran for p in r) == sorted(people), ran

    # A bulk onboarding: its rows (no person to wait on) run on the same warm workers.
    vendors = [f"warm-vendor-{i}@vendorco.com" for i in range(4)]
    csv = onboard_e2e.HEADER + "".join(
        f"{v},Staging=viewer; Development=member,viewer,,,warm rows,SOW-1\r\n" for v in vendors
    )
    run = onboard_e2e.start(stack, csv_text=csv, requester="operator", max_workers=4)
    stack.approve_every_seat(onboard_e2e.paused_batch(stack))
    res = run.wait(timeout=300)
    assert res["counts"] == {"done": 4}, res["rows"]
    assert all(stack.member(v) is not None for v in vendors)
    logs = "".join(w.log.read_text() for w in workers)  # type: ignore[union-attr]
    assert all(f"onboarding {v}" in logs for v in vendors), logs[-3000:]


def test_a_crashed_warm_run_is_started_again_as_a_deployment_run(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed, Running

    from cli.recover import resume_crashed
    from flows.offboard import offboard
    from flows.warm import RUN_PREFIX

    params = {"email": "crashed.warm@acme.com", "reason": "termination", "requester": "operator"}
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(offboard)
        try:
            deployment = client.read_deployment_by_name("offboard/offboard")
        except Exception:
            deployment_id = client.create_deployment(
                flow_id=flow_id, name="offboard", entrypoint="flows/offboard.py:offboard"
            )
            deployment = client.read_deployment(deployment_id)
        run = client.create_flow_run(
            offboard, parameters=params, name=f"{RUN_PREFIX}x", state=Running()
        )
        client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)

    first = [r for r in resume_crashed() if r.crashed == str(run.id)]
    again = [r for r in resume_crashed() if r.crashed == str(run.id)]
    assert len(first) == 1 and not again
    assert first[0].deployment == str(deployment.id)
    with get_client(sync_client=True) as client:
        new = client.read_flow_run(UUID(first[0].run))
        assert new.deployment_id == deployment.id and new.parameters == params
        assert "resume-1" in new.tags
        client.set_flow_run_state(new.id, Cancelled(message="test: no worker"), force=True)


def test_only_an_emergency_goes_warm_and_only_while_a_warm_worker_serves() -> None:
    from intake.launch import WARM, WarmLauncher

    class Future:
        task_run_id = "00000000-0000-0000-0000-000000000001"

    class Served:  # what WarmLauncher uses of a Prefect task: delay()
        def __init__(self) -> None:
            self.submitted: list[dict[str, Any]] = []

        def delay(self, params: dict[str, Any]) -> Future:
            self.submitted.append(params)
            return Future()

    task, cold, up = Served(), [], [True]
    launcher = WarmLauncher(
        task, serving=lambda: up[0], fallback=lambda p: cold.append(p) or f"cold-{len(cold)}"
    )
    emergency = {"email": "a@acme.com", "reason": "security_incident", "emergency": True}
    normal = {"email": "b@acme.com", "reason": "termination"}
    assert launcher(emergency) == f"{WARM}{Future.task_run_id}"
    assert launcher(normal) == "cold-1"
    up[0] = False
    assert launcher(emergency) == "cold-2"
    assert task.submitted == [emergency] and cold == [normal, emergency]
    assert launcher.ended("cold-1") is None  # the fallback cannot tell: unknown, never "ended"


def test_warm_worker_needs_a_prefect_server_and_a_sane_limit(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from cli.watchdog_cmd import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["HANDOVER_HOME"] = str(tmp_path)  # no `handover up` state here to join

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "warm-worker", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    none = run()
    assert none.returncode == 2 and "no Prefect server" in none.stderr, none.stderr
    bad = run("--limit", "0")
    assert bad.returncode == 2 and "--limit" in bad.stderr, bad.stderr
