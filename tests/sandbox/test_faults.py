"""Fault injection (5xx before or after the write, rate limits, latency), the request log, and a
world that survives a restart on the same database file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from sandbox.app import create_app
from tests.conftest import IDP
from tests.sandbox.orgkit import ORG_ADMIN, ORG_SCIM, join, member

SLACK = {"Authorization": "Bearer xoxb-sandbox"}
JIRA = {
    "Authorization": "Basic aGFuZG92ZXI6c2FuZGJveC1qaXJhLXRva2Vu"
}  # handover:sandbox-jira-token

# One call per API of the world: (method, path, headers, json body).
API_CALLS = [
    ("GET", "/scim/1/Users", ORG_SCIM, None),
    ("GET", "/admin/v1/members", ORG_ADMIN, None),
    ("POST", "/ingest/2/httpapi", {}, {"api_key": "nope"}),
    ("GET", "/idp/scim/v2/Users", IDP, None),
    ("POST", "/slack/api/auth.test", SLACK, None),
    ("GET", "/jira/rest/api/2/serverInfo", JIRA, None),
]


def faults(client: TestClient, **settings: object) -> None:
    r = client.put("/_sandbox/faults", json=settings)
    assert r.status_code == 200, r.text


def invite_over_scim(client: TestClient, email: str) -> int:
    r = client.post("/scim/1/Users", json={"userName": email}, headers=ORG_SCIM)
    return r.status_code


def log(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/_sandbox/requests", params=params)
    assert r.status_code == 200
    return r.json()["requests"]


def test_fault_rate_1_makes_every_api_answer_5xx_but_not_controls(client: TestClient) -> None:
    faults(client, fault_rate=1.0)
    for method, path, headers, body in API_CALLS:
        r = client.request(method, path, headers=headers, json=body)
        assert 500 <= r.status_code < 600, (path, r.status_code)
    scim = client.get("/scim/1/Users", headers=ORG_SCIM)
    assert scim.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "error" in client.get("/admin/v1/members", headers=ORG_ADMIN).json()
    assert client.get("/healthz").status_code == 200
    assert client.get("/_sandbox/clock").status_code == 200
    assert client.get("/_sandbox/faults").json()["fault_rate"] == 1.0
    assert client.post("/_sandbox/clock", json={"advance_seconds": 1}).status_code == 200

    faults(client)  # back to normal: every API answers again
    for method, path, headers, body in API_CALLS:
        r = client.request(method, path, headers=headers, json=body)
        assert r.status_code < 500, (path, r.status_code, r.text)


def test_faults_can_be_limited_to_some_apis(client: TestClient) -> None:
    faults(client, fault_rate=1.0, apis=["org_scim", "org_admin"])
    assert client.get("/scim/1/Users", headers=ORG_SCIM).status_code >= 500
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code >= 500
    assert client.get("/idp/scim/v2/Users", headers=IDP).status_code == 200
    r = client.put("/_sandbox/faults", json={"fault_rate": 1.0, "apis": ["nope"]})
    assert r.status_code == 422
    faults(client)


def test_a_fault_before_the_write_changes_nothing(client: TestClient) -> None:
    faults(client, fault_rate=1.0, fault_after=0.0)
    assert invite_over_scim(client, "a@x.com") >= 500
    faults(client)
    assert client.get("/admin/v1/members/a@x.com", headers=ORG_ADMIN).status_code == 404
    assert invite_over_scim(client, "a@x.com") == 201


def test_a_fault_after_the_write_hides_a_write_that_happened(client: TestClient) -> None:
    faults(client, fault_rate=1.0, fault_after=1.0)
    r = client.post("/scim/1/Users", json={"userName": "a@x.com"}, headers=ORG_SCIM)
    assert r.status_code == 503
    assert r.json()["detail"] == "injected fault"
    r = client.post("/admin/v1/members", json={"email": "b@x.com"}, headers=ORG_ADMIN)
    assert r.status_code == 503
    faults(client)
    assert member(client, "a@x.com")["status"] == "pending"
    assert member(client, "b@x.com")["status"] == "pending"
    # a blind retry then meets the write it did not see
    assert invite_over_scim(client, "a@x.com") == 409


def test_fault_rate_is_repeatable_with_the_same_rng_seed(tmp_path: Path) -> None:
    def statuses() -> list[int]:
        with TestClient(create_app(None, seed="empty", rng_seed=7)) as c:
            faults(c, fault_rate=0.5)
            return [c.get("/admin/v1/members", headers=ORG_ADMIN).status_code for _ in range(16)]

    first = statuses()
    assert first == statuses()
    assert 200 in first and any(s >= 500 for s in first)


def test_rate_limit_answers_429_with_retry_after_per_api(client: TestClient) -> None:
    faults(client, rate_limit=30, burst=3)  # 3 at once, then one every 2 s
    codes = [client.get("/scim/1/Users", headers=ORG_SCIM).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = client.post("/scim/1/Users", json={"userName": "late@x.com"}, headers=ORG_SCIM)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    # each API has its own bucket, and the controls are never limited
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code == 200
    for _ in range(5):
        assert client.get("/_sandbox/clock").status_code == 200
    assert client.get("/healthz").status_code == 200
    # the limited write did not happen
    assert client.get("/admin/v1/members/late@x.com", headers=ORG_ADMIN).status_code == 404


def test_rate_limit_refills_over_time(client: TestClient) -> None:
    # One token every 5 s: far longer than two calls take even on a loaded machine.
    faults(client, rate_limit=12, burst=1)
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code == 200
    r = client.get("/admin/v1/members", headers=ORG_ADMIN)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "5"  # whole seconds, rounded up
    time.sleep(5.05)
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code == 200


def test_latency_is_added_to_api_calls_only(client: TestClient) -> None:
    faults(client, latency_ms=200)
    t = time.perf_counter()
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code == 200
    assert time.perf_counter() - t >= 0.2

    def quickest(path: str) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            client.get(path)
            times.append(time.perf_counter() - t)
        return min(times)

    assert quickest("/healthz") < 0.2
    assert quickest("/_sandbox/clock") < 0.2


def test_latency_only_slows_the_apis_named(client: TestClient) -> None:
    """A slow Slack next to a fast org (the front door's latency test makes only Slack slow)."""
    faults(client, latency_ms=300, apis=["org_admin"])
    t = time.perf_counter()
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).status_code == 200
    assert time.perf_counter() - t >= 0.3
    t = time.perf_counter()
    assert client.get("/scim/1/Users", headers=ORG_SCIM).status_code == 200
    assert time.perf_counter() - t < 0.3


def test_fault_settings_are_validated(client: TestClient) -> None:
    for bad in ({"fault_rate": 1.5}, {"fault_after": -0.1}, {"rate_limit": 0}, {"latency_ms": -1}):
        assert client.put("/_sandbox/faults", json=bad).status_code == 422, bad
    assert client.get("/_sandbox/faults").json()["fault_rate"] == 0.0


def test_request_log_marks_injected_faults_and_filters_writes(client: TestClient) -> None:
    client.get("/admin/v1/members", headers=ORG_ADMIN)
    invite_over_scim(client, "a@x.com")
    faults(client, fault_rate=1.0)
    client.get("/scim/1/Users", headers=ORG_SCIM)
    faults(client, fault_rate=1.0, fault_after=1.0)
    invite_over_scim(client, "b@x.com")
    faults(client, rate_limit=1, burst=1)
    client.delete("/scim/1/Users/a@x.com", headers=ORG_SCIM)
    client.delete("/scim/1/Users/a@x.com", headers=ORG_SCIM)
    faults(client)
    client.get("/healthz")
    client.get("/_sandbox/clock")

    calls = log(client)
    assert [(c["method"], c["path"], c["status"], c["injected"]) for c in calls] == [
        ("GET", "/admin/v1/members", 200, None),
        ("POST", "/scim/1/Users", 201, None),
        ("GET", "/scim/1/Users", calls[2]["status"], "fault-before"),
        ("POST", "/scim/1/Users", 503, "fault-after"),
        ("DELETE", "/scim/1/Users/a@x.com", 204, None),
        ("DELETE", "/scim/1/Users/a@x.com", 429, "rate-limited"),
    ]  # control and health calls are not logged
    assert calls[2]["status"] in (500, 502, 503)
    assert [c["api"] for c in calls[:2]] == ["org_admin", "org_scim"]

    writes = log(client, writes="true")
    assert [c["method"] for c in writes] == ["POST", "POST", "DELETE", "DELETE"]
    assert [c["path"] for c in log(client, api="org_admin")] == ["/admin/v1/members"]
    assert len(log(client, method="delete")) == 2
    last = calls[-1]["seq"]
    assert log(client, since=last) == []
    assert log(client, since=calls[3]["seq"]) == calls[4:]
    body = client.get("/_sandbox/requests", params={"limit": 2}).json()
    assert (body["count"], [c["seq"] for c in body["requests"]]) == (
        6,
        [c["seq"] for c in calls[4:]],
    )


def test_request_log_keeps_the_query_string(client: TestClient) -> None:
    client.get("/scim/1/Users", params={"filter": 'userName eq "a@x.com"'}, headers=ORG_SCIM)
    (call,) = log(client)
    assert "userName" in str(call["query"])


def test_reset_wipes_the_world(client: TestClient) -> None:
    join(client, "a@x.com")
    client.post("/_sandbox/clock", json={"advance_days": 3})
    faults(client, fault_rate=1.0)
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/faults").json()["fault_rate"] == 0.0
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).json()["total"] == 0
    now = datetime.fromisoformat(client.get("/_sandbox/clock").json()["now"])
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)
    assert [c["path"] for c in log(client)] == ["/admin/v1/members"]


def test_clock_and_members_survive_a_restart_on_the_same_db(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with TestClient(create_app(db, seed="empty")) as first:
        join(first, "a@x.com", org_role="admin")
        join(first, "b@x.com")
        first.post("/_sandbox/clock", json={"advance_days": 10})
        first.post("/_sandbox/members/b@x.com/activity", json={"action": "export"})
        moved = datetime.fromisoformat(first.get("/_sandbox/clock").json()["now"])
    assert moved - datetime.now(UTC) > timedelta(days=9, hours=23)

    with TestClient(create_app(db, seed="empty")) as second:
        now = datetime.fromisoformat(second.get("/_sandbox/clock").json()["now"])
        assert abs(now - moved) < timedelta(minutes=1)
        healthz = datetime.fromisoformat(second.get("/healthz").json()["now"])
        assert abs(healthz - moved) < timedelta(minutes=1)
        members = second.get("/admin/v1/members", headers=ORG_ADMIN).json()["members"]
        assert {(m["email"], m["org_role"], m["status"]) for m in members} == {
            ("a@x.com", "admin", "joined"),
            ("b@x.com", "viewer", "joined"),
        }
        actions = [
            e["action"]
            for e in second.get(
                "/admin/v1/audit-log", params={"actor": "b@x.com"}, headers=ORG_ADMIN
            ).json()["events"]
        ]
        assert "export" in actions
        # the rules still hold after the restart
        assert second.delete("/admin/v1/members/a@x.com", headers=ORG_ADMIN).status_code == 409


def test_clock_and_people_controls_validate_their_input(client: TestClient) -> None:
    before = client.get("/_sandbox/clock").json()["now"]
    for bad in ({"set": "2030-01-01T00:00:00"}, {"advance_days": "soon"}, {"set": "tomorrow"}):
        assert client.post("/_sandbox/clock", json=bad).status_code == 422, bad
    after = datetime.fromisoformat(client.get("/_sandbox/clock").json()["now"])
    assert after - datetime.fromisoformat(before) < timedelta(minutes=1)
    r = client.post("/_sandbox/clock", json={"set": "2030-01-01T00:00:00Z"})
    assert r.json()["now"].startswith("2030-01-01T00:00")
    assert client.post("/_sandbox/members/ghost@x.com/login").status_code == 404
    assert client.post("/_sandbox/members/ghost@x.com/accept").status_code == 404
    client.post("/admin/v1/members", json={"email": "p@x.com"}, headers=ORG_ADMIN)
    r = client.post("/_sandbox/members/p@x.com/login")
    assert r.status_code == 409  # a pending invitee cannot sign in before accepting
    r = client.post("/_sandbox/members/p@x.com/activity", json={"action": "delete-everything"})
    assert r.status_code == 422


def test_a_world_an_older_handover_seeded_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import pytest
    from sqlalchemy import update

    from sandbox.control import OutdatedWorld
    from sandbox.db import Setting
    from sandbox.world import World

    db = tmp_path / "old.db"
    with TestClient(create_app(db, seed="empty")):
        pass
    world = World.open(db)  # as an older Handover left it: no world version
    with world.db.session() as s:
        s.execute(update(Setting).where(Setting.key == "seeded").values(value={"spec": "empty"}))
    world.db.engine.dispose()
    with pytest.raises(OutdatedWorld, match="make clean"):
        create_app(db, seed="empty")
    from typer.testing import CliRunner

    from cli.main import app as cli

    out = CliRunner().invoke(cli, ["sandbox", "up", "--db", str(db), "--seed", "empty"])
    assert out.exit_code == 2 and "older Handover" in out.output, out.output
