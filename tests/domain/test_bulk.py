"""Bulk onboarding CSVs (:mod:`domain.bulk`): parsing as a table of cases, the re-run rule for
pending invitations, and the batch plan."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.bulk import (
    BatchPlan,
    BatchRow,
    BulkFileError,
    parse_bulk_csv,
    settle_pending,
)
from domain.models import AccessRequest, Invitation, Member, Module, Project, ProjectGrant, Role
from domain.onboard import OnboardState, OnboardStepKind, Outcome, make_onboarding_plan

TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HEADER = "email,projects,org_role,modules,until,justification,sow\n"


def parse(text: str) -> list:
    return parse_bulk_csv(text, today=TODAY, requester="ops@acme.com")


def test_good_rows_both_project_separators_and_every_column() -> None:
    rows = parse(
        HEADER
        + "a.one@vendor.com,Production=viewer; Staging=manager,member,govern,2026-04-01,why,SOW-1\n"
        + 'b.two@vendor.com,"Production=Viewer, Development=member",,"govern, experiment",,,\n'
        + "c.three@vendor.com,Staging=viewer,,,,,\n"
    )
    assert [r.ok for r in rows] == [True, True, True]
    a, b, c = (r.request for r in rows)
    assert a.projects == {"Production": Role.VIEWER, "Staging": Role.MANAGER}
    assert a.org_role is Role.MEMBER and a.modules == (Module.GOVERN,)
    assert a.until == date(2026, 4, 1) and a.temporary and a.sow == "SOW-1"
    assert a.requester == "ops@acme.com"
    assert b.projects == {"Production": Role.VIEWER, "Development": Role.MEMBER}
    assert b.modules == (Module.GOVERN, Module.EXPERIMENT)
    assert c.org_role is Role.VIEWER and c.modules == () and c.until is None
    assert [r.line for r in rows] == [2, 3, 4]


def test_header_in_any_case_and_order_and_only_the_required_columns() -> None:
    rows = parse("Projects, EMAIL\nStaging=member,x.y@vendor.com\n")
    assert rows[0].ok and rows[0].request.email == "x.y@vendor.com"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("not-an-email,Staging=viewer,,,,,", "email", "not a valid email"),
        (",Staging=viewer,,,,,", "email", "email is empty"),
        ("a@vendor.com,,,,,,", "projects", "no project given"),
        ("a@vendor.com,Staging=owner,,,,,", "projects", "unknown role 'owner'"),
        ("a@vendor.com,Staging,,,,,", "projects", "expected Name=role"),
        ("a@vendor.com,Staging=viewer; staging=member,,,,,", "projects", "listed twice"),
        ("a@vendor.com,Staging=viewer,superuser,,,,", "org_role", "unknown org role"),
        ("a@vendor.com,Staging=viewer,,telepathy,,,", "modules", "unknown module"),
        ("a@vendor.com,Staging=viewer,,,2020-01-01,,", "until", "not after today"),
        ("a@vendor.com,Staging=viewer,,,next week,,", "until", "YYYY-MM-DD"),
        ("a@vendor.com,Staging=viewer,,,,,,extra", "row", "8 values for 7 columns"),
    ],
)
def test_each_kind_of_bad_row_names_its_line_and_field(row: str, field: str, words: str) -> None:
    rows = parse(HEADER + "good.one@vendor.com,Staging=viewer,,,,,\n" + row + "\n")
    good, bad = rows
    assert good.ok
    assert not bad.ok and bad.request is None
    (err,) = bad.errors
    assert (err.line, err.field) == (3, field)
    assert words in err.message
    assert bad.message.startswith(f"line 3, {field}: ")


def test_every_problem_of_a_row_is_reported() -> None:
    (row,) = parse(HEADER + "bad,Staging=owner,boss,,,,\n")
    assert [e.field for e in row.errors] == ["email", "projects", "org_role"]


def test_duplicate_emails_are_errors_on_the_later_rows() -> None:
    rows = parse(
        HEADER
        + "dup@vendor.com,Staging=viewer,,,,,\n"
        + "other@vendor.com,Staging=viewer,,,,,\n"
        + "DUP@Vendor.com,Development=member,,,,,\n"
        + "dup@vendor.com,Staging=viewer,,,,,\n"
    )
    assert [r.ok for r in rows] == [True, True, False, False]
    assert rows[2].message == "line 4, email: dup@vendor.com is already on line 2"
    assert "already on line 2" in rows[3].message


def test_bom_crlf_blank_lines_and_quoted_newlines_keep_line_numbers() -> None:
    text = (
        "\ufeffemail,projects,justification\r\n"
        "\r\n"
        'a@vendor.com,Staging=viewer,"two\r\nlines"\r\n'
        "bad,Staging=viewer,\r\n"
    )
    rows = parse(text)
    assert rows[0].ok and rows[0].line == 3
    assert rows[0].request.justification == "two\r\nlines"
    assert not rows[1].ok and rows[1].line == 5 and rows[1].errors[0].line == 5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("  \n\r\n", "empty"),
        ("\ufeff", "empty"),
        ("email,projects\n", "no rows"),
        ("email,projects\n\n,\n", "no rows"),
        ("email\na@b.com\n", "column 'projects' is missing"),
        ("email,projects,team\n", "unknown column 'team'"),
        ("email,projets\n", "did you mean 'projects'"),
        ("email,projects,email\n", "column 'email' is given twice"),
    ],
)
def test_file_errors(text: str, words: str) -> None:
    with pytest.raises(BulkFileError, match=words):
        parse(text)


# --- re-runs: a pending invitation --------------------------------------------------------------

PROJECTS = [
    Project(id="p1", name="Production", environment="production", admins=("alice@acme.com",)),
    Project(id="p2", name="Staging", environment="staging", admins=("raj@acme.com",)),
]
REQ = AccessRequest(email="v.one@vendor.com", projects={"Staging": Role.MEMBER})


def pending_state(sent: datetime, role: Role = Role.MEMBER) -> OnboardState:
    return OnboardState(
        subject=REQ.email,
        member=Member(
            email=REQ.email,
            status="pending",
            org_role=Role.VIEWER,
            projects=(ProjectGrant(project="Staging", role=role),),
        ),
        invitation=Invitation(
            email=REQ.email,
            state="pending",
            sent_at=sent,
            last_sent_at=sent,
            expires_at=sent + timedelta(days=14),
        ),
        projects=PROJECTS,
        taken_at=NOW,
    )


@pytest.mark.parametrize(
    ("age_h", "role", "kinds", "outcome"),
    [
        (1, Role.MEMBER, [], Outcome.NOTHING_TO_DO),  # the same batch again, same day
        (47, Role.MEMBER, [], Outcome.NOTHING_TO_DO),
        (49, Role.MEMBER, ["resend_invitation"], Outcome.READY),  # stale: resend once
        (1, Role.VIEWER, ["resend_invitation"], Outcome.READY),  # grants other access
    ],
)
def test_settle_pending(age_h: int, role: Role, kinds: list[str], outcome: Outcome) -> None:
    state = pending_state(NOW - timedelta(hours=age_h), role)
    plan = make_onboarding_plan(REQ, state, idp_managed=False, now=NOW)
    assert [s.kind for s in plan.steps] == [OnboardStepKind.RESEND_INVITATION]
    settled = settle_pending(plan, state, now=NOW)
    assert [s.kind.value for s in settled.steps] == kinds
    assert settled.outcome is outcome


def test_settle_pending_leaves_a_new_invite_alone() -> None:
    state = OnboardState(subject=REQ.email, projects=PROJECTS, taken_at=NOW)
    plan = make_onboarding_plan(REQ, state, idp_managed=False, now=NOW)
    assert settle_pending(plan, state, now=NOW) is plan


# --- the batch --------------------------------------------------------------------------------


def test_the_batch_plan_counts_warns_and_hashes() -> None:
    state = OnboardState(subject="x", projects=PROJECTS, taken_at=NOW)
    rows = parse(
        HEADER
        + "analytics-vendor-a.b@vendor.com,Production=viewer; Staging=member,member,,,,\n"
        + "analytics-vendor-c.d@vendor.com,Staging=manager,,govern,,,\n"
        + "analytics-vendor-e.f@vendor.com,Nowhere=viewer,,,,,\n"
        + "bad,Staging=viewer,,,,,\n"
    )
    batch = BatchPlan()
    for r in rows:
        if not r.ok:
            batch.rows.append(BatchRow(r.line, r.email, error=r.message))
            continue
        st = state.model_copy(update={"subject": r.email})
        plan = make_onboarding_plan(r.request, st, idp_managed=False, now=NOW)
        batch.rows.append(BatchRow(r.line, r.email, plan=plan))
    assert [r.status for r in batch.rows] == ["ready", "ready", "invalid", "invalid"]
    assert batch.counts_by_kind() == {"invite": 2}
    warnings = batch.warnings()
    assert any(w.startswith("line 4 (analytics-vendor-e.f@vendor.com) invalid:") for w in warnings)
    assert any("Nowhere" in w for w in warnings)
    assert any(w.startswith("line 5 (bad) invalid: line 5, email:") for w in warnings)
    assert batch.org_role() == "member"
    assert batch.modules() == ("govern",)
    assert batch.production_roles() == ("viewer",)
    assert batch.project_names(production=True) == ["Production"]
    assert batch.needs_approval()
    h = batch.hash
    assert h == batch.hash and len(h) == 64
    batch.rows.pop()
    assert batch.hash != h
