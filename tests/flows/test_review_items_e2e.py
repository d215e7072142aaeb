"""A review approval covers exactly its approved items (issue 14, finding 1): each item once,
for the person and org it names, for a limited time; naming an approval id alone grants nothing.

Over HTTP against the demo sandbox on a real Prefect server: security approves a review, whose
offboardings use their items; then an attacker with access to the ``offboard`` deployment's
parameters tries to offboard somebody else on that approval, and to use a used item again.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.flows.offboard_stack import OffboardStack, demo_stack
from tests.flows.test_review_e2e import SECURITY, _approvals, _first_review, start_review

pytestmark = pytest.mark.slow

FRANK = "frank.former@acme.com"
MIKE = "mike.stale@acme.com"  # not a finding of the review: nobody approved his removal


stack = pytest.fixture(name="stack")(demo_stack)


def _refused(stack: OffboardStack, **params: Any) -> str:
    """Run an offboarding expected to be refused before it writes; the reason."""
    run = stack.start(**params)
    run.thread.join(180)
    assert not run.thread.is_alive()
    assert run.error, f"the offboarding was not refused: {run.result}"
    return str(run.error[0])


def test_a_review_approval_covers_only_its_items_once(stack: OffboardStack) -> None:
    run = start_review(stack, approve="bulk", report_dir=str(stack.tmp / "reports"))
    appr = stack.paused(_first_review(stack).subject)
    assert stack.click(appr, SECURITY).json()["recorded"] is True
    out = run.wait(300)
    assert out["status"] == "done"
    item = {f["subject"]: f["id"] for f in out["findings"]}[FRANK]
    assert stack.member(FRANK) is None
    before = stack.seq()

    # Somebody else on the review's approval: with frank's item, or with none.
    why = _refused(
        stack, email=MIKE, reason="inactivity", review_approval=appr.id, review_item=item
    )
    assert f"is about {FRANK}" in why
    why = _refused(stack, email=MIKE, reason="inactivity", review_approval=appr.id)
    assert "review_item" in why
    assert stack.member(MIKE) is not None
    assert not [a for a in _approvals(stack) if a.subject == MIKE]  # nor asked anybody
    assert [(w["method"], w["path"]) for w in stack.writes(before)] == []

    # Frank comes back (invited again by hand); his used item does not remove him again.
    r = httpx.post(
        f"{stack.url}/scim/1/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": FRANK},
        headers={"Authorization": "Bearer sandbox-scim-key"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    before = stack.seq()
    why = _refused(
        stack, email=FRANK, reason="termination", review_approval=appr.id, review_item=item
    )
    assert "was used already" in why
    assert stack.member(FRANK) is not None
    assert [(w["method"], w["path"]) for w in stack.writes(before)] == []
