"""Shared fixtures: sandbox worlds in-process (TestClient over httpx) and over loopback."""

from __future__ import annotations

import gc
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandbox.app import create_app
from sandbox.world import World
from tests.postgres import fresh_database, pg_server

# The tests run in the explicit sandbox mode (development credentials, `--as`), set at import so
# that every subprocess they start (workers, CLI runs, servers) inherits it; a test of what
# happens outside it removes it from its own subprocess's environment.
os.environ["HANDOVER_SANDBOX"] = "1"

ORG_SCIM = {"Authorization": "Bearer sandbox-scim-key"}
ORG_ADMIN = {"Authorization": "Bearer sandbox-admin-token"}
IDP = {"Authorization": "Bearer sandbox-idp-token"}


def pytest_configure(config: pytest.Config) -> None:
    """Point Prefect at this process's own server before anything imports prefect.

    Prefect freezes its settings when imported, and real approvals need a real server
    (PREFECT_NOTES.md: pauses die with an ephemeral one), so every test of a process that runs a
    flow shares one ``prefect server`` (the ``prefect_server`` fixture starts it on first use).

    Under pytest-xdist each worker is a process of its own with a server of its own: the
    controller's environment (set here first) is inherited by the workers, so the home and port
    are keyed by ``PYTEST_XDIST_WORKER`` and a worker replaces what it inherited.
    """
    owner = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if owner == "main" and getattr(config.option, "dist", "no") == "worksteal":
        from tests.scheduling import Plugin  # the long tests first (tests/scheduling.py)

        config.pluginmanager.register(Plugin(), "handover-scheduling")
    if os.environ.get("HANDOVER_TEST_PREFECT_OWNER") == owner:
        return  # set up already for this process (a nested run)
    if "prefect" in sys.modules:
        raise pytest.UsageError(
            "prefect was imported before tests/conftest.py could point it at this process's "
            "server: its settings are frozen at import"
        )
    home = tempfile.mkdtemp(prefix=f"handover-prefect-{owner}-")
    port = reserved_port()
    os.environ.update(
        {
            "HANDOVER_TEST_PREFECT_OWNER": owner,
            "HANDOVER_TEST_PREFECT_HOME": home,
            "HANDOVER_TEST_PREFECT_PORT": str(port),
            "PREFECT_HOME": home,
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            # The server requires a credential, as `handover up` runs it: every client the
            # tests start (workers, runs, the intake's launcher) must send it.
            "PREFECT_API_AUTH_STRING": f"handover-test:{secrets.token_urlsafe(24)}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            # Nobody looks at the UI of a test server; without it the server starts sooner.
            "PREFECT_UI_ENABLED": "false",
        }
    )
    config.stash[_PREFECT_HOME] = home


_PREFECT_HOME = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the collection made (Prefect, pydantic's and FastAPI's schemas, the test
    modules: 0.35 M objects, alive for the whole session; a full pass over them takes 0.2 s),
    so that the collector's full passes, which stop every thread of the process, no longer walk
    them. Measured in a worker running tests/approvals and tests/intake without this: 24 full
    passes, 9.8 s of its 169 s of CPU."""
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the Prefect home this process made (its server is stopped by then)."""
    home = config.stash.get(_PREFECT_HOME, None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def flows_without_heartbeats() -> Iterator[None]:
    """The flows run in a test process send no heartbeats.

    Prefect's default is a heartbeat every 180 s from a thread that a sync flow run joins at its
    end, and that thread sleeps a second at a time: every flow and subflow run here would end up
    to a second late, idle (measured: 1.1 s for a flow of two trivial tasks, 0.1 s without).
    Heartbeats only serve crash detection (cli/recover.py), which the crash tests exercise on
    workers started with them, as production runs them (``HEARTBEAT_SECONDS``). For every
    thread of this process: the process-wide settings, which a thread without a settings
    context of its own reads (Prefect's own test harness replaces them the same way).
    """
    from prefect.context import SettingsContext, _temporary_global_settings_context
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    base = SettingsContext.get()
    assert base is not None
    quiet = base.settings.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    with _temporary_global_settings_context(SettingsContext(profile=base.profile, settings=quiet)):
        yield


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """This process's PostgreSQL server URL (tests/postgres.py), or None when this machine
    cannot start one."""
    with pg_server(reserved_port()) as url:
        yield url


@pytest.fixture(scope="session")
def prefect_server(pg_url: str | None) -> Iterator[str]:
    """A real ``prefect server`` for the session: its database on PostgreSQL when there is one,
    as in production (``HANDOVER_TEST_PREFECT_DB=sqlite``, or no PostgreSQL: SQLite in the
    temporary PREFECT_HOME).

    SQLite has one writer: under the load of the chaos test the server answered 503 "database
    is locked" dozens of times, and once its requests stopped being answered at all (a write
    lock never released); Prefect's docs recommend PostgreSQL for anything concurrent.
    """
    port = os.environ["HANDOVER_TEST_PREFECT_PORT"]
    env = os.environ.copy()
    env["PREFECT_SERVER_API_AUTH_STRING"] = os.environ["PREFECT_API_AUTH_STRING"]
    if pg_url is not None and os.environ.get("HANDOVER_TEST_PREFECT_DB") != "sqlite":
        db = fresh_database(pg_url, "prefect").replace("+psycopg:", "+asyncpg:")
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db
    prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
    # Kept after the session (the home is removed): a stalled or failed run is explained there.
    logs = Path(__file__).resolve().parents[1] / ".handover" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    owner = os.environ["HANDOVER_TEST_PREFECT_OWNER"]
    log = open(logs / f"prefect-server-{owner}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", port],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = os.environ["PREFECT_API_URL"]
    # ~10-20 s on an idle 2-core machine; far longer when other suites load it. A session
    # fixture that fails errors every test of the worker that needs it, so wait generously.
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log.name) as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"prefect server did not start ({log.name}):\n{tail}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def reserved_port() -> int:
    """A free port below the kernel's ephemeral range, for a server started later.

    A port from :func:`free_port` is free *now*; the Prefect server binds it only when the first
    test needs it, and by then a sandbox of this or another xdist worker may have been given the
    same ephemeral port. Ports below the ephemeral range are never handed out by ``bind(0)``.
    """
    low = _ephemeral_low()
    rng = random.Random(f"{os.getpid()}-{time.time_ns()}")
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveSandbox:
    """A sandbox served by uvicorn on a loopback port, in a thread of the test process."""

    app: FastAPI
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def world(self) -> World:
        return self.app.state.world  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(app: FastAPI) -> LiveSandbox:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return LiveSandbox(app=app, url=url, server=server, thread=thread)
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("sandbox did not start")


@pytest.fixture
def empty_app() -> FastAPI:
    """A fresh in-memory world with nothing in it."""
    return create_app(None, seed="empty", rng_seed=1)


@pytest.fixture
def client(empty_app: FastAPI) -> Iterator[TestClient]:
    """httpx (through Starlette's TestClient) against the in-process empty world."""
    with TestClient(empty_app) as c:
        yield c


@pytest.fixture(scope="session")
def demo_app() -> FastAPI:
    """One in-memory demo world per session; tests must not change it (read-only)."""
    return create_app(None, seed="demo", rng_seed=1)


@pytest.fixture
def live() -> Iterator[LiveSandbox]:
    """An empty sandbox over loopback (for clients that cannot speak ASGI: slack-sdk, jira)."""
    sb = serve(create_app(None, seed="empty", rng_seed=1))
    yield sb
    sb.stop()


def state_names(flow_run_id: str) -> list[str]:
    """The names of the states a flow run went through, in order (e.g. to show that a run
    never paused: an event to check, not a time to measure)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        states = c.read_flow_run_states(UUID(flow_run_id))
    return [s.name or s.type.value for s in sorted(states, key=lambda s: s.timestamp)]
