"""The Slack interactivity endpoint refuses what is not signed, fresh, new and well-formed,
and changes nothing when it does (no Prefect needed: these approvals have no flow run)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from approvals.gate import PlanSummary, gate
from cli.approvals_cmd import block_actions_body, sign
from domain.policy import ApprovalContext
from domain.records import ApprovalRequest, ApprovalState
from ledger.approvals import create_approval, get_approval
from ledger.audit import records
from sandbox.app import create_app
from tests.approvals.stack import Stack, make_stack
from tests.conftest import LiveSandbox, serve

SECRET = "sandbox-signing-secret"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=4))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path) -> Stack:
    return make_stack(sandbox, tmp_path)


def _approval(stack: Stack) -> ApprovalRequest:
    now = stack.svc.clock()
    return create_approval(
        stack.svc.ledger,
        ApprovalRequest(
            id="apr-test",
            runbook="offboard",
            subject="dana.sole@acme.com",
            requester="hr.bot@acme.com",
            plan_hash="c" * 64,
            rule="termination",
            required=[["sofia.lead@acme.com"]],
            created_at=now,
            expires_at=now + timedelta(hours=24),
        ),
    )


def _post(client: TestClient, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    r = client.post("/slack/interactions", content=body, headers=headers)
    return r.status_code, r.json()


def test_unsigned_oversized_and_malformed_requests_change_nothing(stack: Stack) -> None:
    appr = _approval(stack)
    user = stack.svc.messenger.user_id("sofia.lead@acme.com")  # type: ignore[union-attr]
    body = block_actions_body(
        approval_id=appr.id, plan_hash=appr.plan_hash, slack_user=user, deny=False
    )
    c = stack.intake
    assert _post(c, body, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
    assert _post(c, b"x" * 70_000, sign(SECRET, b"x" * 70_000))[0] == 413
    for bad in (
        b"payload=not-json",
        b"nonsense",
        b"payload=" + json.dumps({"type": "block_actions", "user": {}, "actions": []}).encode(),
        "payload=\u202e".encode(),
    ):
        status, out = _post(c, bad, sign(SECRET, bad))
        assert status == 400, (bad, out)
    bad_value = block_actions_body(
        approval_id="apr-test", plan_hash="", slack_user=user, deny=False
    )
    assert _post(c, bad_value, sign(SECRET, bad_value))[0] == 400
    assert get_approval(stack.svc.ledger, appr.id).decisions == []
    assert list(records(stack.svc.ledger)) == []


def test_a_click_on_an_unknown_or_closed_approval_is_answered_not_recorded(stack: Stack) -> None:
    user = stack.svc.messenger.user_id("sofia.lead@acme.com")  # type: ignore[union-attr]
    body = block_actions_body(
        approval_id="apr-nope", plan_hash="c" * 64, slack_user=user, deny=False
    )
    status, out = _post(stack.intake, body, sign(SECRET, body))
    assert status == 200 and out["recorded"] is False and "no approval" in out["message"]


def test_a_valid_click_is_recorded_once(stack: Stack) -> None:
    appr = _approval(stack)
    user = stack.svc.messenger.user_id("sofia.lead@acme.com")  # type: ignore[union-attr]
    for expected in (True, False):
        body = block_actions_body(
            approval_id=appr.id, plan_hash=appr.plan_hash, slack_user=user, deny=False
        )
        status, out = _post(stack.intake, body, sign(SECRET, body))
        assert status == 200 and out["recorded"] is expected
    assert [d.approver for d in get_approval(stack.svc.ledger, appr.id).decisions] == [
        "sofia.lead@acme.com"
    ]


def test_an_emergency_passes_at_once_and_opens_a_post_hoc_review(stack: Stack) -> None:
    ctx = ApprovalContext(
        runbook="offboard",
        subject="dana.sole@acme.com",
        requester="sec.lead@acme.com",
        reason="security_incident",
        emergency=True,
    )
    res = gate(
        stack.svc,
        ctx,
        plan_hash="d" * 64,
        summary=PlanSummary({"remove_member": 1}),
        flow_run_id="run-1",
    )
    assert res.state is ApprovalState.APPROVED and "post-hoc" in res.reason
    assert [r.action for r in records(stack.svc.ledger)] == ["approval.post_hoc_review_opened"]
    assert any("Emergency" in m["text"] for m in stack.dms("sec.oncall@acme.com"))


def test_a_click_on_the_console_link_is_ignored(stack: Stack) -> None:
    """Slack sends the intake a click on a link button too (``open_console``, the approval
    message's "Open in the console"): answered, nothing recorded."""
    from urllib.parse import urlencode

    from cli.approvals_cmd import from_slack
    from domain.blocks import OPEN_CONSOLE_ACTION

    appr = _approval(stack)
    user = stack.svc.messenger.user_id("sofia.lead@acme.com")  # type: ignore[union-attr]
    payload = {
        "type": "block_actions",
        **from_slack(),
        "user": {"id": user},
        "actions": [{"action_id": OPEN_CONSOLE_ACTION, "type": "button", "value": ""}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    status, out = _post(stack.intake, body, sign(SECRET, body))
    assert status == 200 and out == {"ok": True, "ignored": OPEN_CONSOLE_ACTION}
    assert get_approval(stack.svc.ledger, appr.id).decisions == []
