"""Start and stop the local pieces on loopback: the sandbox, a Prefect server, the intake."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

HOME = Path(".handover")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """A uvicorn server running in a background thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_sandbox(
    *,
    db: Path | None,
    seed: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    faults: Any = None,
) -> Running:
    """Serve a sandbox world in a thread and wait until it answers ``/healthz``."""
    from sandbox.app import create_app  # loaded only when a sandbox is wanted

    app = create_app(db, seed=seed, faults=faults)
    return serve_app(app, host=host, port=port, name="sandbox")


# Where a server's API credential is kept, in its PREFECT_HOME (0600): another shell of the same
# user reads it from there (docs/deployment.md), nobody else.
AUTH_FILE = "api-auth"


def api_auth_string(home: Path) -> str:
    """The ``user:password`` the Prefect server under ``home`` requires (HTTP Basic), made on
    first use and kept: a restarted stack keeps the credential its other shells hold."""
    path = home / AUTH_FILE
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = f"handover:{secrets.token_urlsafe(32)}"
    # Created 0600 before the secret is written: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def join_local_stack(home: Path = HOME) -> bool:
    """Give this process (before prefect is imported) the credential of the stack that
    ``handover up`` started from this directory, when ``PREFECT_API_URL`` points at a loopback
    server and no ``PREFECT_API_AUTH_STRING`` is set: another shell of the same person then needs
    no more than the ``PREFECT_API_URL`` of the banner, or nothing at all once
    :func:`join_running_stack` set it (INTERFACES.md). True when it did.

    Only loopback: a remote server's credential comes from the environment (a secrets store),
    never from a file lying in the working directory.
    """
    from connectors.settings import is_loopback

    url = os.environ.get("PREFECT_API_URL", "")
    if not url or os.environ.get("PREFECT_API_AUTH_STRING") or not is_loopback(url):
        return False
    path = home / "prefect" / AUTH_FILE
    try:
        value = path.read_text().strip()
    except OSError:
        return False
    if not value:
        return False
    os.environ["PREFECT_API_AUTH_STRING"] = value
    return True


# What `handover up` tells the other shells of this directory (docs/deployment.md): where its
# pieces listen and the HANDOVER_* settings it gave them; never a secret.
STACK_FILE = "stack.json"


@dataclass(frozen=True)
class StackState:
    """A running ``handover up`` as its state file (``<home>/stack.json``) records it."""

    pid: int
    started: str  # ISO 8601, UTC
    prefect_api_url: str
    prefect_ui_url: str
    intake_url: str
    sandbox_url: str | None = None
    console_url: str | None = None
    # The non-secret HANDOVER_* settings `up` put in the stack's environment (public_settings).
    settings: dict[str, str] = field(default_factory=dict)
    # The names of those it left out as secret (a ledger URL with its password): a joining
    # shell is told to set them itself.
    withheld: list[str] = field(default_factory=list)


def public_settings(env: dict[str, str]) -> dict[str, str]:
    """The ``HANDOVER_*`` entries of ``env`` that may be written to a file others can read:
    each a plain setting of ``connectors.settings.Settings`` (no ``SecretStr``, no
    ``HANDOVER_EXTRA_ORGS``, which carries tokens) whose value holds no password (a
    ``postgresql://user:password@…`` ledger URL is left out), ``PGPASSFILE`` (the path of
    the 0600 file holding ``handover up --postgres``'s password, not the password) and
    ``PREFECT_LOCAL_STORAGE_PATH`` (where a bulk run in another shell leaves its leavers'
    parameters for the warm worker and finds their outcomes: flows/warm.py)."""
    from urllib.parse import urlsplit

    from connectors.settings import Settings

    plain = {
        f"HANDOVER_{name.upper()}"
        for name, f in Settings.model_fields.items()
        # "SecretStr" in the annotation's text: a ``SecretStr | None`` is one too.
        if "SecretStr" not in str(f.annotation) and name != "extra_orgs"
    } | {"PGPASSFILE", "PREFECT_LOCAL_STORAGE_PATH"}
    kept = {}
    for key, value in env.items():
        if key not in plain:
            continue
        try:
            if urlsplit(value).password:
                continue
        except ValueError:  # not a URL at all: a plain value
            pass
        kept[key] = value
    return kept


def write_stack_state(home: Path, state: StackState) -> Path:
    """Write ``<home>/stack.json`` atomically (a temporary file renamed over it): a shell
    reading it meanwhile sees the old file or the new one, never half of one."""
    path = home / STACK_FILE
    tmp = home / f".{STACK_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def remove_stack_state(home: Path, pid: int) -> None:
    """Remove ``<home>/stack.json`` if it is the one of process ``pid`` (a later ``up`` of the
    same directory has written its own: that one stays)."""
    state = read_stack_state(home)
    if state is not None and state.pid == pid:
        (home / STACK_FILE).unlink(missing_ok=True)


def read_stack_state(home: Path) -> StackState | None:
    """The state file under ``home``; None when there is none or it cannot be read as one."""
    try:
        data = json.loads((home / STACK_FILE).read_text())
        return StackState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def prefect_answers(api_url: str, timeout: float = 10.0) -> bool:
    """Whether a Prefect server answers ``/health`` at ``api_url`` (no credential needed)."""
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def join_running_stack(home: Path = HOME) -> str | None:
    """Point this process (before prefect is imported, and with no ``PREFECT_API_URL`` of its
    own) at the stack that ``handover up`` runs from ``home``, as its state file says: its
    Prefect API (the credential then comes from :func:`join_local_stack`) and the ``HANDOVER_*``
    settings it gave its pieces, except those this environment sets itself (they win).

    Returns:
        What to tell the person (the stack joined, and the secret settings of the stack this
        shell lacks; or a state file that is stale and was not used), or None when there is no
        state file.
    """
    path = home / STACK_FILE
    if not path.exists():
        return None
    state = read_stack_state(home)
    if state is None:
        return f"note: {path} cannot be read as the state of 'handover up'; not used"
    if not _alive(state.pid):
        return (
            f"note: {path} is stale: 'handover up' (pid {state.pid}) is no longer running; not used"
        )
    if not prefect_answers(state.prefect_api_url):
        return (
            f"note: {path} is stale: the Prefect server of 'handover up' (pid {state.pid}) does "
            f"not answer at {state.prefect_api_url}; not used"
        )
    os.environ["PREFECT_API_URL"] = state.prefect_api_url
    for key, value in state.settings.items():
        os.environ.setdefault(key, value)
    url = state.prefect_api_url
    said = f"joined the stack of 'handover up' (pid {state.pid}): Prefect at {url}"
    missing = [k for k in state.withheld if not os.environ.get(k)]
    if missing:
        said += (
            f"\nnote: the stack's {', '.join(missing)} holds a secret and is not in {path}: "
            "set it in this shell for this command to use the stack's"
        )
    return said


@dataclass
class PrefectServer:
    """A ``prefect server`` subprocess (SQLite in its own PREFECT_HOME)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    # The file holding the API's credential (None: a server without authentication).
    auth_file: Path | None = None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_prefect_server(
    home: Path, *, port: int | None = None, authenticated: bool = True, db_url: str | None = None
) -> PrefectServer:
    """Start a Prefect server on loopback and point this process at it (before prefect is
    imported).

    Real approvals need a real server: a paused flow is resumed by another process (the
    intake), which an ephemeral in-process server cannot serve (PREFECT_NOTES.md).

    ``authenticated`` (the default): the server requires HTTP Basic with the credential of
    :func:`api_auth_string` (``PREFECT_SERVER_API_AUTH_STRING``, for the server only); this
    process and what it starts (worker, flow runs, watchdog, intake) send it
    (``PREFECT_API_AUTH_STRING``). Whoever reaches the port without it can neither start a
    run nor read one: an unauthenticated call gets 401, only ``/health`` answers.

    ``db_url``: the server's database (``postgresql+asyncpg://…``; default SQLite under
    ``home``), given to the server process only: nothing it starts sees the password.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    mine = {
        "PREFECT_HOME": str(home.resolve()),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    auth_file = None
    if authenticated:
        mine["PREFECT_API_AUTH_STRING"] = api_auth_string(home)
        auth_file = home / AUTH_FILE
    else:
        os.environ.pop("PREFECT_API_AUTH_STRING", None)
    env = {**os.environ, **mine}
    if authenticated:
        env["PREFECT_SERVER_API_AUTH_STRING"] = mine["PREFECT_API_AUTH_STRING"]
    if db_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db_url
    os.environ.update(mine)
    prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 300  # a loaded 2-core machine: ~10 s idle, 90+ s seen
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return PrefectServer(url=url, proc=proc, log=log, auth_file=auth_file)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the Prefect server did not start (see {log})")


def serve_app(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int | None = None, name: str = "app"
) -> Running:
    """Serve any ASGI app (the intake) in a background thread."""
    port = port or free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Running(url=url, server=server, thread=thread)
        except httpx.HTTPError:
            time.sleep(0.05)
    server.should_exit = True
    raise RuntimeError(f"{name} did not answer on {url} within 30 s")


def local_runtime(
    url: str,
    home: Path,
    *,
    roster: bool = True,
    org_backend: str = "sandbox",
    idp_kind: str | None = None,
    hr_api: str = "",
    ledger_url: str | None = None,
) -> Any:
    """The runbooks' runtime (``tasks.runtime.Runtime``, which is also the gate's services) for
    a sandbox at ``url``, with the ledger (and the sandbox's HR roster) under ``home``;
    ``org_backend`` as ``HANDOVER_ORG_BACKEND``; ``idp_kind`` as ``HANDOVER_IDP_KIND`` (default:
    the environment's), each kind's API of the sandbox's IdP; ``hr_api`` as ``HANDOVER_HR_API``
    (the sandbox's imitation of that HR system's API); ``ledger_url`` another ledger than the
    SQLite file under ``home`` (PostgreSQL). Flows run in this process get it once it is bound
    (``with tasks.runtime.use_runtime(rt):``)."""
    from connectors.settings import SANDBOX_HR_PATHS, SANDBOX_IDP_PATHS, Settings
    from tasks.runtime import Runtime

    kind = (idp_kind or Settings().idp_kind).strip().lower()
    if kind not in SANDBOX_IDP_PATHS:
        from connectors.settings import SettingsError

        raise SettingsError(
            f"HANDOVER_IDP_KIND must be one of {', '.join(SANDBOX_IDP_PATHS)}, not {kind!r}"
        )

    roster_file = None
    if roster:
        roster_file = home / "roster.csv"
        roster_file.write_text(httpx.get(f"{url}/_sandbox/roster", params={"format": "csv"}).text)
    settings = Settings(
        org_url=url,
        idp_kind=kind,
        idp_url=f"{url}{SANDBOX_IDP_PATHS[kind]}",
        slack_api_url=f"{url}/slack/api/",
        jira_url=f"{url}/jira",
        oidc_issuer=f"{url}/idp/oidc",  # who signs people in to the console: the sandbox's IdP
        ledger_url=ledger_url or f"sqlite:///{home / 'ledger.db'}",
        roster=roster_file,
        org_backend=org_backend,
        hr_api=hr_api,
        hr_api_url=f"{url}{SANDBOX_HR_PATHS[hr_api]}" if hr_api else "",
        home=home,  # the audit checkpoints beside the ledger, where the workers write theirs
    )
    return Runtime.from_settings(settings)
