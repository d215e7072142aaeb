"""The Roster capability of :class:`connectors.hris.RosterFile`: CSV and JSON files, valid and
invalid (every problem named by row and field), and the sandbox's own demo roster."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI

from connectors.capabilities import Roster, has
from connectors.hris import RosterError, RosterFile, RowError
from domain.models import RosterStatus
from sandbox.db import Setting

CSV = """\ufeffEmail,Name,Status,Manager,Department,End_Date,Cost Center
Alice.Admin@Acme.com,Alice Admin,Active,,IT,,CC-1
bob@acme.com,Bob Leaver,terminated,alice.admin@acme.com,Sales,2026-02-28,CC-2
carol@acme.com,"Carol, on leave",leave,alice.admin@acme.com,,,CC-3

"""

ROWS = [
    {"email": "alice.admin@acme.com", "name": "Alice Admin", "status": "active"},
    {
        "email": "bob@acme.com",
        "name": "Bob Leaver",
        "status": "terminated",
        "manager": "alice.admin@acme.com",
        "department": "Sales",
        "end_date": "2026-02-28",
    },
    {"email": "carol@acme.com", "name": "Carol", "status": "leave", "manager": "", "end_date": ""},
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_roster(tmp_path: Path) -> None:
    roster = RosterFile(write(tmp_path, "roster.csv", CSV))
    assert has(roster, Roster)
    assert [e.email for e in roster.entries()] == [
        "alice.admin@acme.com",
        "bob@acme.com",
        "carol@acme.com",
    ]
    bob = roster.get("BOB@acme.com ")
    assert bob is not None
    assert (bob.status, bob.manager, bob.end_date) == (
        RosterStatus.TERMINATED,
        "alice.admin@acme.com",
        date(2026, 2, 28),
    )
    alice = roster.get("alice.admin@acme.com")
    assert alice is not None and alice.status is RosterStatus.ACTIVE and alice.manager is None
    carol = roster.get("carol@acme.com")
    assert carol is not None and carol.name == "Carol, on leave" and carol.department == ""
    assert roster.get("nobody@acme.com") is None
    roster.entries().clear()  # a copy: the roster keeps its entries
    assert len(roster.entries()) == 3


@pytest.mark.parametrize("shape", ["list", "rows"])
def test_json_roster(tmp_path: Path, shape: str) -> None:
    data = ROWS if shape == "list" else {"rows": ROWS}
    roster = RosterFile(write(tmp_path, "roster.json", json.dumps(data)))
    assert [e.status for e in roster.entries()] == ["active", "terminated", "leave"]
    carol = roster.get("carol@acme.com")
    assert carol is not None and carol.manager is None and carol.end_date is None
    # without a telling suffix, the content decides
    assert len(RosterFile(write(tmp_path, "export.txt", json.dumps(data))).entries()) == 3


def test_from_rows_and_the_sandbox_demo_roster(demo_app: FastAPI) -> None:
    assert RosterFile.from_rows(ROWS).get("bob@acme.com") is not None
    with demo_app.state.world.db.session() as s:
        setting = s.get(Setting, "roster")
        assert setting is not None
        rows = setting.value["rows"]
    roster = RosterFile.from_rows(rows, source="demo seed")
    assert len(roster.entries()) == len(rows) > 5


def problems(exc: pytest.ExceptionInfo[RosterError]) -> list[tuple[int | None, str | None]]:
    return [(e.row, e.field) for e in exc.value.errors]


def test_invalid_csv_names_every_row_and_field(tmp_path: Path) -> None:
    text = (
        "email,name,status,manager,end_date\n"
        "not-an-email,Nobody,active,,\n"  # row 1
        "dave@acme.com,,fired,boss,31/12/2026\n"  # row 2: name, status, manager, end_date
        "Alice@acme.com,Alice,active,,\n"  # row 3
        "alice@ACME.com,Alice again,active,,\n"  # row 4: the same person
    )
    with pytest.raises(RosterError) as exc:
        RosterFile(write(tmp_path, "bad.csv", text))
    assert problems(exc) == [
        (1, "email"),
        (2, "name"),
        (2, "status"),
        (2, "manager"),
        (2, "end_date"),
        (4, "email"),
    ]
    message = str(exc.value)
    assert message.startswith(f"roster {tmp_path / 'bad.csv'}: 6 problems")
    assert "row 1 (line 2), field 'email': 'not-an-email' is not a valid email address" in message
    assert "row 2 (line 3), field 'status': Input should be 'active', 'terminated' or 'leave'" in (
        message
    )
    assert "row 4 (line 5), field 'email': alice@acme.com is also on row 3" in message


def test_invalid_json_rows(tmp_path: Path) -> None:
    rows = [ROWS[0], "not an object", {"email": "e@acme.com", "status": "active"}]
    with pytest.raises(RosterError) as exc:
        RosterFile(write(tmp_path, "bad.json", json.dumps(rows)))
    assert problems(exc) == [(2, None), (3, "name")]
    assert "row 3, field 'name': is missing or empty" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("r.csv", "email,name\na@acme.com,A\n", RowError(None, "status", "", 1)),
        ("r.json", '{"rows": [', RowError(None, None, "not valid JSON", 1)),
        ("r.json", '{"people": []}', RowError(None, None, "expected a list", None)),
    ],
)
def test_unusable_files(tmp_path: Path, name: str, text: str, expected: RowError) -> None:
    with pytest.raises(RosterError) as exc:
        RosterFile(write(tmp_path, name, text))
    [err] = exc.value.errors
    assert (err.row, err.field, err.line) == (expected.row, expected.field, expected.line)
    assert expected.message in err.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="cannot be read"):
        RosterFile(tmp_path / "nope.csv")
