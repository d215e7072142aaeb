"""A runbook command with no Prefect server to run on (``cli.runbooks.require_prefect_server``):
one that may wait at a gate is refused (exit 2, said plainly, nothing read or written in the org,
no ledger); a dry run still runs, on Prefect's throw-away server. Each is a person's shell: a
subprocess without the test session's ``PREFECT_*`` settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli.deploy import REPO
from cli.stack import Running, free_port

pytestmark = pytest.mark.timeout(600)


def _shell(worker_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    """No ``PREFECT_API_URL`` and no ``handover up`` here; the sandbox's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env.update(worker_env)
    # Prefect's own files (a throw-away server's database) in the test's directory.
    env.update({"PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect"), **extra})
    return env


def _offboard(
    env: dict[str, str], cwd: Path, *more: str, reason: str = "termination"
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cli.main", "offboard", "dana.sole@acme.com"]
    cmd += ["--reason", reason, "--json", *more]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=420)


def _calls(sandbox: Running) -> int:
    return int(httpx.get(f"{sandbox.url}/_sandbox/requests", timeout=10).json()["count"])


@pytest.mark.parametrize("how", ["no server", "silent server"])
def test_a_gated_run_with_no_prefect_server_is_refused_and_changes_nothing(
    sandbox: Running, worker_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    extra = {}
    if how == "silent server":
        extra["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"  # nothing listens
    env = _shell(worker_env, tmp_path, **extra)
    before = _calls(sandbox)
    # An emergency too: its declaration would be recorded before the run starts.
    emergency = ["--emergency", "--requester", "alice.admin@acme.com"]
    for reason, more in (("termination", []), ("security_incident", emergency)):
        run = _offboard(env, tmp_path, *more, reason=reason)
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stdout == ""
        said = " ".join(run.stderr.split())  # as printed, wrapped or not
        if how == "no server":
            assert "no Prefect server is reachable" in said
            assert "approvals nor Slack clicks could reach it" in said
            assert "`make up` (or `handover up`) in another shell" in said
            assert "set PREFECT_API_URL" in said
        else:
            url = extra["PREFECT_API_URL"]
            assert f"no Prefect server answers at PREFECT_API_URL={url}" in said
    assert _calls(sandbox) == before  # nothing read or written in the org
    ledger = Path(worker_env["HANDOVER_LEDGER_URL"].removeprefix("sqlite:///"))
    assert not ledger.exists()  # no case, no declaration


def test_a_dry_run_needs_no_prefect_server(
    sandbox: Running, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # Prefect waits 20 s for its throw-away server by default: not enough on a loaded machine.
    env = _shell(worker_env, tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300")
    run = _offboard(env, tmp_path, "--dry-run")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == "planned" and out["plan"]["steps"]
