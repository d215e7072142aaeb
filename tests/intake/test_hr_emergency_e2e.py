"""HR flags a leaver as a security risk: the signed webhook starts the real offboarding flow as an
emergency (no approval asked, lockout first, a post-hoc review by security), verified.

The demo org over loopback, the session's real Prefect server, the intake in-process with the
thread launcher (as ``handover demo`` wires it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.records import ApprovalState
from intake.app import create_intake
from intake.hooks import sign_hr
from intake.launch import thread_launcher
from ledger.approvals import list_approvals
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve, state_names
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow

DANA = "dana.sole@acme.com"


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    yield make_stack(sb, tmp_path)
    sb.stop()


class WithoutHeartbeats:
    """The flow as the launcher calls it, with heartbeats off in its thread (a sync flow joins
    its heartbeat thread at the end: ~1 s each); ``with_options`` passes through."""

    def __init__(self, flow: Any) -> None:
        self.flow = flow

    def with_options(self, **options: Any) -> WithoutHeartbeats:
        return WithoutHeartbeats(self.flow.with_options(**options))

    def __call__(self, **params: Any) -> Any:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return self.flow(**params)


def test_a_security_risk_event_runs_the_emergency_offboarding(stack: OffboardStack) -> None:
    from flows.offboard import offboard
    from tasks.runtime import use_runtime

    with use_runtime(stack.rt):  # the launcher's runs start in a copy of this context
        launcher = thread_launcher(WithoutHeartbeats(offboard))
    intake = TestClient(create_intake(stack.svc, launcher=launcher))
    body = json.dumps(
        {
            "event_id": "hr-risk-1",
            "type": "employee.terminated",
            "employee": {"email": DANA},
            "effective_date": "2099-12-31",  # ignored: a risk is locked out now
            "security_risk": True,
        }
    ).encode()
    secret = stack.svc.settings.hr_webhook_secret.get_secret_value()
    stamp = int(stack.svc.clock().timestamp())
    r = intake.post("/hooks/hr", content=body, headers=sign_hr(secret, body, stamp))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    res = launcher.wait(r.json()["run"], timeout=180)  # nobody clicks: it must not pause
    assert isinstance(res, dict), res
    assert res["status"] == "done", res
    assert all(v == "pass" for v in res["verification"].values()), res["verification"]
    assert "Paused" not in state_names(res["run_id"])
    assert stack.member(DANA) is None
    (appr,) = list_approvals(stack.svc.ledger)
    assert appr.state is ApprovalState.APPROVED and appr.quorum == 0 and appr.decisions == []
    assert appr.requester == "hr-system:hr-risk-1"
    for reviewer in ("sec.lead@acme.com", "sec.oncall@acme.com"):
        assert any("Emergency offboard of dana.sole" in m["text"] for m in stack.dms(reviewer))
