"""A sweep or an extension that fails or is blocked ends Failed (``flows.sweep``), so Prefect's
automations see it; its outcome rides on ``RunbookFailed``. The demo sandbox, with a backend
that lacks a capability or drops a write (fakes over the real connectors), on the session's
real Prefect server.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from domain.records import GrantStatus
from domain.runbook import RunbookFailed
from ledger.grants import set_grant
from tasks.runtime import Runtime, use_runtime
from tests.flows.offboard_stack import OffboardStack
from tests.flows.sweep_stack import CARLA, demo_stack, sandbox_now, temporary_staging_manager
from tests.tasks.sandbox_runtime import Down, Ignoring

pytestmark = pytest.mark.slow

stack = pytest.fixture(name="stack")(demo_stack)


def final(flow: Any, rt: Runtime, **params: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``flow`` over ``rt``; its final state and its outcome."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), use_runtime(rt):
        state = flow(**params, return_state=True)
    data = state.result(raise_on_failure=False)
    return state, data.outcome if isinstance(data, RunbookFailed) else data


def test_a_sweep_that_cannot_read_ends_blocked(stack: OffboardStack) -> None:
    from flows.expire import expire_access

    now = sandbox_now(stack.url)
    temporary_staging_manager(stack.rt, now - timedelta(days=3))  # a grantee to read
    rt = dataclasses.replace(stack.rt, org=Down(stack.rt.org, "get_member"))
    state, out = final(expire_access, rt, now=now.isoformat())
    assert state.is_failed() and state.name == "Blocked"
    assert out["status"] == "blocked"
    assert out["plan"]["blockers"][0].startswith("the org could not say who has what")


def test_a_sweep_whose_action_fails_ends_failed_and_says_which(stack: OffboardStack) -> None:
    from flows.expire import expire_access

    now = sandbox_now(stack.url)
    g = temporary_staging_manager(stack.rt, now - timedelta(days=3))  # due
    rt = dataclasses.replace(stack.rt, org=Ignoring(stack.rt.org, "set_project_role"))
    state, out = final(expire_access, rt, now=now.isoformat())
    assert state.is_failed() and state.message.startswith("failed: revoke_role:")
    assert out["status"] == "failed" and out["effects"] == {}
    (failure,) = out["failures"]
    assert failure.startswith(f"revoke_role:{CARLA} (Staging manager): ")
    assert "revocation not verified" in failure
    # Nothing was marked done: the next sweep (the write goes through now) revokes it.
    state, out = final(expire_access, stack.rt, now=now.isoformat())
    assert state.is_completed() and out["status"] == "done"
    assert list(out["verification"].values()) == ["pass"] and g.id is not None


def test_extending_a_grant_that_is_no_longer_active_ends_blocked(stack: OffboardStack) -> None:
    from flows.expire import extend_grant

    g = temporary_staging_manager(stack.rt, sandbox_now(stack.url))
    assert g.id is not None
    set_grant(stack.rt.ledger, g.id, status=GrantStatus.EXPIRED)
    state, out = final(extend_grant, stack.rt, grant_id=g.id, requester=CARLA)
    assert state.is_failed() and state.name == "Blocked"
    assert out["status"] == "blocked"
    assert out["plan"]["blockers"] == [
        f"grant {g.id} is expired: only an active grant can be extended"
    ]
    assert out["grant"]["status"] == "expired"
