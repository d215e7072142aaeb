"""The console's Members export (``connectors.org.export``): read by header names, dates in the
forms a console writes, and every bad row named with its line — a bad file is refused whole."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.org.export import MembersExportError, parse_members_export, read_members_export
from domain.models import Role


def test_headers_are_matched_by_name_whatever_their_case_and_order() -> None:
    text = (
        "\ufeffLast Active,User Email,Name,Org Role,Status\r\n"
        "2026-11-30T10:00:00Z,Alice.Admin@acme.com,Alice,Admin,Active\r\n"
        "11/02/2026,mike.stale@acme.com,Mike,Manager,joined\r\n"
        "Never,new.hire@acme.com,New,viewer,Invited\r\n"
        ",,,,\r\n"
    )
    alice, mike, new = parse_members_export(text)
    assert (alice.email, alice.org_role, alice.status) == (
        "alice.admin@acme.com",
        Role.ADMIN,
        "joined",
    )
    assert alice.last_login == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert mike.last_login == datetime(2026, 11, 2, tzinfo=UTC)
    assert (new.status, new.last_login) == ("pending", None)


def test_every_bad_row_is_named_and_the_file_refused() -> None:
    text = (
        "Email,Role,Last Login\n"
        "not-an-email,viewer,2026-01-01\n"
        "a@acme.com,boss,2026-01-01\n"
        "b@acme.com,viewer,yesterday\n"
        "c@acme.com,viewer,2026-01-01\n"
        "C@acme.com,viewer,2026-01-01\n"
    )
    with pytest.raises(MembersExportError) as e:
        parse_members_export(text)
    msg = str(e.value)
    for expected in (
        "line 2: email 'not-an-email'",
        "line 3: role 'boss'",
        "line 4: last login 'yesterday'",
        "line 6: c@acme.com is already on line 5",
    ):
        assert expected in msg, msg


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("Name,Role\nAlice,admin\n", "no email column"),
        ("Email,Name\na@acme.com,A\n", "none of Role, Last Login, Status"),
    ],
)
def test_a_file_without_what_the_review_needs_is_refused(text: str, says: str) -> None:
    with pytest.raises(MembersExportError, match=says):
        parse_members_export(text)


def test_a_missing_or_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MembersExportError, match="cannot read the members export"):
        read_members_export(tmp_path / "missing.csv")
    binary = tmp_path / "members.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(MembersExportError, match="not UTF-8"):
        read_members_export(binary)
