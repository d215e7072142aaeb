"""``flows.warm.wait_warm`` on the session's real Prefect server, with no warm worker running: a
bulk run's leaver never waits forever for a background task that cannot end.

- No warm worker is left to take the task: it is cancelled (so none takes it later) and the
  offboarding runs in the caller's process instead.
- The warm worker running it died (its flow run Crashed): the outcome is ``failed``, saying
  so and what happens next (an offboarding is started again; a bulk onboarding's row is
  finished by running the batch again).
- An emergency no worker takes in time is withdrawn (cancelled); a worker that takes it after
  that does not run it, and one that took it first keeps it: the submitter and the worker read
  the same history and agree.

Workers that do run offboardings: tests/cli/test_warm_cmd.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.app import create_app
from tasks.runtime import use_runtime
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        yield make_stack(sb, tmp_path)
    finally:
        sb.stop()


def test_a_task_no_warm_worker_takes_is_cancelled_and_run_here(stack: OffboardStack) -> None:
    from prefect.client.orchestration import get_client

    from domain.runbook import call_runbook
    from flows.offboard import offboard
    from flows.warm import offboard_warm, wait_warm, warm_workers

    assert warm_workers() == 0
    params = {"email": "dana.sole@acme.com", "reason": "termination", "dry_run": True}
    future = offboard_warm.delay(params)
    with use_runtime(stack.rt):
        out = wait_warm(future, lambda: call_runbook(offboard, **params), poll=0.5)
    assert out["status"] == "planned" and out["plan"]["steps"], out
    with get_client(sync_client=True) as client:
        state = client.read_task_run(future.task_run_id).state
    assert state is not None and state.is_cancelled(), state


@pytest.mark.parametrize(
    ("runbook", "then"),
    [
        ("offboard", "starts it again as a run of offboard/offboard"),
        # A bulk onboarding's row has no deployment to start it again in.
        ("onboard_row", "running the batch again finishes it"),
    ],
)
def test_a_run_whose_warm_worker_died_is_failed_saying_so(
    prefect_server: str, runbook: str, then: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed, Running

    from flows.offboard import offboard
    from flows.onboard_bulk import onboard_row, onboard_row_warm
    from flows.warm import RUN_PREFIX, offboard_warm, wait_warm

    flow, warm = (
        (offboard, offboard_warm) if runbook == "offboard" else (onboard_row, onboard_row_warm)
    )
    params = {"email": "gone.worker@acme.com", "reason": "termination"}
    future = warm.delay(params)
    with get_client(sync_client=True) as client:
        # What a worker that took the task and then died leaves behind: the task Running, its
        # flow run Crashed by the heartbeat automation.
        client.set_task_run_state(future.task_run_id, Running(), force=True)
        run = client.create_flow_run(
            flow, parameters=params, name=f"{RUN_PREFIX}{future.task_run_id}"
        )
        client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)
    out = wait_warm(future, lambda: pytest.fail("run here"), poll=0.5, fn=warm)
    assert out["status"] == "failed" and "warm worker running it died" in out["failure"], out
    assert str(run.id) in out["failure"] and then in out["failure"]
    with get_client(sync_client=True) as client:
        client.set_task_run_state(future.task_run_id, Cancelled(), force=True)


def test_a_task_nobody_takes_in_time_is_withdrawn_and_the_order_decides(
    prefect_server: str,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Running

    from flows.warm import _states, _withdraw, offboard_warm, taken_or_withdrawn, withdrawn_first

    params = {"email": "nobody.takes@acme.com", "reason": "security_incident", "emergency": True}
    late = offboard_warm.delay(params)
    assert taken_or_withdrawn(late.task_run_id, within=0.3) is False
    with get_client(sync_client=True) as client:
        state = client.read_task_run(late.task_run_id).state
        assert state is not None and state.is_cancelled(), state
        # A worker that subscribes afterwards and takes it (Prefect lets a cancelled task run)
        # finds it withdrawn.
        client.set_task_run_state(late.task_run_id, Running())
    assert withdrawn_first(_states(late.task_run_id)) is True

    early = offboard_warm.delay(params)
    with get_client(sync_client=True) as client:
        client.set_task_run_state(early.task_run_id, Running())  # a worker took it
        assert taken_or_withdrawn(early.task_run_id, within=0.3) is True
        # The race: the submitter saw it scheduled just before the worker took it, and cancels
        # after: the worker was first, so it keeps it and the submitter does not run it too.
        assert _withdraw(client, early.task_run_id, "test: too late") is False
    assert withdrawn_first(_states(early.task_run_id)) is False

    # A worker took it, but the server has not recorded the task's state from its events yet:
    # the flow run the worker started (through the API) says so, and it is not withdrawn.
    from flows.offboard import offboard
    from flows.warm import RUN_PREFIX

    started = offboard_warm.delay(params)
    with get_client(sync_client=True) as client:
        client.create_flow_run(
            offboard, parameters=params, name=f"{RUN_PREFIX}{started.task_run_id}"
        )
    assert taken_or_withdrawn(started.task_run_id, within=0.3) is True
    with get_client(sync_client=True) as client:
        state = client.read_task_run(started.task_run_id).state
        assert state is not None and state.is_scheduled(), state
        client.set_task_run_state(started.task_run_id, Cancelled(), force=True)
