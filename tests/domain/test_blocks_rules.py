"""The approval message's parts (domain/blocks.py), each as its own small table of cases.

``tests/connectors/test_slack_blocks.py`` checks whole messages against slack-sdk's models and
the sandbox; here the parts :func:`~domain.blocks.approval_request_blocks` is built from.
"""

from __future__ import annotations

import pytest

from domain.blocks import (
    APPROVAL_BLOCK_ID,
    APPROVE_ACTION,
    DENY_ACTION,
    approval_actions,
    parse_decision_value,
    planned_steps,
)


@pytest.mark.parametrize(
    ("counts", "lines"),
    [
        pytest.param({}, [], id="none"),
        pytest.param({"rotate_key": 0}, [], id="zero-left-out"),
        pytest.param(
            {"transfer_assets": 12, "remove_member": 1, "rotate_key": 0},
            ["remove_member: 1", "transfer_assets: 12"],
            id="by-kind",
        ),
    ],
)
def test_planned_steps(counts: dict[str, int], lines: list[str]) -> None:
    assert planned_steps(counts) == lines


@pytest.mark.parametrize(
    ("approval_id", "plan_hash"),
    [
        pytest.param("apr_7f3a", "9c1f2e3d4b5a", id="plain"),
        pytest.param("apr_7f3a", "f" * 64, id="the-whole-hash-not-the-short-one"),
    ],
)
def test_approval_actions(approval_id: str, plan_hash: str) -> None:
    block = approval_actions(approval_id, plan_hash)
    assert (block["type"], block["block_id"]) == ("actions", APPROVAL_BLOCK_ID)
    buttons = [(b["text"]["text"], b["action_id"], b["style"]) for b in block["elements"]]
    assert buttons == [("Approve", APPROVE_ACTION, "primary"), ("Deny", DENY_ACTION, "danger")]
    values = {b["value"] for b in block["elements"]}
    assert values == {f"{approval_id}:{plan_hash}"}
    assert parse_decision_value(values.pop()) == (approval_id, plan_hash)  # what the intake reads
