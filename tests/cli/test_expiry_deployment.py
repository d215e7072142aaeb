"""Temporary-access expiry through the deployments (issue 7), on the session's real Prefect
server: prefect.yaml deployed as written, a real process worker, and the sandbox's clock moved.

A contractor's temporary Staging Manager role ends in 2 days. A Scheduled run of the
expire-access deployment, given the sandbox's time as ``now``, sweeps on the worker and sends
the 3-day reminder with an Extend button; the signed Extend click through the intake starts an
extend-grant run on the worker, which pauses at the approval; the sponsor's signed approval
moves the same grant's end by 30 days; 40 days later (the sandbox's clock moved) the next
Scheduled sweep revokes it.

The Scheduled runs are created by the test, not by the server's scheduler: with SQLAlchemy
2.1 the Prefect 3.8.8 scheduler services fail to insert any run ("Can't evaluate bulk DML
statement; please supply a bulk_dml decorated function", in the server log), so no deployment
schedule — the deployed 15-minute one included — yields a run in this environment. The deployed
schedule is switched off for the test so that, once the scheduler works, none of its runs
(``now`` = the orchestrator's time) sweeps in between; it is switched back on at the end.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.approvals_cmd import block_actions_body, from_slack, sign
from cli.deploy import PREFECT_YAML, deploy_all
from tests.cli.deploy_stack import DeployStack, wait_for
from tests.flows.sweep_stack import (
    CARLA,
    SPONSOR,
    extend_buttons,
    sandbox_now,
    temporary_staging_manager,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ADMIN = {"Authorization": "Bearer sandbox-admin-token"}
EXPIRE = "expire-access/expire-access"
EXTEND = "extend-grant/extend-grant"


def signed(secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, sign(secret, body)


def test_expiry_reminder_extension_and_revocation_on_the_worker(
    stack: DeployStack, request: pytest.FixtureRequest
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from domain.expiry import utc
    from domain.models import Role
    from domain.records import Grant, GrantStatus
    from intake.app import create_intake
    from intake.launch import deployment_launcher
    from ledger.approvals import list_approvals
    from ledger.grants import grants

    t_start = time.monotonic()
    deploy_all(PREFECT_YAML, env=stack.env)
    t_deploy = time.monotonic() - t_start
    stack.worker()

    # The ledger the worker uses, and the org it acts on, seen from this process.
    rt = svc = stack.runtime()
    assert str(svc.settings.ledger_database_url()) == stack.env["HANDOVER_LEDGER_URL"]
    secret = svc.settings.slack_signing_secret.get_secret_value()

    def staging() -> list[Any]:
        return [p for p in rt.org.effective_access(CARLA) if p.project == "Staging"]

    def the_grant(gid: int) -> Grant:
        (g,) = [g for g in grants(rt.ledger) if g.id == gid]
        return g

    # A temporary Staging Manager role, ending in 2 days, on a ticket, sponsored by Sofia.
    t0 = sandbox_now(stack.url)
    g = temporary_staging_manager(rt, t0)
    assert g.id is not None
    gid = g.id

    client = get_client(sync_client=True)
    client.__enter__()
    request.addfinalizer(lambda: client.__exit__(None, None, None))
    dep = client.read_deployment_by_name(EXPIRE)
    # One sweep at a time (prefect.yaml): one waiting on people cancels the next ones.
    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
    assert dep.concurrency_options is not None
    assert dep.concurrency_options.collision_strategy == "CANCEL_NEW"
    (every_15,) = [x for x in dep.schedules if x.active]
    client.update_deployment_schedule(dep.id, every_15.id, active=False)
    request.addfinalizer(
        lambda: client.update_deployment_schedule(dep.id, every_15.id, active=True)
    )

    def scheduled_sweep(now: datetime, timeout: float = 180) -> Any:
        """A Scheduled run of expire-access (due in 2 s) with ``now``; wait for the worker to
        complete it. (The server's scheduler cannot insert runs here: the module docstring.)"""
        created = client.create_flow_run_from_deployment(
            dep.id,
            parameters={"now": now.isoformat()},
            state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(seconds=2)),
        )

        def completed() -> Any:
            r = client.read_flow_run(created.id)
            assert not (r.state and r.state.is_final() and not r.state.is_completed()), (
                f"sweep {r.id} ended {r.state}"
            )
            return r if r.state and r.state.is_completed() else None

        return stack.wait(f"the sweep at {now} on the worker", completed, timeout=timeout)

    # (1) The first sweep: the 3-day reminder (it ends in 2 days), with Extend.
    t1 = time.monotonic()
    scheduled_sweep(t0)
    t_remind = time.monotonic() - t1
    assert extend_buttons(stack.url, CARLA) == [f"grant:{gid}"]
    assert extend_buttons(stack.url, SPONSOR) == [f"grant:{gid}"]
    assert the_grant(gid).last_reminder == "3d"
    assert staging()[0].role is Role.MANAGER

    # (2) Carla clicks Extend → an extend-grant run on the worker pauses at the approval.
    t2 = time.monotonic()
    intake = TestClient(create_intake(svc, extend_launcher=deployment_launcher(EXTEND)))
    rt.idp.create_user(email=CARLA)  # a Slack click counts only from an IdP user

    def click_extend() -> Any:
        """Carla's signed Extend click on the grant's reminder."""
        body, headers = signed(
            secret,
            {
                "type": "block_actions",
                **from_slack(),
                "user": {"id": svc.messenger.user_id(CARLA)},
                "trigger_id": f"{time.time_ns()}.sandbox",
                "actions": [{"action_id": "extend", "block_id": "expiry", "value": f"grant:{gid}"}],
            },
        )
        return intake.post("/slack/interactions", content=body, headers=headers)

    r = click_extend()
    assert r.status_code == 200 and r.json()["started"] is True, r.text

    def paused() -> Any:
        found = [a for a in list_approvals(svc.ledger) if a.subject == CARLA]
        if not (found and found[-1].flow_run_id):
            return None
        fr = client.read_flow_run(UUID(found[-1].flow_run_id))
        assert not (fr.state and fr.state.is_final()), f"extension ended: {fr.state}"
        return found[-1] if fr.state and fr.state.is_paused() else None

    appr = wait_for("the extension to pause at the approval", paused, timeout=180)
    run = client.read_flow_run(UUID(appr.flow_run_id))
    assert run.deployment_id == client.read_deployment_by_name(EXTEND).id
    assert appr.runbook == "extend" and appr.requester == CARLA
    assert any(SPONSOR in seat for seat in appr.required), appr.required
    # Clicked again while it waits: Prefect says the run is paused, not ended; nobody is asked.
    r = click_extend()
    assert r.status_code == 200 and r.json()["started"] is False, r.text
    assert "already waiting for approval" in r.json()["message"]
    asked = [x for x in appr.slack_refs if x["email"] == SPONSOR]
    body = block_actions_body(
        approval_id=appr.id,
        plan_hash=appr.plan_hash,
        slack_user=svc.messenger.user_id(SPONSOR),
        deny=False,
        channel=asked[-1]["channel"] if asked else None,
        ts=asked[-1]["ts"] if asked else None,
    )
    r = intake.post("/slack/interactions", content=body, headers=sign(secret, body))
    assert r.status_code == 200 and r.json()["recorded"], r.text

    def extended() -> Any:
        fr = client.read_flow_run(run.id)
        assert not (fr.state and fr.state.is_final() and not fr.state.is_completed()), fr.state
        return fr if fr.state and fr.state.is_completed() else None

    wait_for("the extension to complete on the worker", extended, timeout=180)
    t_extend = time.monotonic() - t2
    after = the_grant(gid)
    assert after.status is GrantStatus.ACTIVE
    assert utc(after.end) == t0 + timedelta(days=32)
    assert after.extended_from is not None and utc(after.extended_from) == t0 + timedelta(days=2)
    assert len(grants(rt.ledger, subject=CARLA)) == 1  # the same grant, never a second row

    # (3) 40 days later (nothing ran meanwhile): the next sweep, at the org's time, revokes.
    r = httpx.post(
        f"{stack.url}/_sandbox/clock", json={"advance_days": 40}, headers=ADMIN, timeout=10
    )
    assert r.status_code == 200, r.text
    later = sandbox_now(stack.url)
    assert later - t0 >= timedelta(days=40)
    t3 = time.monotonic()
    scheduled_sweep(later)
    t_expire = time.monotonic() - t3
    assert the_grant(gid).status is GrantStatus.EXPIRED
    assert staging() == []
    print(
        f"deploy {t_deploy:.1f} s; sweep → reminder {t_remind:.1f} s; extend click → "
        f"approved and done {t_extend:.1f} s; sweep → revocation {t_expire:.1f} s"
    )
