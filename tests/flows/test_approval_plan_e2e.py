"""Approvers see the plan itself (issue 14, finding 3): the approval message for
``Production=admin`` names the person, the project and the role, and the same request for
``Production=viewer`` reads differently — in Slack, on the ticket and in ``handover approve``.

Over HTTP against the demo sandbox, the onboarding flow on a real Prefect server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.flows.offboard_stack import OffboardStack, demo_stack
from tests.flows.test_onboard_e2e import start

pytestmark = pytest.mark.slow

SEC = "sec.lead@acme.com"


stack = pytest.fixture(name="stack")(demo_stack)


def _asked(stack: OffboardStack, email: str, role: str) -> tuple[str, Any]:
    """Onboard ``email`` with Production=``role``; the text of security's approval message
    (every block's text) once the run waits, and the approval."""
    run = start(
        stack,
        email=email,
        projects={"Production": role},
        requester="sofia.lead@acme.com",
        justification="quarterly analysis",
    )
    appr = stack.paused(email)
    dm = [d for d in stack.dms(SEC) if appr.id in json.dumps(d["blocks"])][-1]
    text = json.dumps(dm["blocks"])
    stack.click(appr, SEC, deny=True)
    assert run.wait()["status"] == "denied"
    return text, appr


def test_the_message_says_who_gets_which_role_where(stack: OffboardStack) -> None:
    admin_text, admin = _asked(stack, "pat.admin-grant@vendorco.com", "admin")
    viewer_text, viewer = _asked(stack, "pat.viewer-grant@vendorco.com", "viewer")
    said = "pat.admin-grant@vendorco.com is invited as org viewer: Production=admin"
    assert said in admin_text
    assert "Production=viewer" in viewer_text and "Production=admin" not in viewer_text
    assert "production" in admin_text  # the org it runs in
    # What the CLI and the ticket show comes from the same record.
    assert admin.plan_lines == [said] or said in admin.plan_lines
    from cli.approvals_cmd import plan_shown

    shown = plan_shown(admin)
    assert said in shown and admin.plan_hash in shown
    assert said not in plan_shown(viewer)
