"""The local stack (``cli.stack``): its Prefect credential, made once and kept 0600, and given to
another shell's command only for a loopback ``PREFECT_API_URL`` that has no credential yet; the
state file of ``handover up`` (no secret in it, replaced whole, removed by its own process only)
and a stale one reported, not used. A shell joining a live stack: tests/cli/test_up.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cli.deploy import REPO
from cli.stack import (
    AUTH_FILE,
    STACK_FILE,
    StackState,
    api_auth_string,
    free_port,
    join_local_stack,
    join_running_stack,
    public_settings,
    read_stack_state,
    remove_stack_state,
    write_stack_state,
)


def test_the_credential_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = api_auth_string(tmp_path)
    user, _, password = first.partition(":")
    assert user == "handover" and len(password) >= 40
    assert stat.S_IMODE((tmp_path / AUTH_FILE).stat().st_mode) == 0o600
    assert api_auth_string(tmp_path) == first  # a restarted stack keeps it
    other = tmp_path / "other"
    other.mkdir()
    assert api_auth_string(other) != first  # each stack its own


@pytest.mark.parametrize(
    ("url", "preset", "file", "joined"),
    [
        ("http://127.0.0.1:4200/api", None, True, True),
        ("http://localhost:4200/api", None, True, True),
        # A remote server's credential comes from the environment, never from a local file.
        ("https://prefect.acme.example/api", None, True, False),
        ("http://127.0.0.1:4200/api", "handover:from-the-environment", True, False),
        ("http://127.0.0.1:4200/api", None, False, False),
        ("", None, True, False),
    ],
)
def test_another_shell_joins_only_a_loopback_stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    preset: str | None,
    file: bool,
    joined: bool,
) -> None:
    home = tmp_path / ".handover"
    (home / "prefect").mkdir(parents=True)
    if file:
        made = api_auth_string(home / "prefect")
    monkeypatch.setenv("PREFECT_API_URL", url)
    if preset is None:
        monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", preset)
    assert join_local_stack(home) is joined
    if joined:
        assert os.environ["PREFECT_API_AUTH_STRING"] == made
    else:
        assert os.environ.get("PREFECT_API_AUTH_STRING") == preset


def test_the_state_file_keeps_no_secret() -> None:
    """Only plain settings are written: no token, no key, no password in a ledger URL, no
    HANDOVER_EXTRA_ORGS (it carries the other orgs' tokens)."""
    kept = public_settings(
        {
            "HANDOVER_ORG_URL": "http://127.0.0.1:8800",
            "HANDOVER_SANDBOX": "1",
            "HANDOVER_LEDGER_URL": "postgresql://handover:hunter2@db/handover",
            "HANDOVER_ORG_ADMIN_TOKEN": "a-real-token",
            "HANDOVER_SLACK_SIGNING_SECRET": "a-real-secret",
            "HANDOVER_AUDIT_KEY": "a-real-key",
            "HANDOVER_EXTRA_ORGS": '{"qa": {"url": "http://qa", "scim_token": "t"}}',
            "PREFECT_API_AUTH_STRING": "handover:secret",
        }
    )
    assert kept == {"HANDOVER_ORG_URL": "http://127.0.0.1:8800", "HANDOVER_SANDBOX": "1"}
    ok = public_settings({"HANDOVER_LEDGER_URL": "sqlite:////tmp/ledger.db"})
    assert ok == {"HANDOVER_LEDGER_URL": "sqlite:////tmp/ledger.db"}


def _state(pid: int, api: str) -> StackState:
    return StackState(
        pid=pid,
        started="2026-12-04T16:00:00+00:00",
        prefect_api_url=api,
        prefect_ui_url=api.removesuffix("/api"),
        intake_url="http://127.0.0.1:8801",
        settings={"HANDOVER_ORG_URL": "http://127.0.0.1:8800"},
    )


def test_the_state_file_is_replaced_whole_and_removed_only_by_its_own_process(
    tmp_path: Path,
) -> None:
    first = write_stack_state(tmp_path, _state(101, "http://127.0.0.1:4200/api"))
    assert first == tmp_path / STACK_FILE
    assert read_stack_state(tmp_path) == _state(101, "http://127.0.0.1:4200/api")
    write_stack_state(tmp_path, _state(202, "http://127.0.0.1:4300/api"))
    assert read_stack_state(tmp_path) == _state(202, "http://127.0.0.1:4300/api")
    assert [p.name for p in tmp_path.iterdir()] == [STACK_FILE]  # no temporary file left
    remove_stack_state(tmp_path, 101)  # an older `up` stopping: not its file
    assert (tmp_path / STACK_FILE).exists()
    remove_stack_state(tmp_path, 202)
    assert not (tmp_path / STACK_FILE).exists()


def _shell(home: Path) -> dict[str, str]:
    """A person's shell: none of the test session's Prefect or Handover settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env.update({"PYTHONPATH": str(REPO), "HANDOVER_HOME": str(home), "HANDOVER_SANDBOX": "1"})
    return env


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


@pytest.mark.parametrize("why", ["process gone", "server silent"])
def test_a_stale_state_file_is_reported_and_not_used(tmp_path: Path, why: str) -> None:
    """A state file whose ``handover up`` died, or whose Prefect server does not answer, is
    said to be stale (and the command goes on without it: here it needs no server). The file
    is read from HANDOVER_HOME, wherever the command runs."""
    home = tmp_path / "stack-home"
    home.mkdir()
    silent = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    pid = _dead_pid() if why == "process gone" else os.getpid()
    write_stack_state(home, _state(pid, silent))
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "whoami"],
        cwd=tmp_path,
        env=_shell(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = {"process gone": "is no longer running", "server silent": "does not answer"}[why]
    assert f"{home / STACK_FILE} is stale" in run.stderr and said in run.stderr, run.stderr
    assert f"(pid {pid})" in run.stderr
    assert "joined" not in run.stderr


def test_joining_a_live_stack_keeps_the_settings_this_shell_sets_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str
) -> None:
    """A live stack (its process runs, its Prefect server answers): this process takes its
    Prefect API and the settings it does not set itself; its own win."""
    state = _state(os.getpid(), prefect_server)
    state.settings["HANDOVER_JIRA_URL"] = "http://127.0.0.1:8800/jira"
    write_stack_state(tmp_path, state)
    monkeypatch.setenv("PREFECT_API_URL", "")  # restored afterwards
    monkeypatch.setenv("HANDOVER_ORG_URL", "http://127.0.0.1:9999")  # this shell's own
    monkeypatch.delenv("HANDOVER_JIRA_URL", raising=False)
    said = join_running_stack(tmp_path)
    assert (
        said
        == f"joined the stack of 'handover up' (pid {os.getpid()}): Prefect at {prefect_server}"
    )
    assert os.environ["PREFECT_API_URL"] == prefect_server
    assert os.environ["HANDOVER_ORG_URL"] == "http://127.0.0.1:9999"
    assert os.environ["HANDOVER_JIRA_URL"] == "http://127.0.0.1:8800/jira"


def test_a_joining_shell_is_told_which_secret_settings_of_the_stack_it_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str
) -> None:
    """A stack whose ledger URL carries a password did not write it down: the shell is told to
    set it (or not, once it has)."""
    state = _state(os.getpid(), prefect_server)
    write_stack_state(tmp_path, replace(state, withheld=["HANDOVER_LEDGER_URL"]))
    monkeypatch.setenv("PREFECT_API_URL", "")  # restored afterwards
    monkeypatch.delenv("HANDOVER_LEDGER_URL", raising=False)
    said = join_running_stack(tmp_path)
    assert said is not None and said.startswith("joined the stack of 'handover up'")
    assert "note: the stack's HANDOVER_LEDGER_URL holds a secret" in said
    monkeypatch.setenv("HANDOVER_LEDGER_URL", "postgresql+psycopg://handover:pw@127.0.0.1/ledger")
    said = join_running_stack(tmp_path)
    assert said is not None and "note" not in said


def test_with_its_own_prefect_api_url_a_command_reads_no_state_file(tmp_path: Path) -> None:
    home = tmp_path / ".handover"
    home.mkdir()
    write_stack_state(home, _state(_dead_pid(), f"http://127.0.0.1:{free_port()}/api"))
    env = {**_shell(home), "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "whoami"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "stack.json" not in run.stderr and "joined" not in run.stderr, run.stderr
