"""``handover demo --interactive`` (what ``make demo DEMO_ARGS=--interactive`` runs) as a person
uses it: the stories run, the demo prints the console's link to a Production=admin request
whose last seat is security's, and waits; the person signs in at the sandbox IdP and approves
in the console; the demo says who decided, and stops cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cli.deploy import REPO
from tests.cli.deploy_stack import wait_for
from tests.intake.console.world import Person

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/console/approvals/(apr-[0-9a-f]+)")


def test_the_interactive_demo_waits_for_a_decision_made_in_the_console(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env.update({"PYTHONPATH": str(REPO), "COLUMNS": "200", "PREFECT_UI_ENABLED": "false"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--interactive"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        found = wait_for(
            "the console's link",
            lambda: LINK.search("".join(out)) or proc.poll() is not None,
            timeout=420,
        )
        printed = "".join(out)
        assert isinstance(found, re.Match), printed
        assert "waiting for your decision in the browser" in printed or wait_for(
            "the wait", lambda: "waiting for your decision" in "".join(out), timeout=30
        )
        intake, approval = found.group(1), found.group(2)
        assert f"web console: {intake}/console/" in printed
        sec = Person(intake, "sec.lead@acme.com")
        page = sec.get(f"/console/approvals/{approval}")
        assert page.status_code == 200, page.text
        plan = re.search(r'name="plan_hash" value="([0-9a-f]{64})"', page.text)
        assert plan, page.text
        decided = sec.post(
            f"/console/approvals/{approval}",
            {
                "csrf": sec.csrf_of(page, f"/console/approvals/{approval}"),
                "plan_hash": plan.group(1),
                "decision": "approve",
                "comment": "reviewed in the demo",
            },
        )
        assert decided.status_code == 303, decided.text
        assert proc.wait(120) == 0, "".join(out)
        printed = "".join(out)
        assert f"approval {approval}: approved (in the console: sec.lead@acme.com)" in printed
        assert "demo done" in printed
    finally:
        if proc.poll() is None:
            proc.kill()
