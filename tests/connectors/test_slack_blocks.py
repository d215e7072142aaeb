"""Block Kit builders (:mod:`domain.blocks`): pure checks against slack-sdk's own Block Kit
models and limits, then every message posted through :class:`SlackMessenger` to the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from connectors.slack import SlackMessenger
from domain import blocks as bk
from tests.conftest import LiveSandbox
from tests.connectors.people_fixtures import (
    add_slack_channel,
    add_slack_user,
    settings_for,
    slack_messages,
)

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def approval(**overrides: Any) -> list[dict[str, Any]]:
    kw: dict[str, Any] = {
        "approval_id": "apr_7f3a",
        "runbook": "offboard",
        "subject": "bob@example.com",
        "plan_hash": "9c1f2e3d4b5a69788796a5b4c3d2e1f0",
        "counts_by_kind": {"transfer_assets": 12, "remove_member": 1, "rotate_key": 0},
        "warnings": ["receiver carol@example.com has not logged in for 45 days"],
        "ticket_url": "http://127.0.0.1:8800/jira/browse/IT-1",
    }
    kw.update(overrides)
    return bk.approval_request_blocks(**kw)


def every_message() -> dict[str, list[dict[str, Any]]]:
    return {
        "approval": approval(),
        "decision": bk.decision_blocks(
            approval_id="apr_7f3a",
            runbook="offboard",
            subject="bob@example.com",
            plan_hash="9c1f2e3d4b5a",
            decision="approved",
            decided_by="alice@example.com",
            decided_at=AT,
            comment="ok, <b>go</b>",
        ),
        "task": bk.human_task_blocks(
            task_id="task_42",
            title="Transfer dashboards of bob@example.com",
            instructions="Open *Settings → Content* and transfer every dashboard to carol.",
        ),
        "task_done": bk.task_done_blocks(
            task_id="task_42", title="Transfer dashboards", done_by="carol@example.com", done_at=AT
        ),
        "summary": bk.summary_blocks(
            runbook="offboard",
            subject="bob@example.com",
            status="succeeded",
            run_id="run-1",
            effects={"noop": 2, "created": 1, "deleted": 3},
            verification={"member gone": True, "idp user inactive": True, "keys rejected": False},
            warnings=["one warning"],
            ticket_url="http://127.0.0.1:8800/jira/browse/IT-1",
        ),
    }


def actions(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def text_of(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def mrkdwn_of(blocks: list[dict[str, Any]]) -> str:
    """Every mrkdwn text (plain_text, as in headers, is never interpreted by Slack)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return "\n".join(found)


@pytest.mark.parametrize("name", list(every_message()))
def test_every_message_is_valid_block_kit_and_plain_json(name: str) -> None:
    blocks = every_message()[name]
    assert json.loads(json.dumps(blocks)) == blocks
    assert 0 < len(blocks) <= 50
    for b in blocks:
        Block.parse(b).validate_json()  # type: ignore[union-attr]  # slack-sdk's own limits


def test_approval_buttons_carry_the_approval_id() -> None:
    blocks = approval()
    [row] = [b for b in blocks if b["type"] == "actions"]
    assert row["block_id"] == bk.APPROVAL_BLOCK_ID
    buttons = {e["action_id"]: e for e in row["elements"]}
    assert set(buttons) == {"approve", "deny"}
    assert {e["value"].split(":")[0] for e in buttons.values()} == {"apr_7f3a"}
    assert buttons["approve"]["style"] == "primary" and buttons["deny"]["style"] == "danger"
    # People see the short hash; the full one rides in the buttons' values only.
    text = text_of([b for b in blocks if b["type"] != "actions"])
    assert "9c1f2e3d4b5a" in text and "9c1f2e3d4b5a6" not in text
    assert buttons["approve"]["value"] == "apr_7f3a:9c1f2e3d4b5a69788796a5b4c3d2e1f0"
    assert "transfer_assets: 12" in text and "rotate_key" not in text  # zero counts left out
    assert "<http://127.0.0.1:8800/jira/browse/IT-1|IT-1>" in text
    assert "45 days" in text


def test_the_approval_links_to_its_console_page_beside_the_buttons() -> None:
    url = "http://127.0.0.1:8801/console/approvals/apr_7f3a"
    blocks = approval(console_url=url)
    for b in blocks:
        Block.parse(b).validate_json()  # type: ignore[union-attr]
    [link] = [b["accessory"] for b in blocks if "accessory" in b]
    assert link["url"] == url and link["text"]["text"] == "Open in the console"
    assert link["action_id"] == bk.OPEN_CONSOLE_ACTION
    # The Approve and Deny row is as it was; without a console URL there is no link.
    assert [e["action_id"] for e in actions(blocks)] == ["approve", "deny"]
    assert not [b for b in approval() if "accessory" in b]


def test_outside_text_is_escaped_and_clipped() -> None:
    blocks = approval(
        subject="<!channel> & co",
        warnings=[f"warning {i} " + "x" * 400 for i in range(40)],
        ticket_url=None,
    )
    text = mrkdwn_of(blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; co" in text
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "Approval needed: offboard <!channel> & co",
    }
    [warned] = [
        b["text"]["text"] for b in blocks if "Warnings" in b.get("text", {}).get("text", "")
    ]
    shown = warned.count("• warning")
    assert 0 < shown < 40 and warned.endswith(f"…and {40 - shown} more")
    assert "Ticket" not in text
    for b in blocks:
        Block.parse(b).validate_json()  # type: ignore[union-attr]
    header = bk.approval_request_blocks(
        approval_id="a",
        runbook="offboard",
        subject="x" * 500,
        plan_hash="h",
        counts_by_kind={},
        warnings=[],
        ticket_url=None,
    )
    assert len(header[0]["text"]["text"]) == bk.HEADER_MAX
    assert "_no changes_" in text_of(header)


def test_decision_has_who_and_when_and_no_buttons() -> None:
    blocks = every_message()["decision"]
    assert actions(blocks) == []
    text = text_of(blocks)
    assert "*Approved* by alice@example.com on 2026-03-02 09:30 UTC" in text
    assert "&lt;b&gt;go&lt;/b&gt;" in text
    local = datetime(2026, 3, 2, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    denied = bk.decision_blocks(
        approval_id="a",
        runbook="onboard",
        subject="n@example.com",
        plan_hash="h",
        decision="denied",
        decided_by="sec.lead@example.com",
        decided_at=local,
    )
    assert ":no_entry: *Denied* by sec.lead@example.com on 2026-03-02 09:30 UTC" in text_of(denied)


def test_human_task_has_done_and_cant_do_buttons_carrying_the_task_id() -> None:
    blocks = every_message()["task"]
    [done, cant] = actions(blocks)
    assert (done["action_id"], done["value"]) == ("task_done", "task_42")
    assert (cant["action_id"], cant["value"]) == ("task_cant", "task_42")
    assert "*Settings → Content*" in text_of(blocks)  # mrkdwn kept
    assert actions(every_message()["task_done"]) == []


def test_cant_do_opens_a_modal_that_requires_a_reason() -> None:
    view = bk.cant_reason_view(task_id="task_42", title="Transfer <content>")
    assert (view["type"], view["callback_id"], view["private_metadata"]) == (
        "modal",
        "task_cant",
        "task_42",
    )
    (field,) = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == field["element"]["action_id"] == "reason"
    assert not field.get("optional", False)
    assert "&lt;content&gt;" in text_of(view["blocks"])  # escaped


def test_summary_lists_effects_in_order_and_failed_checks() -> None:
    text = text_of(every_message()["summary"])
    assert "1 created · 3 deleted · 2 noop" in text
    assert "2/3 checks passed" in text and ":x: keys rejected" in text
    assert "member gone" not in text


@pytest.mark.slow
def test_slack_accepts_every_message(live: LiveSandbox) -> None:
    m = SlackMessenger(settings_for(live))
    add_slack_user(live, "approver@example.com", "Approver")
    cid = add_slack_channel(live, "it-access")
    sent = every_message()
    ref = m.dm("approver@example.com", "Approval needed", sent["approval"])
    m.update(ref, "Approved", sent["decision"])
    task = m.post("#it-access", "Task", sent["task"])
    m.update(task, "Done", sent["task_done"])
    m.post("#it-access", "Summary", sent["summary"])

    [dm] = slack_messages(live, user_email="approver@example.com")
    assert dm["blocks"] == sent["decision"] and dm["history"][0]["blocks"] == sent["approval"]
    posted = slack_messages(live, channel=cid)
    assert [p["blocks"] for p in posted] == [sent["task_done"], sent["summary"]]
