"""The runbooks that touch the identity provider, end to end on each IdP kind
(``HANDOVER_IDP_KIND=scim|okta|entra``, issue 17): offboarding, the emergency path,
IdP-managed onboarding and the expiry of IdP-managed temporary access — over HTTP against the
demo sandbox, whose one IdP answers as a generic SCIM 2.0 service, as Okta's Management API and
as Microsoft Graph (each pushing its mapped groups into the org), on a real Prefect server.

Each test checks that the IdP's writes went through the chosen kind's API (and no other), and
what each kind can say about the leaver's sessions: Okta and Entra end them (Graph reads the
end back; Okta cannot list sessions, so its check says it was reported, never "pass"); the
generic SCIM IdP has no sessions API, which the plan says.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.tasks import REPORTED, is_ok
from ledger.grants import grants
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve, state_names
from tests.flows.offboard_stack import IDP_PATHS, OffboardStack, make_stack

pytestmark = pytest.mark.slow

KINDS = ("scim", "okta", "entra")
DANA = "dana.sole@acme.com"
SOFIA = "sofia.lead@acme.com"
HR = "hr.partner@acme.com"
VENDOR = "analytics-vendor-kim.idp@vendorco.com"
API_PATHS = {kind: path.rstrip("/") + "/" for kind, path in IDP_PATHS.items()}
API_PATHS["okta"] = "/okta/api/v1/"


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture(params=KINDS)
def stack(
    request: pytest.FixtureRequest, sandbox: LiveSandbox, tmp_path: Path, prefect_server: str
) -> OffboardStack:
    return make_stack(sandbox, tmp_path, idp_kind=request.param)


def kind(st: OffboardStack) -> str:
    return st.rt.settings.idp_kind


def idp_writes(st: OffboardStack, since: int) -> list[tuple[str, str]]:
    """Every write to any of the IdP's APIs since ``since``: (method, path)."""
    return [
        (w["method"], w["path"])
        for w in st.writes(since)
        if w["path"].startswith(tuple(API_PATHS.values()))
    ]


def only_through_its_api(st: OffboardStack, writes: list[tuple[str, str]]) -> None:
    assert writes, "the run wrote nothing to the IdP"
    mine = API_PATHS[kind(st)]
    assert all(p.startswith(mine) for _m, p in writes), writes


def start_session(st: OffboardStack, email: str) -> None:
    r = httpx.post(f"{st.url}/_sandbox/idp/sessions", params={"user": email}, timeout=10)
    assert r.status_code == 200, r.text


def live_sessions(st: OffboardStack, email: str) -> int:
    r = httpx.get(f"{st.url}/_sandbox/idp/sessions", params={"user": email}, timeout=10)
    r.raise_for_status()
    return int(r.json()["live"])


def kinds_of(res: dict[str, Any]) -> list[str]:
    return [s["kind"] for s in res["plan"]["steps"]]


def sessions_said(st: OffboardStack, res: dict[str, Any], email: str) -> None:
    """What each kind does and says about the leaver's sessions."""
    check = res["verification"].get("idp_sessions_ended")
    if kind(st) == "scim":
        assert "end_idp_sessions" not in kinds_of(res)
        assert check is None
        assert any("no API to end sessions" in w for w in res["warnings"]), res
        assert live_sessions(st, email) == 1  # said, not done: nobody pretends otherwise
        return
    assert "end_idp_sessions" in kinds_of(res)
    assert live_sessions(st, email) == 0
    if kind(st) == "entra":
        assert check == "pass", check  # Graph's signInSessionsValidFromDateTime, re-read
    else:
        assert check.startswith(REPORTED) and is_ok(check), check


def test_offboarding(stack: OffboardStack) -> None:
    st = stack
    start_session(st, DANA)
    seq0 = st.seq()
    run = st.start(email=DANA, reason="termination", requester=HR)
    appr = st.paused(DANA)
    r = st.click(appr, SOFIA)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    res = run.wait()
    assert res["status"] == "done", res
    assert all(is_ok(v) for v in res["verification"].values()), res["verification"]
    assert st.member(DANA) is None
    user = st.rt.idp.find_user(DANA)
    assert user is not None and not user.active
    if kind(st) == "okta":
        assert user.status == "DEPROVISIONED"
    only_through_its_api(st, idp_writes(st, seq0))
    sessions_said(st, res, DANA)
    # Again: nothing left to do, nothing written twice.
    again = st.run(email=DANA, reason="termination", requester=HR, dry_run=True)
    assert again["plan"]["steps"] == []


def test_the_emergency_path_ends_sessions_before_the_org_removal(stack: OffboardStack) -> None:
    st = stack
    start_session(st, DANA)
    seq0 = st.seq()
    res = st.start(**st.emergency(DANA)).wait(timeout=120)
    assert "Paused" not in state_names(res["run_id"])
    assert res["status"] == "done", res
    assert all(is_ok(v) for v in res["verification"].values()), res["verification"]
    sessions_said(st, res, DANA)
    steps = kinds_of(res)
    assert steps[0] == "deactivate_idp_user", steps
    writes = [(w["method"], w["path"]) for w in st.writes(seq0)]
    org_removal = next(
        i for i, (m, p) in enumerate(writes) if p == f"/scim/1/Users/{DANA}" and m != "GET"
    )
    idp = [i for i, (_m, p) in enumerate(writes) if p.startswith(API_PATHS[kind(st)])]
    assert idp and max(idp[:2]) < org_removal  # locked out at the IdP first
    if kind(st) != "scim":
        assert steps[1] == "end_idp_sessions", steps
        sessions = {
            "okta": ("DELETE", "/sessions"),
            "entra": ("POST", "/revokeSignInSessions"),
        }[kind(st)]
        ended = [
            i for i, (m, p) in enumerate(writes) if m == sessions[0] and p.endswith(sessions[1])
        ]
        assert ended and ended[0] < org_removal, writes


def test_idp_managed_onboarding_then_expiry(stack: OffboardStack) -> None:
    st = stack
    until = date.today() + timedelta(days=3)
    seq0 = st.seq()
    from tests.flows.test_onboard_e2e import start as start_onboarding

    run = start_onboarding(
        st,
        email=VENDOR,
        projects={"Staging": "member"},
        org_role="member",
        idp_managed=True,
        until=until.isoformat(),
    )
    st.approve_every_seat(st.paused(VENDOR))
    res = run.wait()
    assert res["status"] == "done", res
    assert kinds_of(res)[:2] == ["idp_create_user", "idp_add_group"], res
    assert all(is_ok(v) for v in res["verification"].values()), res["verification"]
    only_through_its_api(st, idp_writes(st, seq0))
    user = st.rt.idp.find_user(VENDOR)
    assert user is not None and user.active
    m = st.rt.org.get_member(VENDOR)
    assert m is not None and m.idp_managed
    assert {g.project: g.role.value for g in m.projects}.get("Staging") == "member"
    (grant,) = [g for g in grants(st.rt.ledger) if g.subject == VENDOR]

    # The grant ends: the expiry sweep takes them out of the IdP group that gave it.
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.expire import expire_access
    from tasks.runtime import use_runtime

    seq1 = st.seq()
    later = max(grant.end, datetime.now(UTC)) + timedelta(days=1)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), use_runtime(st.rt):
        out = expire_access(now=later.isoformat())
    assert out["status"] == "done", out
    assert all(is_ok(v) for v in out["verification"].values()), out["verification"]
    only_through_its_api(st, idp_writes(st, seq1))
    names = {g.name for g in st.rt.idp.groups_of(user.id)}
    assert "amplitude-project-members-staging" not in names
    m = st.rt.org.get_member(VENDOR)
    assert m is None or "Staging" not in {g.project for g in m.projects}
