"""``handover up`` as a person starts it (a subprocess in a fresh directory): its Prefect server
listens on loopback only and refuses every API call without the credential that ``up`` made and
keeps 0600 under ``.handover/prefect``; with it, the deployments are there, and a signed HR event
sent to the intake becomes a flow run (so the intake, the worker and the runs all authenticate).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.deploy import REPO
from cli.postgres import cluster_dir, pg_bin
from cli.stack import free_port
from intake.hooks import sign_hr
from sandbox.seeds import DEMO_PLANTED as PLANTED
from tests.cli.deploy_stack import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

READY = "Ctrl-C stops everything."


class Up:
    """A running ``handover up``: its ports, its home and what it printed so far."""

    def __init__(self, cwd: Path, *extra: str, home: Path | None = None) -> None:
        self.cwd = cwd
        self.home = home or cwd / ".handover"
        self.ports = {"sandbox": free_port(), "intake": free_port(), "prefect": free_port()}
        env = {
            k: v
            for k, v in os.environ.items()
            # A person's shell: none of the test session's Prefect or Handover settings.
            if not k.startswith(("PREFECT_", "HANDOVER_"))
        }
        env["PYTHONPATH"] = str(REPO)
        env["PREFECT_UI_ENABLED"] = "false"  # nobody looks at it; the server starts sooner
        if home is not None:
            env["HANDOVER_HOME"] = str(home)
        self.out: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "up",
                "--port",
                str(self.ports["sandbox"]),
                "--intake-port",
                str(self.ports["intake"]),
                "--prefect-port",
                str(self.ports["prefect"]),
                *extra,
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)

    def printed(self) -> str:
        return "".join(self.out)

    def api(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def started(cwd: Path, *extra: str, home: Path | None = None) -> Iterator[Up]:
    stack = Up(cwd, *extra, home=home)
    try:
        wait_for(
            "handover up to be ready",
            lambda: READY in stack.printed() or stack.proc.poll() is not None,
            timeout=420,
        )
        assert READY in stack.printed(), stack.printed()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    yield from started(tmp_path)


def _basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


OFFBOARD_DANA = ("offboard", "dana.sole@acme.com", "--reason", "termination", "--json")


def _person_shell() -> dict[str, str]:
    """A new shell of the same person: none of the test session's Prefect or Handover settings,
    not even PREFECT_API_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def _handover(up: Up, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=up.cwd,
        env=_person_shell() | env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_handover_up_refuses_unauthenticated_calls_and_another_shell_joins_it(
    up: Up, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One ``handover up`` for both claims (each start is a Prefect server, the deployments and
    a worker: about a minute of a 2-core machine), checked one after the other; what one part
    starts does not touch what the other checks (the HR event names Gina, the other shell's
    offboarding Dana). Stopping ``up`` at the end: exit 0, the state file removed."""
    _the_prefect_api_refuses_unauthenticated_calls(up)
    _another_shell_joins_the_stack_by_itself(up, tmp_path_factory)
    up.stop()
    assert up.proc.returncode == 0, up.printed()
    assert not (up.cwd / ".handover" / "stack.json").exists()


def _the_prefect_api_refuses_unauthenticated_calls(up: Up) -> None:
    """The Prefect API of ``handover up`` refuses every call without its credential (0600 under
    ``.handover/prefect``, never printed) and listens on loopback only; the intake, the worker,
    the console's sign-in and a command of another shell given only the banner's
    PREFECT_API_URL all reach the stack."""
    auth_file = up.cwd / ".handover" / "prefect" / "api-auth"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    auth = auth_file.read_text().strip()
    assert str(auth_file) in up.printed()
    assert auth not in up.printed() and auth.split(":", 1)[1] not in up.printed()

    # Probes answer without it (a load balancer's health check) …
    assert httpx.get(up.api("/health"), timeout=10).status_code == 200
    # … nothing else does: listing, starting a run of, or editing a deployment.
    no_auth = httpx.post(up.api("/deployments/filter"), json={}, timeout=10)
    assert no_auth.status_code == 401, no_auth.text
    wrong = httpx.post(
        up.api("/deployments/filter"), json={}, headers=_basic("handover:guess"), timeout=10
    )
    assert wrong.status_code == 401
    deps = httpx.post(
        up.api("/deployments/filter"), json={}, headers=_basic(auth), timeout=10
    ).json()
    offboard = next(d for d in deps if d["name"] == "offboard")
    start = httpx.post(
        up.api(f"/deployments/{offboard['id']}/create_flow_run"),
        json={"parameters": {"email": "alice.admin@acme.com", "emergency": True}},
        timeout=10,
    )
    assert start.status_code == 401
    # The server listens on loopback only: not on the machine's other addresses.
    other = _non_loopback_address()
    if other is not None:  # a machine with only loopback has nothing else to listen on
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{other}:{up.ports['prefect']}/api/health", timeout=3)

    # The intake authenticates: a signed HR event becomes a run of the offboard deployment.
    body = json.dumps(
        {
            "event_id": "hr-evt-up-auth-1",
            "type": "employee.terminated",
            "employee": {"email": "gina.groups@acme.com", "name": "Gina Groups"},
        }
    ).encode()
    sent = httpx.post(
        f"http://127.0.0.1:{up.ports['intake']}/hooks/hr",
        content=body,
        headers=sign_hr("sandbox-hr-secret", body),
        timeout=60,
    )
    assert sent.status_code == 202, sent.text

    def runs() -> list[dict[str, object]]:
        got = httpx.post(
            up.api("/flow_runs/filter"),
            json={"deployments": {"id": {"any_": [offboard["id"]]}}},
            headers=_basic(auth),
            timeout=10,
        ).json()
        return [r for r in got if r["id"] == sent.json()["run"]]

    assert wait_for("the HR event's run", runs, timeout=120)

    # An HR emergency goes to the stack's warm worker (no new interpreter): its run reference
    # is the background task's, and the member is removed.
    sb_admin = httpx.Client(
        base_url=f"http://127.0.0.1:{up.ports['sandbox']}/admin/v1",
        headers={"Authorization": "Bearer sandbox-admin-token"},
        timeout=10,
    )
    who = next(
        m["email"]
        for m in sb_admin.get("/members", params={"status": "joined"}).json()["members"]
        if m["org_role"] == "member" and m["email"] not in PLANTED
    )
    urgent = json.dumps(
        {
            "event_id": "hr-evt-up-warm-1",
            "type": "employee.terminated",
            "employee": {"email": who},
            "security_risk": True,
        }
    ).encode()
    sent = httpx.post(
        f"http://127.0.0.1:{up.ports['intake']}/hooks/hr",
        content=urgent,
        headers=sign_hr("sandbox-hr-secret", urgent),
        timeout=60,
    )
    assert sent.status_code == 202 and sent.json()["run"].startswith("warm:"), sent.text
    wait_for(
        "the emergency's member removed",
        lambda: sb_admin.get(f"/members/{who}").status_code == 404,
        timeout=120,
    )
    assert "warm worker  emergencies and bulk leavers" in up.printed()
    storage = up.cwd / ".handover" / "prefect" / "storage"
    assert stat.S_IMODE(storage.stat().st_mode) == 0o700  # the API credential is kept there

    # The intake serves the web console: its URL is in the banner, and a browser is sent to
    # sign in at the sandbox's IdP.
    console = f"http://127.0.0.1:{up.ports['intake']}/console/"
    assert f"console      {console}" in up.printed()
    first = httpx.get(console, timeout=10)
    assert first.status_code == 303 and first.headers["location"].startswith("/console/sign-in")
    idp = httpx.get(console.removesuffix("/") + "/sign-in", timeout=10)
    assert idp.status_code == 302
    assert idp.headers["location"].startswith(
        f"http://127.0.0.1:{up.ports['sandbox']}/idp/oidc/authorize?"
    )

    # Another shell of the same person, with only the banner's PREFECT_API_URL: the command
    # joins the stack (its credential is read from .handover/prefect/api-auth) and its run is
    # on the stack's server.
    sb = f"http://127.0.0.1:{up.ports['sandbox']}"
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    shell.update(
        {
            "PYTHONPATH": str(REPO),
            "PREFECT_API_URL": up.api(""),
            "HANDOVER_SANDBOX": "1",
            "HANDOVER_ORG_URL": sb,
            "HANDOVER_IDP_URL": f"{sb}/idp/scim/v2",
            "HANDOVER_SLACK_API_URL": f"{sb}/slack/api/",
            "HANDOVER_JIRA_URL": f"{sb}/jira",
            "HANDOVER_ROSTER": str(up.cwd / ".handover" / "roster.csv"),
        }
    )
    cmd = [sys.executable, "-m", "cli.main", "offboard", "dana.sole@acme.com"]
    cmd += ["--reason", "termination", "--dry-run", "--json"]
    dry = subprocess.run(cmd, cwd=up.cwd, env=shell, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr
    run_id = json.loads(dry.stdout)["run_id"]
    seen = httpx.get(up.api(f"/flow_runs/{run_id}"), headers=_basic(auth), timeout=10)
    assert seen.status_code == 200, seen.text


def _another_shell_joins_the_stack_by_itself(
    up: Up, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``handover up`` writes its state file (its URLs and plain settings, never a secret); a
    command in another shell of the directory, with no PREFECT_API_URL, joins the stack by
    itself: its gated offboarding waits on the stack's Prefect server, a Slack click through the
    stack's intake resumes it and it completes. Stopping ``up`` removes the file."""
    from connectors.settings import DEV_CREDENTIALS

    home = up.cwd / ".handover"
    # Still running after the first part (if not, what it printed says why it stopped).
    assert up.proc.poll() is None, up.printed()[-4000:]
    text = (home / "stack.json").read_text()
    state = json.loads(text)
    sandbox = f"http://127.0.0.1:{up.ports['sandbox']}"
    intake = f"http://127.0.0.1:{up.ports['intake']}"
    assert state["pid"] == up.proc.pid
    assert state["prefect_api_url"] == up.api("")
    assert state["prefect_ui_url"] == up.api("").removesuffix("/api")
    assert (state["intake_url"], state["sandbox_url"]) == (intake, sandbox)
    assert state["console_url"] == f"{intake}/console/"
    assert state["settings"]["HANDOVER_ORG_URL"] == sandbox
    assert state["settings"]["HANDOVER_HOME"] == str(home)
    assert state["settings"]["HANDOVER_LEDGER_URL"] == f"sqlite:///{home / 'ledger.db'}"
    assert state["withheld"] == []  # the sandbox's settings hold no secret
    # A bulk run in another shell hands its leavers to the warm worker through this directory.
    assert state["settings"]["PREFECT_LOCAL_STORAGE_PATH"] == str(home / "prefect" / "storage")
    auth = (home / "prefect" / "api-auth").read_text().strip()
    assert auth.split(":", 1)[1] not in text
    assert not any(v in text for v in DEV_CREDENTIALS.values())
    assert "other shells join it by themselves" in up.printed()
    joined = f"joined the stack of 'handover up' (pid {up.proc.pid}): Prefect at {up.api('')}"

    # The leaver runbook from the other shell: it waits at its approval gate.
    logs = tmp_path_factory.mktemp("shell")
    with open(logs / "err.log", "w") as err:
        run = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *OFFBOARD_DANA],
            cwd=up.cwd,
            env=_person_shell(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        waiting = wait_for(
            "the run to wait for its approval",
            lambda: (
                re.search(r"approval (apr-\S+) waiting", (logs / "err.log").read_text())
                or run.poll() is not None
            ),
            timeout=300,
        )
        assert run.poll() is None, (logs / "err.log").read_text()
        assert joined in (logs / "err.log").read_text()
        approval = waiting.group(1)
        listed = _handover(up, "approvals", "--pending", "--json")
        assert listed.returncode == 0 and joined in listed.stderr, listed.stderr
        appr = next(a for a in json.loads(listed.stdout)["approvals"] if a["id"] == approval)
        clicked: list[str] = []
        for seat in appr["required"]:  # each seat by a distinct person, clicking in Slack
            who = next(e for e in seat if e not in clicked)
            click = _handover(up, "sandbox", "click", approval, "--as", who, "--intake", intake)
            assert click.returncode == 0, click.stdout + click.stderr
            clicked.append(who)
        out, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, (logs / "err.log").read_text()
    result = json.loads(out)
    assert result["status"] == "done", result
    seen = httpx.get(up.api(f"/flow_runs/{result['run_id']}"), headers=_basic(auth), timeout=10)
    assert seen.status_code == 200 and seen.json()["state_type"] == "COMPLETED", seen.text


def _non_loopback_address() -> str | None:
    """One of this machine's addresses that is not loopback, if it has one."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else str(addr)


@pytest.mark.parametrize(
    ("left", "named"),
    [
        ("HANDOVER_HR_WEBHOOK_SECRET", "HANDOVER_HR_WEBHOOK_SECRET"),  # inbound
        ("HANDOVER_ORG_ADMIN_TOKEN", "HANDOVER_ORG_ADMIN_TOKEN"),  # outbound
    ],
)
def test_a_development_credential_stops_handover_up_outside_sandbox_mode(
    tmp_path: Path, left: str, named: str
) -> None:
    """Every other setting is a real one; the one left at its published development value
    stops ``handover up --no-sandbox`` before anything starts (exit 2), named, never shown."""
    from connectors.settings import DEV_CREDENTIALS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env["PYTHONPATH"] = str(REPO)
    for name in DEV_CREDENTIALS:
        if f"HANDOVER_{name.upper()}" != left:
            env[f"HANDOVER_{name.upper()}"] = f"own-{name}-value"
    # Loopback URLs, as behind a local egress proxy: no reason to accept the published secret.
    env["HANDOVER_ORG_URL"] = "http://127.0.0.1:9"
    prefect_port = free_port()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "up",
            "--no-sandbox",
            "--prefect-port",
            str(prefect_port),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert named in said and "HANDOVER_SANDBOX=1" in said
    assert not any(v in said for v in DEV_CREDENTIALS.values())
    assert not (tmp_path / ".handover").exists()  # nothing started, nothing written


@pytest.mark.skipif(pg_bin() is None, reason="no PostgreSQL here (Debian's postgresql)")
def test_handover_up_postgres_keeps_the_runs_and_the_ledger_in_postgresql(tmp_path: Path) -> None:
    """``handover up --postgres``: a cluster of its own under ``.handover/postgres``; the Prefect
    server's deployments and the ledger live in it; the ledger is reached by a URL without its
    password (PGPASSFILE names the 0600 file holding it), so neither the state file nor the
    banner carries it, and another shell's command joins and reads that ledger. Stopping
    ``up`` stops PostgreSQL and keeps its data for the next start. Started with a
    ``HANDOVER_HOME`` of its own: its state is kept there, where a shell with that home finds
    it, not in the working directory."""
    from sqlalchemy import create_engine, inspect, text

    for up in started(tmp_path, "--postgres", home=tmp_path / "elsewhere"):
        home = up.home
        assert not (up.cwd / ".handover").exists()
        root = home / "postgres"
        password = (root / "password").read_text().strip()
        assert stat.S_IMODE((root / "password").stat().st_mode) == 0o600
        assert stat.S_IMODE((root / "pgpass").stat().st_mode) == 0o600
        text_ = (home / "stack.json").read_text()
        state = json.loads(text_)
        ledger = state["settings"]["HANDOVER_LEDGER_URL"]
        assert re.fullmatch(r"postgresql\+psycopg://handover@127\.0\.0\.1:\d+/ledger", ledger)
        assert state["settings"]["PGPASSFILE"] == str(root / "pgpass")
        assert state["withheld"] == []
        assert password not in text_ and password not in up.printed()
        assert f"PostgreSQL under {root}" in up.printed()

        # Another shell with that home: joins, reads the ledger.
        listed = _handover(up, "approvals", "--json", HANDOVER_HOME=str(home))
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["approvals"] == []

        port = int(ledger.rsplit(":", 1)[1].split("/")[0])
        server = f"postgresql+psycopg://handover:{password}@127.0.0.1:{port}"
        engine = create_engine(f"{server}/prefect")
        with engine.connect() as c:
            deployments = c.execute(text("SELECT count(*) FROM deployment")).scalar_one()
        engine.dispose()
        assert deployments > 0  # prefect.yaml's deployments, in PostgreSQL
        engine = create_engine(f"{server}/ledger")
        assert "cases" in inspect(engine).get_table_names()
        engine.dispose()
        up.stop()
        assert up.proc.returncode == 0, up.printed()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # stopped with the stack
        kept = cluster_dir(root)
        assert (kept / "data" / "PG_VERSION").exists()  # kept for the next start
        shutil.rmtree(kept)
