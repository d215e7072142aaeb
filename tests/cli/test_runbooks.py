"""A runbook command with no Prefect server to run on (``cli.runbooks.require_prefect_server``):
every one that may wait at a gate is refused (exit 2, said plainly, nothing read or written in the
org, no ledger); a dry run still runs, on Prefect's throw-away server; a ``PREFECT_API_URL`` that
does not answer is said plainly, dry run or not. The offboardings run in a person's shell (a
subprocess without the test session's ``PREFECT_*`` settings); the other commands in this process
with Prefect's API URL unset."""

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


def _calls(sandbox: Running) -> int:
    return int(httpx.get(f"{sandbox.url}/_sandbox/requests", timeout=10).json()["count"])


EMERGENCY = ("offboard", "dana.sole@acme.com", "--reason", "security_incident", "--emergency")


def _other_gated_commands(tmp_path: Path, roster: str) -> list[list[str]]:
    """The other runbook commands that may wait at a gate, each with input its own checks
    accept."""
    leavers = tmp_path / "leavers.csv"
    leavers.write_text("email\ndana.sole@acme.com\n")
    joiners = tmp_path / "joiners.csv"
    joiners.write_text("email,projects\nnew.joiner@acme.com,Production=viewer\n")
    return [
        ["offboard", "--csv", str(leavers), "--reason", "termination"],
        ["onboard", "--email", "new.joiner@acme.com", "--project", "Production=viewer"],
        ["onboard", "--csv", str(joiners)],
        ["change", "dana.sole@acme.com", "--org-role", "viewer"],
        ["change-email", "dana.sole@acme.com", "dana.new@acme.com"],
        ["expire"],
        ["hygiene"],
        ["review", "--roster", roster],
    ]


def _run(env: dict[str, str], cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cli.main", *args, "--json"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=420)


def _says_no_server(stderr: str) -> None:
    said = " ".join(stderr.split())  # as printed, wrapped or not
    assert "no Prefect server is reachable" in said, said
    assert "approvals nor Slack clicks could reach it" in said
    assert "`make up` (or `handover up`) in another shell" in said
    assert "set PREFECT_API_URL" in said


def test_a_gated_run_with_no_prefect_server_is_refused_and_changes_nothing(
    sandbox: Running,
    worker_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _calls(sandbox)
    # The offboarding as a person starts it, in a shell of their own; an emergency too: its
    # declaration would be recorded before the run starts.
    offboard = ["offboard", "dana.sole@acme.com", "--reason", "termination"]
    for args in (offboard, [*EMERGENCY, "--requester", "alice.admin@acme.com"]):
        run = _run(_shell(worker_env, tmp_path), tmp_path, args)
        assert run.returncode == 2, (args, run.stdout + run.stderr)
        assert run.stdout == ""
        _says_no_server(run.stderr)
    # Every other one, in this process with Prefect's API URL unset (Prefect's own settings
    # context: its settings are frozen when imported).
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from typer.testing import CliRunner

    from cli.main import app

    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        for args in _other_gated_commands(tmp_path, worker_env["HANDOVER_ROSTER"]):
            out = CliRunner().invoke(app, [*args, "--json"])
            assert out.exit_code == 2, (args, out.output)
            assert out.stdout == ""
            _says_no_server(out.stderr)
    assert _calls(sandbox) == before  # nothing read or written in the org
    ledger = Path(worker_env["HANDOVER_LEDGER_URL"].removeprefix("sqlite:///"))
    assert not ledger.exists()  # no case, no declaration


def test_a_prefect_api_url_that_does_not_answer_is_said_plainly(
    sandbox: Running, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Gated or not: a run cannot start on a server that is not there."""
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    env = _shell(worker_env, tmp_path, PREFECT_API_URL=url)
    before = _calls(sandbox)
    offboard = ["offboard", "dana.sole@acme.com", "--reason", "termination"]
    for args in (offboard, [*offboard, "--dry-run"]):
        run = _run(env, tmp_path, args)
        assert run.returncode == 2, run.stdout + run.stderr
        said = " ".join(run.stderr.split())
        assert f"no Prefect server answers at PREFECT_API_URL={url}" in said, said
    assert _calls(sandbox) == before


def test_a_dry_run_needs_no_prefect_server(
    sandbox: Running, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # Prefect waits 20 s for its throw-away server by default: not enough on a loaded machine.
    env = _shell(worker_env, tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300")
    dry = ["offboard", "dana.sole@acme.com", "--reason", "termination", "--dry-run"]
    run = _run(env, tmp_path, dry)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == "planned" and out["plan"]["steps"]
