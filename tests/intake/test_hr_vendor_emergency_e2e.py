"""HiBob's "revoke access immediately", end to end on an Okta-run organisation: the vendor's
documented payload, signed as HiBob signs (``Bob-Signature``), read through HiBob's API for the
employee's email, starts the real emergency offboarding — no approval asked, the IdP user
deactivated and their sessions ended through Okta's Management API before the org removal,
verified. The demo org over loopback, the session's real Prefect server, the intake in-process
with the thread launcher (as ``handover demo`` wires it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.tasks import REPORTED, is_ok
from intake.app import create_intake
from intake.hr_vendors import sign_hibob
from intake.launch import thread_launcher
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve, state_names
from tests.flows.offboard_stack import OffboardStack, make_stack
from tests.intake.test_hr_emergency_e2e import WithoutHeartbeats

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "hr" / "hibob_access_revoked_immediately.json"
SECRET = "hibob-webhook-secret-e2e"
MIKE = "mike.stale@acme.com"  # whom the fixture's employeeId is in the sandbox's HiBob


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    more = {"hr_hibob_secret": SECRET, "hr_api": "hibob", "hr_api_url": f"{sb.url}/hibob/v1"}
    yield make_stack(sb, tmp_path, idp_kind="okta", more=more)
    sb.stop()


def test_hibob_revoke_immediately_locks_out_through_okta(stack: OffboardStack) -> None:
    from flows.offboard import offboard
    from tasks.runtime import use_runtime

    r = httpx.post(f"{stack.url}/_sandbox/idp/sessions", params={"user": MIKE}, timeout=10)
    assert r.status_code == 200, r.text
    with use_runtime(stack.rt):  # the launcher's runs start in a copy of this context
        launcher = thread_launcher(WithoutHeartbeats(offboard))
    intake = TestClient(create_intake(stack.svc, launcher=launcher))
    body = FIXTURE.read_bytes()
    seq0 = stack.seq()
    r = intake.post("/hooks/hr/hibob", content=body, headers=sign_hibob(SECRET, body))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    res = launcher.wait(r.json()["run"], timeout=180)  # nobody clicks: it must not pause
    assert isinstance(res, dict), res
    assert res["status"] == "done", res
    assert "Paused" not in state_names(res["run_id"])
    assert all(is_ok(v) for v in res["verification"].values()), res["verification"]
    assert res["verification"]["idp_sessions_ended"].startswith(REPORTED)
    assert stack.member(MIKE) is None
    user = stack.rt.idp.find_user(MIKE)
    assert user is not None and user.status == "DEPROVISIONED"
    live = httpx.get(f"{stack.url}/_sandbox/idp/sessions", params={"user": MIKE}, timeout=10)
    assert live.json()["live"] == 0
    # Okta first (deactivate, then its sessions), then the org.
    writes = [(w["method"], w["path"]) for w in stack.writes(seq0) if w["method"] != "GET"]
    okta = [i for i, (_m, p) in enumerate(writes) if p.startswith("/okta/api/v1/")]
    ended = [i for i, (m, p) in enumerate(writes) if m == "DELETE" and p.endswith("/sessions")]
    removal = [i for i, (_m, p) in enumerate(writes) if p == f"/scim/1/Users/{MIKE}"]
    assert okta and ended and removal, writes
    assert okta[0] < ended[0] < removal[0], writes
    # HiBob redelivers the same event: nothing starts again.
    again = intake.post("/hooks/hr/hibob", content=body, headers=sign_hibob(SECRET, body))
    assert again.status_code == 200 and again.json().get("duplicate") is True, again.text
