"""The CLI as a new user meets it (a subprocess against a demo sandbox and the session's
Prefect server): a bad request says what is wrong in the terminal, not only in ``--json``;
Prefect's own INFO lines stay out of the terminal unless ``--verbose``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.deploy import REPO
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WRONG = "project 'Prodution' does not exist in the org"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo"))
    yield sb
    sb.stop()


def _onboard(sandbox: LiveSandbox, home: Path, *first: str) -> subprocess.CompletedProcess[str]:
    url = sandbox.url
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HANDOVER_ORG_URL": url,
        "HANDOVER_IDP_URL": f"{url}/idp/scim/v2",
        "HANDOVER_SLACK_API_URL": f"{url}/slack/api/",
        "HANDOVER_JIRA_URL": f"{url}/jira",
        "HANDOVER_HOME": str(home),
    }
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    cmd = [sys.executable, "-m", "cli.main", *first, "onboard", "--email", "x@acme.com"]
    cmd += ["--project", "Prodution=viewer", "--dry-run", "--requester", "alice.admin@acme.com"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_a_bad_request_says_why_and_prefect_stays_quiet(
    sandbox: LiveSandbox, tmp_path: Path, prefect_server: str
) -> None:
    quiet = _onboard(sandbox, tmp_path)
    said = quiet.stdout + quiet.stderr
    assert quiet.returncode == 2, said
    assert WRONG in said and "Development, Production, Staging" in said
    assert "| INFO" not in said and "Beginning flow run" not in said
    assert "telemetry" not in said.lower()

    loud = _onboard(sandbox, tmp_path, "--verbose")
    assert loud.returncode == 2
    assert WRONG in loud.stderr and "| INFO" in loud.stdout + loud.stderr
