"""``handover up`` (``make up``): the long-running local stack, stopped cleanly on Ctrl-C/SIGTERM.

1. A Prefect server (``prefect server start``) on 127.0.0.1 that requires a credential (HTTP
   Basic, ``PREFECT_SERVER_API_AUTH_STRING``; made once and kept 0600 in
   ``.handover/prefect/api-auth``, passed to the worker, the runs, the watchdog and the intake as
   ``PREFECT_API_AUTH_STRING``): SQLite under ``.handover/prefect`` by default, or the database
   at ``--prefect-db-url`` (``postgresql+asyncpg://…``, passed as
   ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` to the server only).
2. The sandbox world (unless ``--no-sandbox``: then the ``HANDOVER_*`` settings of the
   environment, .env or handover.toml say where the real systems are).
3. Every deployment of ``prefect.yaml`` (``cli.deploy.deploy_all``) and a process worker of
   ``handover-process`` whose environment carries the ``HANDOVER_*`` settings, so flow runs
   reach the same org, Slack, Jira, ledger and roster as the intake; and a warm worker
   (``handover warm-worker``, log ``warm-worker.log``, flows/warm.py) with the same settings,
   which runs emergencies and bulk leavers without starting an interpreter for each.
4. The watchdog, a process of its own (``handover watchdog``: cli/watchdog_cmd.py, log
   ``watchdog.log``): every 30 s it sweeps approvals (escalation, auto-deny, a click's lost
   wake-up) and starts due HR and Jira events as deployment runs.
5. The intake: HR webhooks start ``offboard/offboard`` (an emergency goes to the warm worker
   while one serves), Jira webhooks ``onboard/onboard``
   (``run_deployment`` with the event id as idempotency key), the Extend button of an expiry
   reminder ``extend-grant/extend-grant``, and Slack clicks resume paused runs. Schedules
   (expiry every 15 minutes, hygiene daily, review quarterly) are the server's: the worker runs
   them.

6. Once every piece answers, the state file ``.handover/stack.json`` (``cli.stack.StackState``:
   the URLs, this pid, the plain ``HANDOVER_*`` settings given to the pieces, no secret): a
   ``handover`` command in another shell of this directory joins the stack from it
   (``cli.stack.join_running_stack``).

Stopping (Ctrl-C or SIGTERM) goes in reverse: the state file, intake, watchdog, warm worker,
worker (with its flow-run processes: ``Worker.stop``), sandbox, server. A run paused at an
approval then ends Crashed, and the next ``handover up`` starts it again (below): the new run
finds its case and its approval in the ledger.

Crash recovery (``cli.recover``): the worker's runs send heartbeats, a server automation marks
a run whose process died Crashed, and every 30 s this process starts each crashed run again
(same deployment and parameters; the runbooks resume their case in the ledger).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cli.postgres import LocalPostgres, start_postgres
from cli.stack import (
    HOME,
    StackState,
    free_port,
    public_settings,
    remove_stack_state,
    serve_app,
    start_prefect_server,
    start_sandbox,
    write_stack_state,
)
from cli.warm_cmd import start_warm_worker, wait_for_warm_worker
from cli.watchdog_cmd import start_watchdog

EXTEND_DEPLOYMENT = "extend-grant/extend-grant"
SWEEP_SECONDS = 30.0


SANDBOX_SIGN_IN = ": any sandbox person, password sandbox-password"


def sandbox_env(url: str, home: Path) -> dict[str, str]:
    """The ``HANDOVER_*`` settings of a runbook process using the sandbox at ``url``, with the
    ledger and the sandbox's HR roster (written now) under ``home`` — absolute paths, since
    flow runs execute in the checkout, not here."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    roster = home / "roster.csv"
    roster.write_text(
        httpx.get(f"{url}/_sandbox/roster", params={"format": "csv"}, timeout=10).text
    )
    from connectors.settings import SANDBOX_HR_PATHS, SANDBOX_IDP_PATHS

    # The IdP kind chosen in this shell (HANDOVER_IDP_KIND), answered by the sandbox's own
    # imitation of that vendor's API.
    kind = os.environ.get("HANDOVER_IDP_KIND", "scim").strip().lower() or "scim"
    path = SANDBOX_IDP_PATHS.get(kind, SANDBOX_IDP_PATHS["scim"])
    # The HR system whose API answers the vendors' id-only webhooks (HiBob by default here).
    hr = os.environ.get("HANDOVER_HR_API", "hibob").strip().lower()
    hr_env = (
        {"HANDOVER_HR_API": hr, "HANDOVER_HR_API_URL": f"{url}{SANDBOX_HR_PATHS[hr]}"}
        if hr in SANDBOX_HR_PATHS
        else {"HANDOVER_HR_API": hr}
    )
    return {
        "HANDOVER_ORG_URL": url,
        "HANDOVER_IDP_KIND": kind,
        "HANDOVER_IDP_URL": f"{url}{path}",
        "HANDOVER_SLACK_API_URL": f"{url}/slack/api/",
        "HANDOVER_JIRA_URL": f"{url}/jira",
        "HANDOVER_OIDC_ISSUER": f"{url}/idp/oidc",  # who signs people in: the sandbox's IdP
        "HANDOVER_LEDGER_URL": os.environ.get("HANDOVER_LEDGER_URL")
        or f"sqlite:///{home / 'ledger.db'}",
        "HANDOVER_ROSTER": str(roster),
        "HANDOVER_HOME": str(home),
        # The sandbox's published credentials are accepted only in sandbox mode.
        "HANDOVER_SANDBOX": "1",
        **hr_env,
    }


def postgres_env(pg: LocalPostgres) -> dict[str, str]:
    """The ledger on ``pg`` (unless ``HANDOVER_LEDGER_URL`` names another), by a URL without
    its password: libpq reads it from ``PGPASSFILE``."""
    if os.environ.get("HANDOVER_LEDGER_URL"):
        return {}
    return {
        "HANDOVER_LEDGER_URL": pg.url("ledger", password=False),
        "PGPASSFILE": str(pg.passfile()),
    }


def scheduling_storage(home: Path) -> dict[str, str]:
    """Where background tasks' parameters and results are kept (flows/warm.py): one directory
    for the intake, the runs and the warm worker, readable by this user only (Prefect keeps the
    submitter's settings with the parameters)."""
    path = (home / "prefect" / "storage").resolve()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return {"PREFECT_LOCAL_STORAGE_PATH": str(path)}


def _database_said(postgres: bool, db_url: str | None, home: Path) -> str:
    if postgres:
        return f"PostgreSQL under {home / 'postgres'} (the Prefect server's runs and the ledger)"
    return "(from --prefect-db-url)" if db_url else str(home / "prefect")


def services_from_env() -> Any:
    """The intake's services from the ``HANDOVER_*`` settings (the runs are the worker's: each
    builds its own runtime from the same settings)."""
    from approvals.services import Services
    from connectors.settings import load_settings

    return Services.from_settings(load_settings())


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (the main loop then shuts down in order)."""
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class _Stopped(Exception):
    """Ctrl-C/SIGTERM while starting."""


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stopped


def up(
    port_sandbox: int = 8800,
    port_intake: int = 8801,
    no_sandbox: bool = False,
    prefect_port: int = 4200,
    db_url: str | None = None,
    postgres: bool = False,
    warm: bool = True,
    *,
    home: Path = HOME,
    prefect_yaml: Path | None = None,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> int:
    """Start the stack, print the URLs, keep it running until Ctrl-C/SIGTERM (or ``stop``).

    Returns:
        0 after a clean stop; 1 when a piece failed to start or died while running; 2 when the
        settings cannot be used (nothing started).
    """
    home = home.resolve()
    if postgres and db_url:
        echo("error: --postgres starts a PostgreSQL of its own: leave out --prefect-db-url")
        return 2
    if no_sandbox:
        # The real systems' settings are checked before anything starts: a published
        # development credential (inbound or outbound) outside sandbox mode stops us here.
        from connectors.settings import SettingsError, load_settings

        try:
            load_settings()
        except SettingsError as e:
            echo(f"error: {e}")
            return 2
    home.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    wanted = {"Prefect server": prefect_port, "intake": port_intake}
    if not no_sandbox:
        wanted["sandbox"] = port_sandbox
    busy = [f"{what} port {port}" for what, port in wanted.items() if not port_free(port)]
    if busy:
        echo(f"error: already in use: {', '.join(busy)} (another `handover up`?)")
        return 1

    stoppers: list[tuple[str, Callable[[], None]]] = []
    t0 = time.monotonic()
    code = 0
    with _stop_on_signals(stop):
        try:
            pg_env: dict[str, str] = {}
            if postgres:
                echo("starting PostgreSQL…")
                pg = start_postgres(home / "postgres", free_port())
                stoppers.append(("PostgreSQL", pg.stop))
                db_url = pg.url("prefect", "asyncpg")
                pg_env = postgres_env(pg)
            echo("starting the Prefect server…")
            # The database URL goes to the server process only: the worker and runs never see it.
            server = start_prefect_server(home / "prefect", port=prefect_port, db_url=db_url)
            stoppers.append(("Prefect server", server.stop))

            env: dict[str, str] = {}
            sandbox_url = None
            if not no_sandbox:
                sb = start_sandbox(db=home / "sandbox.db", seed="demo", port=port_sandbox)
                stoppers.append(("sandbox", sb.stop))
                sandbox_url = sb.url
                env = sandbox_env(sb.url, home)
            env.update(pg_env)
            env.update(scheduling_storage(home))
            # The links in rotated-secret DMs point at this intake (unless set otherwise).
            env["HANDOVER_INTAKE_URL"] = (
                os.environ.get("HANDOVER_INTAKE_URL") or f"http://127.0.0.1:{port_intake}"
            )
            os.environ.update(env)  # the intake (this process) reads the same settings
            svc = services_from_env()  # refuses development credentials outside loopback

            from cli.deploy import (
                OFFBOARD_DEPLOYMENT,
                ONBOARD_DEPLOYMENT,
                POOL,
                PREFECT_YAML,
                REPO,
                deploy_all,
                start_worker,
                wait_for_worker,
            )

            echo("deploying prefect.yaml…")
            _check(stop)
            names = deploy_all(prefect_yaml or PREFECT_YAML, root=REPO, env=env)
            _check(stop)
            worker = start_worker(POOL, env=env, log=home / "worker.log", name="handover-up")
            stoppers.append(("worker", worker.stop))
            hot = start_warm_worker(env=env, log=home / "warm-worker.log") if warm else None
            if hot is not None:
                stoppers.append(("warm worker", hot.stop))
            wait_for_worker(POOL)
            if hot is not None:
                wait_for_warm_worker()
            _check(stop)
            # After the deployments: the watchdog starts due events as their runs.
            dog = start_watchdog(every=SWEEP_SECONDS, env=env, log=home / "watchdog.log")
            stoppers.append(("watchdog", dog.stop))

            from flows.warm import offboard_warm, taken_or_withdrawn, warm_workers
            from intake.app import create_intake
            from intake.launch import WarmLauncher, deployment_launcher

            intake = serve_app(
                create_intake(
                    svc,
                    # Emergencies to the warm worker (no interpreter to start), the rest (and
                    # an emergency when no warm worker serves) to the offboard deployment.
                    launcher=WarmLauncher(
                        offboard_warm,
                        serving=lambda: warm_workers() > 0,
                        fallback=deployment_launcher(OFFBOARD_DEPLOYMENT),
                        taken=taken_or_withdrawn,
                    ),
                    onboard_launcher=deployment_launcher(ONBOARD_DEPLOYMENT),
                    extend_launcher=deployment_launcher(EXTEND_DEPLOYMENT),
                ),
                port=port_intake,
                name="intake",
            )
            stoppers.append(("intake", intake.stop))
            ui = server.url.removesuffix("/api")
            console = f"{svc.settings.intake_url.rstrip('/')}/console/"
            # Once every piece answers: another shell of this directory joins from here on.
            public = public_settings(env)  # env holds HANDOVER_* settings only
            state = write_stack_state(
                home,
                StackState(
                    pid=os.getpid(),
                    started=datetime.now(UTC).isoformat(timespec="seconds"),
                    prefect_api_url=server.url,
                    prefect_ui_url=ui,
                    intake_url=intake.url,
                    sandbox_url=sandbox_url,
                    console_url=console,
                    settings=public,
                    withheld=sorted(k for k in env if k not in public),
                ),
            )
            stoppers.append(("state file", lambda: remove_stack_state(home, os.getpid())))
            lines = [
                f"handover up in {time.monotonic() - t0:.0f} s",
                f"  Prefect UI   {ui}   (API {server.url})",
                f"  other shells join it by themselves (state in {state}; from another"
                f" directory: HANDOVER_HOME={home})",
                f"  API auth     required; PREFECT_API_AUTH_STRING is in {server.auth_file}",
                f"  database     {_database_said(postgres, db_url, home)}",
                f"  worker       pool {POOL}, log {worker.log}",
                f"  warm worker  emergencies and bulk leavers, log {hot.log}"
                if hot is not None
                else "  warm worker  none (--no-warm-worker): every run on the process worker",
                f"  watchdog     every {SWEEP_SECONDS:g} s, log {dog.log}",
                f"  deployments  {', '.join(names)}",
                f"  intake       {intake.url}  (POST /hooks/hr, /hooks/jira, /slack/interactions;"
                " GET /secrets/…)",
                f"  console      {console}  (sign in at the"
                f" IdP{SANDBOX_SIGN_IN if sandbox_url else ''})",
            ]
            if sandbox_url:
                lines.append(
                    f"  sandbox      {sandbox_url}  (controls {sandbox_url}/_sandbox/docs)"
                )
            lines.append(f"  ledger       {svc.settings.ledger_database_url()}")
            lines.append("Ctrl-C stops everything.")
            echo("\n".join(lines))

            from cli.recover import resume_crashed

            last_recovery = 0.0
            while not stop.wait(1.0):
                if time.monotonic() - last_recovery > SWEEP_SECONDS:
                    last_recovery = time.monotonic()
                    try:  # runs whose worker process died: Crashed by the automation, resumed
                        for r in resume_crashed():
                            echo(f"crashed run {r.crashed} started again as {r.run}")
                    except Exception as exc:  # the server may be busy: next sweep
                        echo(f"warning: crash recovery sweep failed: {exc}")
                if server.proc.poll() is not None:
                    echo(f"error: the Prefect server exited (see {server.log})")
                    code = 1
                    break
                if not worker.alive():
                    echo(f"error: the worker exited (see {worker.log})")
                    code = 1
                    break
                if hot is not None and not hot.alive():
                    echo(f"error: the warm worker exited (see {hot.log})")
                    code = 1
                    break
                if not dog.alive():
                    echo(f"error: the watchdog exited (see {dog.log})")
                    code = 1
                    break
        except _Stopped:
            pass
        except Exception as exc:  # a piece did not start: say which, stop the rest
            echo(f"error: {exc}")
            code = 1
        finally:
            echo("stopping…")
            for what, fn in reversed(stoppers):
                try:
                    fn()
                except Exception as exc:
                    echo(f"  {what} did not stop cleanly: {exc}")
            echo("stopped")
    return code
