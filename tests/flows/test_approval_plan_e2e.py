"""Approvers see the plan itself (issue 14, finding 3): the approval message for
``Production=admin`` names the person, the project and the role, and the same request for
``Production=viewer`` reads differently — in Slack, on the ticket and in ``handover approve``.

Over HTTP against the demo sandbox, the onboarding flow on a real Prefect server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flows.offboard_stack import OffboardStack, _demo_stack
from tests.flows.test_onboard_e2e import start

pytestmark = pytest.mark.slow

SEC = "sec.lead@acme.com"


@pytest.fixture(params=["sandbox", "amplitude"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, prefect_server: str
) -> Iterator[OffboardStack]:
    """Each org backend: on a SCIM-only org (amplitude) the access is a person's task, whose
    words must name it as well."""
    yield from _demo_stack(tmp_path, request.param)


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


ADMIN = re.compile(r"Production=admin|Admin in project Production")
VIEWER = re.compile(r"Production=viewer|Viewer in project Production")


def test_the_message_says_who_gets_which_role_where(stack: OffboardStack) -> None:
    one, two = "pat.one@vendorco.com", "pat.two@vendorco.com"
    admin_text, admin = _asked(stack, one, "admin")
    viewer_text, viewer = _asked(stack, two, "viewer")
    # The line that gives the role names the person, the project and the role.
    # (On a SCIM-only org two lines do: the invitation asked for, and the person's task.)
    said = next(x for x in admin.plan_lines if ADMIN.search(x))
    assert one in said and not [x for x in admin.plan_lines if VIEWER.search(x)]
    assert all(one in x for x in admin.plan_lines if ADMIN.search(x))
    other = next(x for x in viewer.plan_lines if VIEWER.search(x))
    assert two in other and not [x for x in viewer.plan_lines if ADMIN.search(x)]
    assert said in admin_text and other in viewer_text and not ADMIN.search(viewer_text)
    assert "production" in admin_text  # the org it runs in
    # What the CLI and the ticket show comes from the same record.
    from cli.approvals_cmd import plan_shown

    shown = plan_shown(admin)
    assert said in shown and admin.plan_hash in shown
    assert not ADMIN.search(plan_shown(viewer))
