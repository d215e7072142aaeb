"""A signed Slack click counts only from the configured workspace and app, from a full member
of it (not deactivated, not a guest, not a bot) whose Slack email is an active IdP user's
address — and is recorded under that user's canonical address (approvals/people.py).

Real HTTP throughout: the demo sandbox over loopback (its Slack, its SCIM IdP), the intake
in-process. Each refused click records nothing: no decision, no audit event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.approvals_cmd import block_actions_body, from_slack, sign
from domain.blocks import CANT_VIEW
from domain.records import ApprovalRequest
from intake.app import create_intake
from ledger.approvals import create_approval, get_approval
from ledger.audit import records
from sandbox.app import create_app
from tests.approvals.stack import Stack, make_stack
from tests.conftest import LiveSandbox, serve

SECRET = "sandbox-signing-secret"
SOFIA = "sofia.lead@acme.com"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=4))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path) -> Stack:
    return make_stack(sandbox, tmp_path)


def _approval(stack: Stack, approvers: list[str]) -> ApprovalRequest:
    now = stack.svc.clock()
    return create_approval(
        stack.svc.ledger,
        ApprovalRequest(
            id="apr-trust",
            runbook="offboard",
            subject="dana.sole@acme.com",
            requester="hr.partner@acme.com",
            plan_hash="c" * 64,
            rule="termination",
            required=[approvers],
            created_at=now,
            expires_at=now + timedelta(hours=24),
        ),
    )


def _slack_id(stack: Stack, email: str) -> str:
    """The Slack user id of ``email`` (asked before any change to the account)."""
    uid = stack.svc.messenger.user_id(email)  # type: ignore[union-attr]
    assert uid, email
    return uid


def _set_standing(stack: Stack, ref: str, **standing: bool) -> dict[str, Any]:
    """A Slack admin deactivating an account or making it a guest (the sandbox's control)."""
    r = httpx.patch(f"{stack.sandbox.url}/_sandbox/slack/users/{ref}", json=standing, timeout=10)
    r.raise_for_status()
    user: dict[str, Any] = r.json()["user"]
    return user


def _add_slack_user(stack: Stack, email: str) -> str:
    r = httpx.post(
        f"{stack.sandbox.url}/_sandbox/slack/users",
        json={"email": email, "real_name": email.split("@")[0]},
        timeout=10,
    )
    r.raise_for_status()
    return str(r.json()["user"]["id"])


def _click(stack: Stack, appr: ApprovalRequest, slack_user: str, **where: str) -> Any:
    body = block_actions_body(
        approval_id=appr.id, plan_hash=appr.plan_hash, slack_user=slack_user, deny=False, **where
    )
    return stack.intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))


def _nothing_recorded(stack: Stack, appr: ApprovalRequest) -> None:
    assert get_approval(stack.svc.ledger, appr.id).decisions == []
    assert list(records(stack.svc.ledger)) == []


def test_a_click_from_another_workspace_or_app_is_refused(stack: Stack) -> None:
    appr = _approval(stack, [SOFIA])
    sofia = _slack_id(stack, SOFIA)
    for where, said in (
        ({"team_id": "T0ELSEWHERE"}, "workspace"),
        ({"app_id": "A0OTHERAPP"}, "app"),
    ):
        r = _click(stack, appr, sofia, **where)
        assert r.status_code == 403 and said in r.json()["error"], r.text
    _nothing_recorded(stack, appr)


def test_a_click_without_workspace_or_app_is_refused(stack: Stack) -> None:
    """A payload naming no workspace or app (a body signed with a leaked secret, say) is not
    taken as coming from ours."""
    appr = _approval(stack, [SOFIA])
    payload = {
        "type": "block_actions",
        "user": {"id": _slack_id(stack, SOFIA)},
        "trigger_id": f"{time.time_ns()}.sandbox",
        "actions": [{"action_id": "approve", "value": f"{appr.id}:{appr.plan_hash}"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    r = stack.intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))
    assert r.status_code == 403, r.text
    _nothing_recorded(stack, appr)


@pytest.mark.parametrize(
    ("email", "standing", "said"),
    [
        ("gina.groups@acme.com", {"is_restricted": True}, "guest"),
        ("jon.smith@acme.com", {"is_ultra_restricted": True}, "guest"),
        ("mike.stale@acme.com", {"deleted": True}, "deactivated"),
        ("raj.admin@acme.com", {"is_bot": True}, "bot"),
    ],
)
def test_a_guest_a_deactivated_account_or_a_bot_cannot_decide(
    stack: Stack, email: str, standing: dict[str, bool], said: str
) -> None:
    """Each is an IdP user and an approver here: only Slack's standing refuses them."""
    appr = _approval(stack, [email])
    uid = _slack_id(stack, email)
    shown = _set_standing(stack, uid, **standing)
    try:
        # What Slack's users.info says, faithfully: the flag set, every other one present.
        for flag in ("deleted", "is_bot", "is_restricted", "is_ultra_restricted"):
            assert isinstance(shown[flag], bool), shown
        r = _click(stack, appr, uid)
        assert r.status_code == 403 and said in r.json()["error"], r.text
        _nothing_recorded(stack, appr)
    finally:
        _set_standing(stack, uid, **{k: False for k in standing})


def test_a_slack_email_the_idp_does_not_know_cannot_decide(stack: Stack) -> None:
    appr = _approval(stack, ["outsider@acme.com", SOFIA])
    r = _click(stack, appr, _add_slack_user(stack, "outsider@acme.com"))
    assert r.status_code == 403 and "IdP" in r.json()["error"], r.text
    _nothing_recorded(stack, appr)


def test_a_person_the_idp_deactivated_cannot_decide(stack: Stack) -> None:
    """frank.former is still in Slack, but the IdP deactivated him."""
    appr = _approval(stack, ["frank.former@acme.com"])
    r = _click(stack, appr, _slack_id(stack, "frank.former@acme.com"))
    assert r.status_code == 403 and "active IdP user" in r.json()["error"], r.text
    _nothing_recorded(stack, appr)


def test_every_button_and_the_modal_go_through_the_same_check(stack: Stack) -> None:
    """Done, Can't do, its modal's Send and Extend from another workspace: refused before
    anything is read or started."""
    uid = _slack_id(stack, SOFIA)
    started: list[dict[str, Any]] = []
    intake = TestClient(
        create_intake(stack.svc, extend_launcher=lambda p: started.append(p) or "run")
    )
    elsewhere = from_slack(team_id="T0ELSEWHERE")
    payloads = [
        {"type": "block_actions", "actions": [{"action_id": a, "value": v}]}
        for a, v in (("task_done", "task-1-x"), ("task_cant", "task-1-x"), ("extend", "grant:1"))
    ] + [
        {
            "type": "view_submission",
            "view": {"callback_id": CANT_VIEW, "private_metadata": "task-1-x"},
        }
    ]
    for p in payloads:
        body = urlencode(
            {"payload": json.dumps({**p, **elsewhere, "user": {"id": uid}, "trigger_id": "t"})}
        ).encode()
        r = intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))
        assert r.status_code == 403 and "workspace" in r.json()["error"], (p, r.text)
    assert list(records(stack.svc.ledger)) == [] and started == []


def test_a_click_is_recorded_under_the_idp_address_with_slacks_word_for_it(
    stack: Stack,
) -> None:
    """A Slack account whose email is an alias of alice's IdP user decides as alice, and the
    audit event names the Slack user and workspace that vouched for the click."""
    appr = _approval(stack, ["alice.admin@acme.com"])
    uid = _add_slack_user(stack, "alice@acme.com")
    r = _click(stack, appr, uid)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    [d] = get_approval(stack.svc.ledger, appr.id).decisions
    assert d.approver == "alice.admin@acme.com" and d.auth == "slack"
    [event] = [e for e in records(stack.svc.ledger) if e.after and e.after.get("auth")]
    assert event.after is not None
    assert event.after["auth_subject"] == uid and event.after["auth_issuer"] == "T0SANDBOX1"
