"""The access-request parser's rules (domain/access_request.py), each as its own small table of
cases.

``test_access_request.py`` checks whole tickets; here each rule alone, one line or one set of
parsed values at a time.
"""

from __future__ import annotations

from datetime import date

import pytest

from domain.access_request import (
    MAX_VALUE,
    AccessRequestError,
    LineError,
    build_request,
    key_problem,
    missing_errors,
    parse_value,
    read_lines,
    text_problem,
)
from domain.models import Module, Role

TODAY = date(2026, 3, 2)


# --- one line ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "seen", "expected"),
    [
        pytest.param("Org Role: member", {}, ("org_role", " member", None), id="normalised-key"),
        pytest.param("org-role:x", {}, ("org_role", "x", None), id="hyphen"),
        pytest.param(
            "email: a@b.io: c", {}, ("email", " a@b.io: c", None), id="value-keeps-colons"
        ),
        pytest.param(
            "please hurry",
            {},
            ("please_hurry", "", "expected 'key: value', e.g. email: name@example.com"),
            id="no-colon",
        ),
        pytest.param(
            " : x",
            {},
            ("", " x", "expected 'key: value', e.g. email: name@example.com"),
            id="empty-key",
        ),
        pytest.param(
            "emial: x",
            {},
            (
                "emial",
                " x",
                "unknown key 'emial' (did you mean 'email'?); the keys are email, projects, "
                "org_role, modules, until, justification, sow, org",
            ),
            id="unknown-with-hint",
        ),
        pytest.param(
            "colour: x",
            {},
            (
                "colour",
                " x",
                "unknown key 'colour'; the keys are email, projects, org_role, modules, until, "
                "justification, sow, org",
            ),
            id="unknown-without-hint",
        ),
        pytest.param(
            "EMAIL: b@x.io",
            {"email": 1},
            ("email", " b@x.io", "'email' is given twice (first on line 1)"),
            id="twice",
        ),
    ],
)
def test_key_problem(
    line: str, seen: dict[str, int], expected: tuple[str, str, str | None]
) -> None:
    assert key_problem(line, seen=seen) == expected


@pytest.mark.parametrize(
    ("line", "value", "problem"),
    [
        pytest.param("sow: SOW-1", " SOW-1", None, id="plain"),
        pytest.param("sow:\tSOW-1", "\tSOW-1", None, id="a-tab-is-whitespace"),
        pytest.param(
            "sow: a\u202eb",
            " a\u202eb",
            "contains invisible or control characters (U+202E): retype the line without them",
            id="bidi-override",
        ),
        pytest.param(
            "sow\u200b: x",
            " x",
            "contains invisible or control characters (U+200B): retype the line without them",
            id="in-the-key-too",
        ),
        pytest.param("j: " + "x" * MAX_VALUE, " " + "x" * MAX_VALUE, None, id="at-the-limit"),
        pytest.param(
            "j: " + "x" * (MAX_VALUE + 1),
            " " + "x" * (MAX_VALUE + 1),
            f"the value is {MAX_VALUE + 1} characters long; at most {MAX_VALUE}",
            id="too-long",
        ),
    ],
)
def test_text_problem(line: str, value: str, problem: str | None) -> None:
    assert text_problem(line, value) == problem


@pytest.mark.parametrize(
    ("key", "value", "parsed", "problems"),
    [
        pytest.param("email", " A@Example.com ", "a@example.com", [], id="email"),
        pytest.param("email", "", None, ["email is empty"], id="email-empty"),
        pytest.param(
            "projects", "P=viewer, Q=admin", {"P": Role.VIEWER, "Q": Role.ADMIN}, [], id="projects"
        ),
        pytest.param(
            "projects",
            "P",
            {},
            ["malformed projects entry 'P': expected Name=role"],
            id="projects-malformed",
        ),
        pytest.param("org_role", " Member ", Role.MEMBER, [], id="org-role"),
        pytest.param(
            "org_role",
            " owner ",
            None,
            ["unknown org role 'owner': use viewer, member, manager or admin"],
            id="org-role-unknown",
        ),
        pytest.param("modules", "govern, Govern", (Module.GOVERN,), [], id="modules"),
        pytest.param("modules", "none", (), [], id="modules-none"),
        pytest.param("until", "2026-04-01", date(2026, 4, 1), [], id="until"),
        pytest.param(
            "until",
            "2026-03-02",
            None,
            ["until 2026-03-02 is not after today (2026-03-02)"],
            id="until-today",
        ),
        pytest.param("justification", "  cohorts: Q2 ", "cohorts: Q2", [], id="free-text"),
        pytest.param("sow", " <b>SOW</b> ", "<b>SOW</b>", [], id="free-text-as-written"),
    ],
)
def test_parse_value(key: str, value: str, parsed: object, problems: list[str]) -> None:
    assert parse_value(key, value, today=TODAY) == (parsed, problems)


# --- the whole description -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("description", "values", "seen", "errors"),
    [
        pytest.param(None, {}, {}, [], id="none"),
        pytest.param("\n  \n", {}, {}, [], id="blank-lines"),
        pytest.param(
            "email: a@b.io\n\nsow: S",
            {"email": "a@b.io", "sow": "S"},
            {"email": 1, "sow": 3},
            [],
            id="line-numbers-count-blank-lines",
        ),
        pytest.param(
            "sow: a\u202eb\nsow: S",
            {},
            {"sow": 1},
            [(1, "contains invisible"), (2, "'sow' is given twice (first on line 1)")],
            id="a-refused-line-still-gives-its-key",
        ),
        pytest.param(
            "hi\nprojects: P=owner, Q",
            {"projects": {}},
            {"projects": 2},
            [(1, "expected 'key: value'"), (2, "unknown role 'owner'"), (2, "malformed")],
            id="every-problem-of-every-line",
        ),
    ],
)
def test_read_lines(
    description: str | None,
    values: dict[str, object],
    seen: dict[str, int],
    errors: list[tuple[int, str]],
) -> None:
    read = read_lines(description, today=TODAY)
    assert (read.values, read.seen) == (values, seen)
    assert [e.line_no for e in read.errors] == [no for no, _ in errors]
    assert all(e.message.startswith(m) for e, (_, m) in zip(read.errors, errors, strict=True))


@pytest.mark.parametrize(
    ("seen", "missing"),
    [
        pytest.param({"email": 1, "projects": 2}, [], id="both"),
        pytest.param({"email": 1}, ["projects"], id="projects"),
        pytest.param({"sow": 1}, ["email", "projects"], id="both-missing-in-order"),
    ],
)
def test_missing_errors(seen: dict[str, int], missing: list[str]) -> None:
    errors = missing_errors(seen)
    assert [e.message.split("'")[1] for e in errors] == missing
    assert all(e.line_no is None and "add a line like" in e.message for e in errors)


BASE = {"email": "a@b.io", "projects": {"P": Role.VIEWER}}


@pytest.mark.parametrize(
    ("values", "labels", "expected"),
    [
        pytest.param(
            BASE, (), (Role.VIEWER, (), None, False, "", ""), id="defaults-least-privilege"
        ),
        pytest.param(
            {**BASE, "org_role": None, "modules": (), "justification": "", "sow": ""},
            (),
            (Role.VIEWER, (), None, False, "", ""),
            id="explicit-empty-values",
        ),
        pytest.param(
            BASE, [" Temporary "], (Role.VIEWER, (), None, True, "", ""), id="temporary-label"
        ),
        pytest.param(
            {**BASE, "until": date(2026, 4, 1), "org_role": Role.MEMBER, "sow": "S"},
            ["vendor"],
            (Role.MEMBER, (), date(2026, 4, 1), True, "", "S"),
            id="an-end-date-makes-it-temporary",
        ),
    ],
)
def test_build_request(
    values: dict[str, object], labels: list[str], expected: tuple[object, ...]
) -> None:
    req = build_request(values, ticket="ACC-1", labels=labels, requester="s@acme.com")
    got = (req.org_role, req.modules, req.until, req.temporary, req.justification, req.sow)
    assert got == expected
    assert (req.ticket, req.requester, req.email) == ("ACC-1", "s@acme.com", "a@b.io")


def test_build_request_turns_a_model_refusal_into_a_request_error() -> None:
    with pytest.raises(AccessRequestError) as exc:
        build_request({**BASE, "email": "nope"}, ticket=None, labels=(), requester=None)
    [err] = exc.value.errors
    assert isinstance(err, LineError) and err.line_no is None
    assert err.message.startswith("email: ")
