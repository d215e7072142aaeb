"""The access review's tasks (``tasks.review``) called as functions (``.fn``): the roster read,
the org as the review sees it (the demo sandbox), an approved invitation revoked and audited,
the CSV and HTML reports.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from connectors.hris import RosterError
from domain.models import Role
from domain.review import Finding, Kind, Recommendation, finding_id
from ledger.audit import records
from tasks.review import read_review_inputs, read_roster, revoke_invitation, write_reports
from tests.flows.offboard_stack import OffboardStack
from tests.tasks.sandbox_runtime import demo_stack

EXPIRED = "expired.invite@partner.io"

stack = pytest.fixture(name="stack")(demo_stack)


def stale(email: str) -> Finding:
    return Finding(
        id=finding_id(Kind.STALE_INVITATION, email),
        kind=Kind.STALE_INVITATION,
        subject=email,
        detail="invited 20 days ago, never accepted",
        action=Recommendation.REVOKE_INVITATION,
    )


def test_read_roster(tmp_path: Path) -> None:
    good = tmp_path / "roster.csv"
    good.write_text("email,name,status\nann@acme.com,Ann,active\nbo@acme.com,Bo,terminated\n")
    people = read_roster.fn(str(good))
    assert [(p.email, p.status) for p in people] == [
        ("ann@acme.com", "active"),
        ("bo@acme.com", "terminated"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,status\nnot-an-email,Ann,active\n")
    with pytest.raises(RosterError, match="field 'email'"):
        read_roster.fn(str(bad))


@pytest.mark.slow
def test_read_review_inputs_details_the_members_of_two_groups(stack: OffboardStack) -> None:
    org = read_review_inputs.fn(stack.rt)
    assert org.warnings == []
    assert EXPIRED in {i.email for i in org.invitations}
    assert {"Analysts Production", "Prod Managers"} <= {g.name for g in org.groups}
    # gina.groups is in two groups: her own project grants are read (the group-union check).
    assert org.individual_roles["gina.groups@acme.com"] == {"Production": Role.VIEWER}
    gina = next(m for m in org.members if m.email == "gina.groups@acme.com")
    assert any(p.project == "Production" for p in gina.projects)


@pytest.mark.slow
def test_an_approved_invitation_is_revoked_and_audited(stack: OffboardStack) -> None:
    finding = stale(EXPIRED)
    effect = revoke_invitation.fn(
        stack.rt, finding, flow_run_id="run-1", approvers=["sec.lead@acme.com"], plan_hash="h" * 64
    )
    assert effect == "deleted"
    invites = {i.email: i.state for i in stack.rt.org.list_invitations()}  # type: ignore[union-attr]
    assert invites[EXPIRED] == "revoked"
    (rec,) = [r for r in records(stack.rt.ledger, subject=EXPIRED)]
    assert (rec.action, rec.effect, rec.on_behalf_of) == (
        "org.revoke_invitation",
        "deleted",
        "sec.lead@acme.com",
    )
    assert rec.after == {"finding": finding.id, "detail": finding.detail}
    assert rec.plan_hash == "h" * 64 and rec.target == "invitation (stale_invitation)"
    # Again: nothing pending any more.
    assert revoke_invitation.fn(
        stack.rt, finding, flow_run_id="run-2", approvers=["sec.lead@acme.com"], plan_hash="h" * 64
    ).startswith("noop")


def test_the_reports_hold_every_finding_and_its_outcome(tmp_path: Path) -> None:
    findings = [stale(EXPIRED), stale("a<b>@partner.io")]
    out = write_reports.fn(
        findings,
        {findings[0].id: "revoke_invitation deleted"},
        directory=tmp_path / "reports",
        stem="review-2026-03-01",
        title="Access review 2026-03-01",
    )
    assert out == {
        "csv": str(tmp_path / "reports" / "review-2026-03-01.csv"),
        "html": str(tmp_path / "reports" / "review-2026-03-01.html"),
    }
    rows = list(csv.DictReader(io.StringIO(Path(out["csv"]).read_text(encoding="utf-8"))))
    assert [(r["subject"], r["outcome"]) for r in rows] == [
        (EXPIRED, "revoke_invitation deleted"),
        ("a<b>@partner.io", ""),
    ]
    html = Path(out["html"]).read_text(encoding="utf-8")
    assert "<title>Access review 2026-03-01</title>" in html and "2 findings" in html
    assert "a&lt;b&gt;@partner.io" in html and "a<b>@" not in html


def test_a_finding_is_never_a_formula_in_the_csv_report(tmp_path: Path) -> None:
    """A name or note from the org or HR that a spreadsheet would run is written as text
    (domain/escaping.py); the HTML report shows it escaped."""
    formula = '=HYPERLINK("http://evil.example","x")'
    finding = stale("eve@partner.io").model_copy(update={"detail": formula, "group": "@admins"})
    out = write_reports.fn(
        [finding], {}, directory=tmp_path, stem="review", title="<b>Access review</b>"
    )
    (row,) = list(csv.DictReader(io.StringIO(Path(out["csv"]).read_text(encoding="utf-8"))))
    assert row["detail"] == "'" + formula and row["group"] == "'@admins"
    assert row["subject"] == "eve@partner.io"
    html = Path(out["html"]).read_text(encoding="utf-8")
    assert "<b>Access review</b>" not in html and "&lt;b&gt;Access review&lt;/b&gt;" in html
    assert "=HYPERLINK(&quot;http://evil.example&quot;,&quot;x&quot;)" in html
