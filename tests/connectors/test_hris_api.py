"""The roster and the employee read from each HR system's API (connectors/hris/api.py), one
contract for every vendor, against the sandbox's imitations (sandbox/hris.py) over loopback:
every roster person, leavers included with their termination date, managers read, a refused
credential is an ``AuthError``; Merge's cursor paging followed across pages; Personio's person
read through its client-credentials token.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from connectors.capabilities import HrDirectory, Roster
from connectors.errors import AuthError
from connectors.hris import MergeApi, make_hr_api, make_roster
from connectors.settings import Settings
from domain.models import RosterStatus
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve

ROSTER_VENDORS = ("hibob", "bamboohr", "merge")
BASE = {
    "hibob": "/hibob/v1",
    "bamboohr": "/bamboohr/api/gateway.php/acme",
    "merge": "/merge/api/hris/v1",
    "personio": "/personio/v2",
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo"))
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def seeded(sandbox: LiveSandbox) -> list[dict[str, Any]]:
    """The sandbox's HR people (the demo roster) with each vendor's id for them."""
    rows: list[dict[str, Any]] = httpx.get(f"{sandbox.url}/_sandbox/hr/employees").json()[
        "employees"
    ]
    return rows


def settings(sandbox: LiveSandbox, vendor: str, **over: Any) -> Settings:
    return Settings(sandbox=True, hr_api=vendor, hr_api_url=f"{sandbox.url}{BASE[vendor]}", **over)


@pytest.mark.parametrize("vendor", ROSTER_VENDORS)
def test_the_roster_is_every_hr_person_with_status_and_manager(
    sandbox: LiveSandbox, seeded: list[dict[str, Any]], vendor: str
) -> None:
    roster = make_roster(settings(sandbox, vendor))
    assert isinstance(roster, Roster) and isinstance(roster, HrDirectory)
    entries = {e.email: e for e in roster.entries()}
    assert set(entries) == {p["email"] for p in seeded}
    dana = entries["dana.sole@acme.com"]  # the demo's leaver
    assert dana.status is RosterStatus.TERMINATED
    assert dana.end_date == date.fromisoformat(
        next(p for p in seeded if p["email"] == dana.email)["end_date"]
    )
    assert dana.manager == "sofia.lead@acme.com"
    assert entries["alice.admin@acme.com"].manager is None
    got = roster.get("RAJ.ADMIN@acme.com")
    assert got is not None and got.manager == "alice.admin@acme.com"
    assert roster.get("nobody@acme.com") is None


@pytest.mark.parametrize("vendor", [*ROSTER_VENDORS, "personio"])
def test_an_employee_is_read_by_the_vendors_id(
    sandbox: LiveSandbox, seeded: list[dict[str, Any]], vendor: str
) -> None:
    api = make_hr_api(settings(sandbox, vendor))
    assert api is not None
    jon = next(p for p in seeded if p["email"] == "jon.smith@acme.com")
    found = api.employee(jon[f"{vendor}_id"])
    assert found is not None and found.email == "jon.smith@acme.com"
    assert found.id == jon[f"{vendor}_id"]
    unknown = "999999" if vendor != "merge" else "00000000-0000-0000-0000-000000000000"
    assert api.employee(unknown) is None


@pytest.mark.parametrize("vendor", [*ROSTER_VENDORS, "personio"])
def test_a_refused_credential_is_an_auth_error(sandbox: LiveSandbox, vendor: str) -> None:
    api = make_hr_api(settings(sandbox, vendor, hr_api_token="not-the-token"))
    assert api is not None
    with pytest.raises(AuthError) as err:
        api.employee("101")
    assert "not-the-token" not in str(err.value)


def test_merge_refuses_a_wrong_account_token(sandbox: LiveSandbox) -> None:
    api = make_hr_api(settings(sandbox, "merge", hr_api_account_token="other-account"))
    assert isinstance(api, MergeApi)
    with pytest.raises(AuthError, match="account token"):
        api.entries()


def test_merge_follows_the_cursor_across_pages(
    sandbox: LiveSandbox, seeded: list[dict[str, Any]]
) -> None:
    api = MergeApi(settings(sandbox, "merge"), page_size=7)
    before = api.api.stats.requests
    entries = api.entries()
    assert len(entries) == len(seeded)
    assert len({e.email for e in entries}) == len(seeded)  # no page read twice
    assert api.api.stats.requests - before == -(-len(seeded) // 7)


def test_a_status_changed_in_hr_is_read_at_once(sandbox: LiveSandbox) -> None:
    r = httpx.post(
        f"{sandbox.url}/_sandbox/hr/employees",
        json={"email": "leo.leave@acme.com", "status": "terminated", "end_date": "2026-11-30"},
    )
    assert r.status_code == 200
    for vendor in ROSTER_VENDORS:
        roster = make_roster(settings(sandbox, vendor))
        assert roster is not None
        leo = roster.get("leo.leave@acme.com")
        assert leo is not None and leo.status is RosterStatus.TERMINATED, vendor
        assert leo.end_date == date(2026, 11, 30), vendor


def test_a_roster_file_wins_over_the_hr_api(sandbox: LiveSandbox, tmp_path: Any) -> None:
    f = tmp_path / "roster.csv"
    f.write_text("email,name,status\nx@acme.com,X,active\n")
    roster = make_roster(settings(sandbox, "merge", roster=f))
    assert roster is not None and [e.email for e in roster.entries()] == ["x@acme.com"]


def test_personio_is_no_roster_source(sandbox: LiveSandbox) -> None:
    assert make_roster(settings(sandbox, "personio")) is None
