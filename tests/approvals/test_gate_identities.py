"""The gate compares people, not spellings: a requester who asked under an alias is the IdP
user it belongs to, and that person's approval never counts (real Prefect server, the demo
sandbox's SCIM IdP and Slack over loopback, signed clicks over HTTP)."""

from __future__ import annotations

import pytest

from ledger.approvals import get_approval
from tests.approvals.stack import Stack

pytestmark = pytest.mark.slow

ALICE, ALIAS = "alice.admin@acme.com", "alice@acme.com"  # the seed gives alice this alias
PROD_GRANT = {
    "runbook": "onboard",
    "subject": "analytics-vendor-max.roe@vendorco.com",
    "requester": ALIAS,
    "production_roles": ("manager",),
    "project_admins": (ALICE, "sofia.lead@acme.com"),
}


def test_a_request_filed_under_an_alias_cannot_be_approved_by_its_owner(stack: Stack) -> None:
    run = stack.start(**PROD_GRANT)
    appr = stack.paused(PROD_GRANT["subject"])
    # Recorded as the IdP's person, and never asked to approve their own request.
    assert appr.requester == ALICE
    assert all(ALICE not in seat and ALIAS not in seat for seat in appr.required)
    assert not stack.dms(ALICE)
    stack.click(appr, ALICE)  # alice approves anyway (her Slack email is her canonical one)
    assert stack.click(appr, "sec.lead@acme.com").json()["recorded"] is True
    stack.settled(appr, run)
    assert run.thread.is_alive(), "alice's own approval filled a seat"
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    assert run.wait() == "approved"
    final = get_approval(stack.svc.ledger, appr.id)
    counted = {d.approver for d in final.decisions if d.counted}
    assert counted == {"sec.lead@acme.com", "sofia.lead@acme.com"}


def test_an_approver_signed_in_under_an_alias_is_recorded_as_the_idp_user(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever address a person acts under (an ID token's email, an ``--as`` in sandbox mode),
    the decision is recorded under the IdP's address: the seat the policy gives alice counts."""
    from typer.testing import CliRunner

    from cli.main import app as cli

    s = stack.svc.settings
    for k, v in {
        "HANDOVER_LEDGER_URL": s.ledger_url,
        "HANDOVER_SLACK_API_URL": s.slack_api_url,
        "HANDOVER_JIRA_URL": s.jira_url,
        "HANDOVER_ORG_URL": s.org_url,
        "HANDOVER_IDP_URL": s.idp_url,
    }.items():
        monkeypatch.setenv(k, str(v))
    ctx = {
        "runbook": "offboard",
        "subject": "mike.stale@acme.com",
        "requester": "sofia.lead@acme.com",
        "reason": "inactivity",
    }
    run = stack.start(**ctx)
    appr = stack.paused(ctx["subject"])
    out = CliRunner().invoke(cli, ["approve", appr.id, "--as", ALIAS])
    assert out.exit_code == 0, out.output
    assert run.wait() == "approved"
    [d] = get_approval(stack.svc.ledger, appr.id).decisions
    assert (d.approver, d.counted, d.auth) == (ALICE, True, "sandbox-as")
