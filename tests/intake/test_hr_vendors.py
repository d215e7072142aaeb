"""The HR vendors' webhooks over HTTP: each vendor's documented payload (tests/intake/fixtures/hr/),
signed in the vendor's own scheme, starts exactly one offboarding; a redelivery starts nothing;
a wrong signature, a stale timestamp or a replay is a 401 that writes nothing (no event, no
replay mark, no audit row, no run); HiBob's "revoke access immediately" starts the emergency path;
a vendor without a secret refuses.

One world for the module: the demo sandbox on loopback (its HR APIs answer the reads the
adapters make) and one intake per vendor on loopback, all over one ledger; the launcher records
what it was asked to start (test_hr_emergency_e2e.py runs the real emergency flow for the
generic route; these parameters are the ones it takes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from approvals.policy import load_policy
from approvals.services import Services, open_settings_ledger
from connectors.hris import make_hr_api
from connectors.settings import Settings
from flows.offboard import OffboardRequest
from intake.app import create_intake
from intake.hr_vendors import personio_headers, sign_bamboohr, sign_hibob, sign_merge
from ledger.audit import last_seq
from ledger.db import LedgerDB
from ledger.events import list_events
from ledger.replay import SeenRequest
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve

FIXTURES = Path(__file__).parent / "fixtures" / "hr"
SECRETS = {
    "hibob": "hibob-webhook-secret",
    "bamboohr": "bamboohr-private-key",
    "personio": "personio-webhook-token",
    "merge": "merge-webhook-key",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Recorder:
    launched: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any]) -> str:
        self.launched.append(params)
        return f"run-{len(self.launched)}"


@dataclass
class World:
    sandbox: LiveSandbox
    ledger: LedgerDB
    launcher: Recorder
    doors: dict[str, LiveSandbox]
    unconfigured: LiveSandbox

    def post(self, vendor: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.doors[vendor].url}/hooks/hr/{vendor}", content=body, headers=headers
        )

    def written(self) -> tuple[int, int, int, int]:
        """Events, replay marks, audit rows, runs: what a refused delivery must not change."""
        with self.ledger.sessions() as s:
            seen = s.scalar(select(func.count()).select_from(SeenRequest)) or 0
        return (
            len(list_events(self.ledger)),
            seen,
            last_seq(self.ledger),
            len(self.launcher.launched),
        )

    def hr(self, email: str, status: str, end: date | None) -> None:
        r = httpx.post(
            f"{self.sandbox.url}/_sandbox/hr/employees",
            json={"email": email, "status": status, "end_date": end.isoformat() if end else None},
        )
        assert r.status_code == 200, r.text


def _settings(tmp: Path, sandbox_url: str, vendor: str | None, **over: Any) -> Settings:
    hr_api = {"hibob": "hibob", "bamboohr": "bamboohr", "personio": "personio", "merge": "merge"}
    base = {
        "hibob": "/hibob/v1",
        "bamboohr": "/bamboohr/api/gateway.php/acme",
        "personio": "/personio/v2",
        "merge": "/merge/api/hris/v1",
    }
    secrets = (
        {}
        if vendor is None
        else {
            "hr_hibob_secret": SECRETS["hibob"],
            "hr_bamboohr_secret": SECRETS["bamboohr"],
            "hr_personio_token": SECRETS["personio"],
            "hr_merge_key": SECRETS["merge"],
        }
    )
    return Settings(
        ledger_url=f"sqlite:///{tmp / 'ledger.db'}",
        home=tmp,
        hr_api=hr_api.get(vendor or "", ""),
        hr_api_url=f"{sandbox_url}{base[vendor]}" if vendor else "",
        **({"sandbox": True} | secrets | over),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hr-vendors")
    sb = serve(create_app(None, seed="demo", rng_seed=3))
    # Outside sandbox mode: no published vendor secret fills the empty ones.
    first = _settings(tmp, sb.url, None, sandbox=False)
    ledger = open_settings_ledger(first)
    rec = Recorder()
    doors: dict[str, LiveSandbox] = {}
    for vendor in SECRETS:
        settings = _settings(tmp, sb.url, vendor)
        svc = Services(
            settings=settings, ledger=ledger, policy=load_policy(), hr=make_hr_api(settings)
        )
        doors[vendor] = serve(create_intake(svc, launcher=rec))
    bare = Services(settings=first, ledger=ledger, policy=load_policy())
    unconfigured = serve(create_intake(bare, launcher=rec))
    yield World(sb, ledger, rec, doors, unconfigured)
    for door in [*doors.values(), unconfigured]:
        door.stop()
    sb.stop()
    ledger.dispose()


def _only_new_run(world: World, before: int) -> dict[str, Any]:
    runs = world.launcher.launched[before:]
    assert len(runs) == 1, runs
    OffboardRequest.model_validate(runs[0])  # what the offboarding flow accepts
    return runs[0]


# --- a documented payload with a valid signature starts one offboarding, once --------------


def test_hibob_employee_left_starts_one_offboarding(world: World) -> None:
    body = fixture("hibob_employee_left.json")
    n = len(world.launcher.launched)
    r = world.post("hibob", body, sign_hibob(SECRETS["hibob"], body))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    run = _only_new_run(world, n)
    assert (run["email"], run["reason"], run["emergency"]) == (
        "jon.smith@acme.com",
        "termination",
        False,
    )
    assert run["receiver"] == "sofia.lead@acme.com"  # the manager HiBob's API names
    again = world.post("hibob", body, sign_hibob(SECRETS["hibob"], body))
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert len(world.launcher.launched) == n + 1


def test_hibob_revoke_immediately_starts_the_emergency_path(world: World) -> None:
    body = fixture("hibob_access_revoked_immediately.json")
    n = len(world.launcher.launched)
    r = world.post("hibob", body, sign_hibob(SECRETS["hibob"], body))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    run = _only_new_run(world, n)
    assert (run["email"], run["reason"], run["emergency"]) == (
        "mike.stale@acme.com",
        "security_incident",
        True,
    )


def test_bamboohr_termination_is_read_from_the_api_and_started_once(world: World) -> None:
    world.hr("gina.groups@acme.com", "terminated", date.today() - timedelta(days=1))
    body = fixture("bamboohr_employee_updated.json")
    n = len(world.launcher.launched)
    r = world.post("bamboohr", body, sign_bamboohr(SECRETS["bamboohr"], body, int(time.time())))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    run = _only_new_run(world, n)
    assert (run["email"], run["reason"], run["receiver"]) == (
        "gina.groups@acme.com",
        "termination",
        "sofia.lead@acme.com",
    )
    # BambooHR's retry: a new timestamp and signature for the same change.
    retry = world.post(
        "bamboohr", body, sign_bamboohr(SECRETS["bamboohr"], body, int(time.time()) + 1)
    )
    assert retry.status_code == 200 and retry.json()["duplicate"] is True, retry.text
    assert len(world.launcher.launched) == n + 1


def test_bamboohr_future_termination_is_scheduled_like_the_generic_route(world: World) -> None:
    end = date.today() + timedelta(days=20)
    world.hr("chloe.okafor@acme.com", "terminated", end)
    body = fixture("bamboohr_employee_updated.json").replace(b'"106"', b'"114"')
    n = len(world.launcher.launched)
    r = world.post("bamboohr", body, sign_bamboohr(SECRETS["bamboohr"], body, int(time.time())))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "scheduled"
    assert r.json()["at"] == datetime(end.year, end.month, end.day, tzinfo=UTC).isoformat()
    assert len(world.launcher.launched) == n


def test_bamboohr_update_of_someone_still_employed_is_ignored(world: World) -> None:
    body = fixture("bamboohr_employee_updated.json").replace(b'"106"', b'"113"')
    before = world.written()
    r = world.post("bamboohr", body, sign_bamboohr(SECRETS["bamboohr"], body, int(time.time())))
    assert r.status_code == 200 and "not terminated" in r.json()["ignored"], r.text
    assert world.written()[0::2] == before[0::2]  # no event, no run (the replay mark is kept)


def test_personio_employment_terminated_starts_one_offboarding(world: World) -> None:
    body = fixture("personio_employment_terminated.json")
    n = len(world.launcher.launched)
    r = world.post("personio", body, personio_headers(SECRETS["personio"]))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    assert _only_new_run(world, n)["email"] == "ava.adams@acme.com"
    again = world.post("personio", body, personio_headers(SECRETS["personio"]))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(world.launcher.launched) == n + 1


def test_merge_employee_changed_starts_one_offboarding(world: World) -> None:
    body = fixture("merge_employee_changed.json")
    n = len(world.launcher.launched)
    r = world.post("merge", body, sign_merge(SECRETS["merge"], body))
    assert r.status_code == 202 and r.json()["status"] == "started", r.text
    run = _only_new_run(world, n)
    assert (run["email"], run["reason"]) == ("ben.haddad@acme.com", "termination")
    again = world.post("merge", body, sign_merge(SECRETS["merge"], body))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(world.launcher.launched) == n + 1


# --- refused: 401 and nothing written ------------------------------------------------------


Headers = Callable[[bytes, int], dict[str, str]]
# Each refused delivery: the vendor, what is wrong, and its headers given the body and now
# (made when the test runs: a timestamp made at collection would age meanwhile).
_BAD: list[tuple[str, str, Headers]] = [
    ("hibob", "wrong secret", lambda b, t: sign_hibob("not-the-secret", b)),
    ("hibob", "unsigned", lambda b, t: {"Content-Type": "application/json"}),
    ("bamboohr", "wrong secret", lambda b, t: sign_bamboohr("not-the-key", b, t)),
    ("bamboohr", "stale", lambda b, t: sign_bamboohr(SECRETS["bamboohr"], b, t - 301)),
    ("bamboohr", "future", lambda b, t: sign_bamboohr(SECRETS["bamboohr"], b, t + 301)),
    ("bamboohr", "no timestamp", lambda b, t: {"X-BambooHR-Signature": "ab" * 32}),
    ("personio", "wrong token", lambda b, t: personio_headers("Bearer " + SECRETS["personio"])),
    ("personio", "no token", lambda b, t: {"Content-Type": "application/json"}),
    ("merge", "wrong key", lambda b, t: sign_merge("not-the-key", b)),
    ("merge", "hex instead", lambda b, t: {"X-Merge-Webhook-Signature": "ab" * 32}),
]


_BODIES = {
    "hibob": lambda: fixture("hibob_employee_left.json").replace(b"373006", b"373012"),
    "bamboohr": lambda: fixture("bamboohr_employee_updated.json").replace(b'"106"', b'"107"'),
    "personio": lambda: fixture("personio_employment_terminated.json").replace(
        b"1000012", b"1000007"
    ),
    "merge": lambda: fixture("merge_employee_changed.json").replace(b"2026-12-01", b"2026-11-30"),
}


@pytest.mark.parametrize(("vendor", "case", "headers"), _BAD, ids=[f"{v}-{c}" for v, c, _ in _BAD])
def test_bad_signatures_are_refused_and_write_nothing(
    world: World, vendor: str, case: str, headers: Headers
) -> None:
    world.hr("jon.smith@acme.com", "terminated", None)
    before = world.written()
    body = _BODIES[vendor]()
    r = world.post(vendor, body, headers(body, int(time.time())))
    assert r.status_code == 401, (case, r.text)
    assert r.json()["ok"] is False
    assert world.written() == before


def test_a_replayed_bamboohr_delivery_is_refused_and_writes_nothing(world: World) -> None:
    world.hr("ben.haddad@acme.com", "terminated", date.today())
    body = fixture("bamboohr_employee_updated.json").replace(b'"106"', b'"113"')
    headers = sign_bamboohr(SECRETS["bamboohr"], body, int(time.time()))
    first = world.post("bamboohr", body, headers)
    assert first.status_code in (200, 202), first.text
    before = world.written()
    replay = world.post("bamboohr", body, headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"], replay.text
    assert world.written() == before


@pytest.mark.parametrize("vendor", sorted(SECRETS))
def test_an_unconfigured_vendor_refuses_everything(world: World, vendor: str) -> None:
    before = world.written()
    body = _BODIES[vendor]()
    r = httpx.post(
        f"{world.unconfigured.url}/hooks/hr/{vendor}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 503 and "not configured" in r.json()["error"], r.text
    assert world.written() == before


def test_hibob_connection_ping_is_answered_and_writes_nothing(world: World) -> None:
    before = world.written()
    r = world.post("hibob", b"Ping test", {"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json() == {"ok": True, "ignored": "ping"}
    assert world.written() == before


def test_other_vendor_events_are_ignored(world: World) -> None:
    body = json.dumps(
        {
            "companyId": 636192,
            "type": "employee.created",
            "triggeredBy": "system",
            "triggeredAt": "2026-12-03T10:00:00",
            "version": "v2",
            "data": {"employeeId": "3332883804594373012"},
        }
    ).encode()
    before = world.written()
    r = world.post("hibob", body, sign_hibob(SECRETS["hibob"], body))
    assert r.status_code == 200 and "not a termination" in r.json()["ignored"]
    assert world.written() == before
