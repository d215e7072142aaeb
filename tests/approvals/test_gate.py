"""The gate on a real Prefect server: flows pause; signed Slack clicks over HTTP resume them.

Covered (issue 4): quorum of two distinct approvers; self-approval refused; forged signature,
stale timestamp and replayed body refused with 401 and nothing changed; a decision for an old
plan hash ignored; timeout → escalation → auto-deny; a double click counted once; the CLI path.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from approvals.watchdog import sweep
from cli.main import app as cli
from domain.records import ApprovalState
from ledger.approvals import get_approval
from ledger.audit import records, verify
from tests.approvals.stack import Stack

pytestmark = pytest.mark.slow

TERMINATION = {
    "runbook": "offboard",
    "subject": "dana.sole@acme.com",
    "requester": "hr.bot@acme.com",
    "reason": "termination",
    "subject_manager": "sofia.lead@acme.com",
}
SEC = "sec.lead@acme.com"
PROD_GRANT = {
    "runbook": "onboard",
    "subject": "analytics-vendor-max.roe@vendorco.com",
    "requester": "sofia.lead@acme.com",
    "production_roles": ("manager",),
    "project_admins": ("alice.admin@acme.com", "sofia.lead@acme.com"),
}


def test_the_manager_approves_with_one_signed_click(stack: Stack) -> None:
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    assert appr.required == [["sofia.lead@acme.com", "hr.partner@acme.com"]]
    asked = stack.dms("sofia.lead@acme.com")
    assert asked and any(b["type"] == "actions" for b in asked[-1]["blocks"])
    r = stack.click(appr, "sofia.lead@acme.com")
    assert r.status_code == 200 and r.json()["recorded"] is True
    assert run.wait() == "approved"
    # The message says who decided, and no longer has buttons.
    deadline = time.monotonic() + 5
    while any(b["type"] == "actions" for b in stack.dms("sofia.lead@acme.com")[-1]["blocks"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "sofia.lead@acme.com" in stack.dms("sofia.lead@acme.com")[-1]["text"]
    actions = [r.action for r in records(stack.svc.ledger)]
    assert actions == ["approval.requested", "approval.decision", "approval.approved"]
    assert verify(stack.svc.ledger).ok


def test_quorum_needs_two_distinct_people_and_self_approval_is_ignored(stack: Stack) -> None:
    run = stack.start(**PROD_GRANT)
    appr = stack.paused(PROD_GRANT["subject"])
    assert stack.click(appr, "sofia.lead@acme.com").status_code == 200  # the requester
    assert stack.click(appr, "sec.lead@acme.com").status_code == 200
    # The flow woke, tallied both and went back to sleep: one seat is still empty.
    stack.settled(appr, run)
    assert run.thread.is_alive()
    assert stack.click(appr, "alice.admin@acme.com").status_code == 200
    assert run.wait() == "approved"
    final = get_approval(stack.svc.ledger, appr.id)
    verdicts = {d.approver: (d.counted, d.reason) for d in final.decisions}
    assert verdicts["sofia.lead@acme.com"] == (False, "the requester or the subject cannot approve")
    assert verdicts["sec.lead@acme.com"][0] and verdicts["alice.admin@acme.com"][0]


def test_forged_stale_and_replayed_clicks_are_refused_and_change_nothing(stack: Stack) -> None:
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    forged = stack.click(appr, "sofia.lead@acme.com", secret="not-the-secret")
    stale = stack.click(appr, "sofia.lead@acme.com", timestamp=int(time.time()) - 400)
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert get_approval(stack.svc.ledger, appr.id).decisions == []
    # A valid click, then the very same request replayed.
    from cli.approvals_cmd import block_actions_body, sign

    user = stack.svc.messenger.user_id("hr.partner@acme.com")  # type: ignore[union-attr]
    body = block_actions_body(
        approval_id=appr.id, plan_hash=appr.plan_hash, slack_user=user, deny=True
    )
    headers = sign("sandbox-signing-secret", body)
    first = stack.intake.post("/slack/interactions", content=body, headers=headers)
    replay = stack.intake.post("/slack/interactions", content=body, headers=headers)
    assert (first.status_code, replay.status_code) == (200, 401)
    assert run.wait() == "denied"
    assert len(get_approval(stack.svc.ledger, appr.id).decisions) == 1


def test_another_plan_is_refused_and_a_double_click_counts_once(stack: Stack) -> None:
    run = stack.start(**PROD_GRANT)
    appr = stack.paused(PROD_GRANT["subject"])
    old = stack.click(appr, "alice.admin@acme.com", plan_hash="b" * 64)
    assert old.status_code == 200 and old.json()["recorded"] is False
    assert "the plan changed" in old.json()["message"]
    first = stack.click(appr, "sec.lead@acme.com")
    again = stack.click(appr, "sec.lead@acme.com")
    assert first.json()["recorded"] is True, first.text
    assert again.json().get("recorded") is False, again.text
    stack.settled(appr, run)
    assert run.thread.is_alive()  # alice's click named another plan: nothing recorded
    stack.click(appr, "alice.admin@acme.com")
    assert run.wait() == "approved"
    final = get_approval(stack.svc.ledger, appr.id)
    assert [(d.approver, d.counted, d.auth) for d in final.decisions] == [
        ("sec.lead@acme.com", True, "slack"),
        ("alice.admin@acme.com", True, "slack"),
    ]


def test_escalation_never_lets_it_admins_fill_the_security_seat(stack: Stack) -> None:
    # Issue 14, finding 4: after 12 hours two IT admins approved a production Admin grant.
    ctx = {
        **PROD_GRANT,
        "production_roles": ("admin",),
        "project_admins": ("alice.admin@acme.com",),
    }
    run = stack.start(**ctx)
    appr = stack.paused(ctx["subject"])
    assert stack.click(appr, "alice.admin@acme.com").json()["recorded"] is True
    stack.settled(appr, run)
    raj_before, sec_before = len(stack.dms("raj.admin@acme.com")), len(stack.dms(SEC))
    acted = sweep(stack.svc, now=appr.created_at + timedelta(hours=13))
    assert [(a.kind, a.result) for a in acted] == [("escalate", "resumed")]
    stack.paused(ctx["subject"])
    assert len(stack.dms("raj.admin@acme.com")) == raj_before  # the fallback is not asked
    assert len(stack.dms(SEC)) == sec_before + 1  # security is asked again
    assert stack.click(appr, "raj.admin@acme.com").json()["recorded"] is True
    stack.settled(appr, run)
    assert run.thread.is_alive()  # still waiting for security
    final = get_approval(stack.svc.ledger, appr.id)
    assert [(d.approver, d.counted) for d in final.decisions] == [
        ("alice.admin@acme.com", True),
        ("raj.admin@acme.com", False),
    ]
    escalated = [r for r in records(stack.svc.ledger) if r.action == "approval.escalated"]
    assert escalated[-1].after == {
        "fallback": [],
        "asked_again": ["sec.lead@acme.com", "sec.oncall@acme.com"],
    }
    stack.click(appr, SEC)
    assert run.wait() == "approved"


def test_timeout_escalates_to_the_fallback_then_auto_denies(stack: Stack) -> None:
    ctx = {**TERMINATION, "subject_manager": None}  # an ordinary seat: HR, or IT after 12 h
    run = stack.start(**ctx)
    appr = stack.paused(ctx["subject"])
    before = len(stack.dms("raj.admin@acme.com"))
    acted = sweep(stack.svc, now=appr.created_at + timedelta(hours=13))
    assert [(a.kind, a.result) for a in acted] == [("escalate", "resumed")]
    stack.paused(ctx["subject"])
    assert get_approval(stack.svc.ledger, appr.id).escalated
    assert len(stack.dms("raj.admin@acme.com")) == before + 1  # the fallback group is asked
    acted = sweep(stack.svc, now=appr.created_at + timedelta(hours=25))
    assert [(a.kind, a.result) for a in acted] == [("expired", "resumed")]
    assert run.wait() == "expired"
    assert get_approval(stack.svc.ledger, appr.id).state is ApprovalState.EXPIRED
    assert [r.action for r in records(stack.svc.ledger)][-1] == "approval.expired"


def test_the_cli_path(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    s = stack.svc.settings
    for k, v in {
        "HANDOVER_LEDGER_URL": s.ledger_url,
        "HANDOVER_SLACK_API_URL": s.slack_api_url,
        "HANDOVER_JIRA_URL": s.jira_url,
        "HANDOVER_ORG_URL": s.org_url,
    }.items():
        monkeypatch.setenv(k, str(v))
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    runner = CliRunner()
    listed = runner.invoke(cli, ["approvals", "--pending", "--json"])
    assert listed.exit_code == 0 and appr.id in listed.stdout
    bad = runner.invoke(cli, ["approve", appr.id, "--as", "not an email"])
    assert bad.exit_code == 2
    ok = runner.invoke(cli, ["approve", appr.id, "--as", "hr.partner@acme.com"])
    assert ok.exit_code == 0, ok.output
    assert run.wait() == "approved"
    again = runner.invoke(cli, ["approve", appr.id, "--as", "hr.partner@acme.com"])
    assert again.exit_code == 2 and "already approved" in again.output
    assert runner.invoke(cli, ["audit", "verify"]).exit_code == 0


def test_two_channels_cannot_approve_two_plans(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan changes while approvers look at it (a re-plan: ``open_approval`` with a new
    hash, as a runbook resumed on a changed world does): the Slack message and a CLI decision
    naming the old plan are refused; only decisions for the plan now asked count."""
    from approvals.gate import open_approval
    from domain.policy import ApprovalContext
    from tests.approvals.stack import SUMMARY

    for k, v in {"HANDOVER_LEDGER_URL": stack.svc.settings.ledger_url}.items():
        monkeypatch.setenv(k, str(v))
    run = stack.start(**TERMINATION, plan_hash="a" * 64)
    old = stack.paused("dana.sole@acme.com")
    new, _ = open_approval(
        stack.svc,
        ApprovalContext(**TERMINATION),
        plan_hash="c" * 64,
        summary=SUMMARY,
        flow_run_id=old.flow_run_id,
    )
    assert new.id == old.id and new.plan_hash == "c" * 64
    stale = stack.click(old, "sofia.lead@acme.com", plan_hash=old.plan_hash)
    assert stale.json()["recorded"] is False and "the plan changed" in stale.json()["message"]
    cli_old = CliRunner().invoke(
        cli, ["approve", old.id, "--as", "hr.partner@acme.com", "--plan", "a" * 12]
    )
    assert cli_old.exit_code == 2 and "the plan changed" in cli_old.output
    assert get_approval(stack.svc.ledger, old.id).decisions == []
    shown = CliRunner().invoke(cli, ["approve", old.id, "--as", "hr.partner@acme.com"])
    assert shown.exit_code == 0, shown.output
    assert "the subject is removed from the org" in shown.output and "c" * 12 in shown.output
    assert run.wait() == "approved"
    [d] = get_approval(stack.svc.ledger, old.id).decisions
    assert (d.approver, d.plan_hash, d.counted, d.channel) == (
        "hr.partner@acme.com",
        "c" * 64,
        True,
        "cli",
    )
