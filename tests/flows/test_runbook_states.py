"""A runbook run ends in the Prefect state of its outcome (flows/runbook.py ``finish``): a failed
run is Failed (the step and the reason in its message), a blocked one Failed named Blocked, a
denied one Completed named Denied — what Prefect's automations and notifications act on."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import State

from domain.runbook import RunbookFailed, call_runbook
from flows.runbook import finish
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow

SOFIA = "sofia.lead@acme.com"


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        yield make_stack(sb, tmp_path)
    finally:
        sb.stop()


def _state(flow_run_id: str) -> State[Any]:
    with get_client(sync_client=True) as c:
        state = c.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state


def test_a_denied_offboarding_is_completed_named_denied(stack: OffboardStack) -> None:
    gina = "gina.groups@acme.com"
    run = stack.start(email=gina, reason="termination")
    appr = stack.paused(gina)
    assert stack.click(appr, SOFIA, deny=True).status_code == 200
    res = run.wait()
    assert res["status"] == "denied", res
    state = _state(appr.flow_run_id)
    assert state.is_completed() and state.name == "Denied"
    assert stack.member(gina) is not None  # nothing was changed


def test_a_run_stopped_by_a_failing_step_is_failed_with_the_step(stack: OffboardStack) -> None:
    gina = "gina.groups@acme.com"
    run = stack.start(email=gina, reason="termination")
    appr = stack.paused(gina)
    # Every org API fails from now on: the first step cannot be done (Slack and the IdP still
    # answer: the intake checks who clicked with them).
    httpx.put(
        f"{stack.url}/_sandbox/faults",
        json={"fault_rate": 1.0, "apis": ["org_scim", "org_admin"]},
        timeout=10,
    )
    try:
        assert stack.click(appr, SOFIA).status_code == 200
        res = run.wait(timeout=180)
    finally:
        httpx.put(f"{stack.url}/_sandbox/faults", json={}, timeout=10)
    assert res["status"] == "failed" and res["failure"], res
    first = res["plan"]["steps"][0]
    assert res["failure"].startswith(f"{first['kind']} {first['target']}")
    state = _state(appr.flow_run_id)
    assert state.is_failed() and state.name == "Failed"
    assert state.message is not None and f"{first['kind']} {first['target']}" in state.message


@flow
def _ends(status: str) -> Any:
    return finish(
        {"status": status, "plan": {"blockers": ["choose a receiver"]}, "failure": "x: 409"}
    )


@pytest.mark.parametrize(
    ("status", "failed", "name"),
    [("blocked", True, "Blocked"), ("failed", True, "Failed"), ("denied", False, "Denied")],
)
def test_each_outcome_has_its_state(prefect_server: str, status: str, failed: bool, name: str):
    state = _ends(status, return_state=True)
    assert state.is_failed() is failed and state.name == name
    if failed:
        with pytest.raises(RunbookFailed) as e:
            state.result()
        assert e.value.outcome["status"] == status
    else:
        assert state.result()["status"] == status


def test_a_done_outcome_is_the_plain_result(prefect_server: str) -> None:
    state = _ends("done", return_state=True)
    assert state.is_completed() and state.name == "Completed"
    assert state.result()["status"] == "done"


@pytest.fixture
def final_state_sent_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP request that proposes a flow run's final state is sent twice and the client
    keeps the second answer: what Prefect's client does when the server committed the state but
    its answer was lost or late (it retries a 503 "database is locked" from its SQLite server
    under load). The retry carries the same ``transition_id``, so the server rejects it as a
    duplicate and answers with its copy of the state, which has no data."""
    from prefect.client.base import PrefectHttpxSyncClient

    real = PrefectHttpxSyncClient.send

    def twice(self: PrefectHttpxSyncClient, request: httpx.Request, *a: Any, **kw: Any) -> Any:
        first = real(self, request, *a, **kw)
        final = b'"type":"FAILED"' in request.content or b'"type":"COMPLETED"' in request.content
        if request.url.path.endswith("/set_state") and final:
            return real(self, request, *a, **kw)
        return first

    monkeypatch.setattr(PrefectHttpxSyncClient, "send", twice)


@pytest.mark.parametrize("status", ["blocked", "failed", "denied", "done"])
def test_the_caller_gets_the_outcome_when_the_final_state_was_sent_twice(
    prefect_server: str, final_state_sent_twice: None, status: str
) -> None:
    assert call_runbook(_ends, status)["status"] == status


def test_a_direct_call_loses_a_blocked_outcome_when_the_final_state_was_sent_twice(
    prefect_server: str, final_state_sent_twice: None
) -> None:
    # Why call_runbook exists: Prefect hands the caller the server's copy of the state.
    with pytest.raises(Exception) as e:
        _ends("blocked")
    assert not isinstance(e.value, RunbookFailed)
    assert "blocked: choose a receiver" in str(e.value)


def test_a_subflow_run_in_a_thread_hands_its_outcome_to_its_own_caller(prefect_server: str):
    @flow
    def parent() -> Any:
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=2) as pool:
            futs = [
                pool.submit(ctx.copy().run, call_runbook, _ends, s) for s in ("blocked", "done")
            ]
            inner = [f.result()["status"] for f in futs]
        return finish({"status": "done", "plan": {"blockers": []}, "inner": inner})

    out = call_runbook(parent)
    assert out["status"] == "done" and out["inner"] == ["blocked", "done"]
