"""Parsing access-request tickets (:mod:`domain.access_request`), as tables of cases."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from domain.access_request import AccessRequestError, LineError, parse_access_request
from domain.models import Module, Role

TODAY = date(2026, 3, 2)
VALID = "email: new.hire@example.com\nprojects: Production=viewer"


def parse(description: str, **kw: Any) -> Any:
    return parse_access_request(description, today=TODAY, **kw)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        (
            VALID,
            {"email": "new.hire@example.com", "projects": {"Production": Role.VIEWER}},
        ),
        (
            "\n  Email :  New.Hire@Example.COM \n\n"
            "Projects: Production=Viewer , Staging = manager,\n"
            "Org Role: member\n"
            "modules: Data Tables, govern, data_tables\n"
            "until: 2026-04-01\n"
            "justification: Q2 churn analysis: cohorts and charts\n"
            "SOW: SOW-2230\n",
            {
                "email": "new.hire@example.com",
                "projects": {"Production": Role.VIEWER, "Staging": Role.MANAGER},
                "org_role": Role.MEMBER,
                "modules": (Module.DATA_TABLES, Module.GOVERN),
                "until": date(2026, 4, 1),
                "temporary": True,  # an end date makes it temporary
                "justification": "Q2 churn analysis: cohorts and charts",
                "sow": "SOW-2230",
            },
        ),
        (
            "email: [a@example.com|mailto:a@example.com]\r\nprojects: Prod EU=admin; Dev=member",
            {"email": "a@example.com", "projects": {"Prod EU": Role.ADMIN, "Dev": Role.MEMBER}},
        ),
        (
            VALID + "\nmodules: none\norg-role: VIEWER",
            {"modules": (), "org_role": Role.VIEWER, "temporary": False, "until": None},
        ),
    ],
    ids=["minimal", "everything", "jira-mailto-and-semicolons", "explicit-defaults"],
)
def test_valid_requests(description: str, expected: dict[str, Any]) -> None:
    req = parse(description)
    for field, value in expected.items():
        assert getattr(req, field) == value, field


def test_ticket_labels_and_requester_are_kept() -> None:
    req = parse(VALID, ticket="ACC-7", labels=["Temporary", "vendor"], requester="s@acme.com")
    assert (req.ticket, req.temporary, req.requester) == ("ACC-7", True, "s@acme.com")
    assert not parse(VALID, labels=["vendor"]).temporary


@pytest.mark.parametrize(
    ("description", "line_no", "message"),
    [
        (VALID + "\nplease hurry", 3, "expected 'key: value'"),
        (VALID + "\nemial: x@example.com", 3, "unknown key 'emial' (did you mean 'email'?)"),
        (VALID + "\nmanager: boss@example.com", 3, "unknown key 'manager'; the keys are email"),
        ("email: not-an-email\nprojects: P=viewer", 1, "'not-an-email' is not a valid email"),
        ("email:\nprojects: P=viewer", 1, "email is empty"),
        (VALID + "\nemail: b@example.com", 3, "'email' is given twice (first on line 1)"),
        ("email: a@example.com\nprojects: Production", 2, "malformed projects entry 'Production'"),
        ("email: a@example.com\nprojects: =viewer", 2, "malformed projects entry '=viewer'"),
        ("email: a@example.com\nprojects:", 2, "no project given"),
        ("email: a@example.com\nprojects: P=owner", 2, "unknown role 'owner' for project 'P'"),
        ("email: a@example.com\nprojects: P=viewer, p=admin", 2, "project 'p' is listed twice"),
        (VALID + "\norg_role: owner", 3, "unknown org role 'owner'"),
        (VALID + "\nmodules: govern, analytics", 3, "unknown module 'analytics'"),
        (VALID + "\nuntil: next week", 3, "'next week' is not a date; write it as YYYY-MM-DD"),
        (VALID + "\nuntil: 2026-03-02", 3, "until 2026-03-02 is not after today (2026-03-02)"),
        (VALID + "\nuntil: 2020-01-01", 3, "until 2020-01-01 is not after today"),
        ("projects: P=viewer", None, "'email' is missing: add a line like 'email: "),
        ("email: a@example.com", None, "'projects' is missing"),
    ],
)
def test_each_kind_of_error(description: str, line_no: int | None, message: str) -> None:
    with pytest.raises(AccessRequestError) as exc:
        parse(description)
    [err] = exc.value.errors
    assert err.line_no == line_no
    assert message in err.message
    if line_no is not None:
        assert err.line == description.splitlines()[line_no - 1]
        assert str(err).startswith(f'line {line_no} ("{err.line.strip()}"): ')


def test_every_problem_at_once_with_line_numbers() -> None:
    description = (
        "email: not-an-email\n"
        "projects: Prodution=owner, Staging\n"
        "\n"
        "until: 2020-01-01\n"
        "modules: govern\n"
        "modules: experiment\n"
        "color: blue"
    )
    with pytest.raises(AccessRequestError) as exc:
        parse(description)
    assert [(e.line_no, e.message.split(":")[0]) for e in exc.value.errors] == [
        (1, "'not-an-email' is not a valid email address"),
        (2, "unknown role 'owner' for project 'Prodution'"),
        (2, "malformed projects entry 'Staging'"),
        (4, "until 2020-01-01 is not after today (2026-03-02)"),
        (6, "'modules' is given twice (first on line 5)"),
        (
            7,
            "unknown key 'color'; the keys are email, projects, org_role, modules, until, "
            "justification, sow, org",
        ),
    ]
    # what goes on the ticket: a heading, then one line per problem
    text = str(exc.value)
    lines = text.splitlines()
    assert lines[0].startswith("This access request cannot be processed (6 problems)")
    assert (
        lines[1]
        == "- line 1 (\"email: not-an-email\"): 'not-an-email' is not a valid email address"
    )
    assert len(lines) == 7 and all(line.startswith("- line ") for line in lines[1:])


def test_empty_description_says_what_is_missing() -> None:
    for description in ("", None, "\n  \n"):
        with pytest.raises(AccessRequestError) as exc:
            parse_access_request(description, today=TODAY)
        assert [e.line_no for e in exc.value.errors] == [None, None]
        assert "(2 problems)" in str(exc.value) and "email: name@example.com" in str(exc.value)


def test_line_error_reads_well() -> None:
    assert str(LineError(3, "  until: x ", "bad")) == 'line 3 ("until: x"): bad'
    assert str(LineError(None, "", "'email' is missing")) == "'email' is missing"
    single = AccessRequestError([LineError(None, "", "x")])
    assert "(1 problem)" in str(single) and isinstance(single, ValueError)
