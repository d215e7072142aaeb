"""``handover warm-worker``: a long-lived process that runs offboardings (and bulk onboarding
rows) as they are submitted.

It serves ``flows.warm.offboard_warm`` and ``flows.onboard_bulk.onboard_row_warm`` as Prefect
background tasks (``prefect.task_worker``): everything is imported once, the server pushes
each submitted run over the worker's websocket, and at most ``--limit`` run at once in this
process. Several warm workers (on this
machine or on others sharing the task-scheduling storage: flows/warm.py) share the work: the
server gives each submission to one of them.

``handover up`` starts one beside the process worker (log ``warm-worker.log``): the intake
sends emergencies to it, a bulk offboarding sends each leaver to the warm workers there are,
and a bulk onboarding each row that waits on nobody.
It reads the ``HANDOVER_*`` settings and ``PREFECT_API_URL`` like the process worker's runs,
and stops on Ctrl-C or SIGTERM (an offboarding in flight is then interrupted; the crash
automation and the recovery sweep start it again as a deployment run, cli/recover.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import typer

from cli.watchdog_cmd import ChildProcess, start_child

# Quiet about the background task's own log lines, which have no flow run to send them to.
WARM_ENV = {
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def warm_worker(
    limit: int = typer.Option(
        8, min=1, max=64, help="runs at once in this process (each is a thread)"
    ),
) -> None:
    """Run submitted offboardings (emergencies from the intake, a bulk run's leavers) and bulk
    onboarding rows in this process, LIMIT at once, until Ctrl-C or SIGTERM."""
    from connectors.settings import SettingsError, load_settings

    try:
        load_settings()  # a bad setting is said now, not at the first emergency
    except SettingsError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if not os.environ.get("PREFECT_API_URL"):
        typer.secho(
            "error: no Prefect server: set PREFECT_API_URL or start `handover up` first",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    from prefect.task_worker import serve

    from flows.onboard_bulk import onboard_row_warm
    from flows.warm import offboard_warm

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # in the main thread, which waits in serve()

    # Prefect's task worker registers its SIGTERM handler from its event loop's thread, where
    # Python ignores it: SIGTERM is made a Ctrl-C here, so both stop the process at once. Its
    # websocket closes with it; the server then forgets this worker and submitters stop
    # choosing it (an offboarding in flight is started again by the recovery sweep).
    signal.signal(signal.SIGTERM, interrupt)
    tasks = (offboard_warm, onboard_row_warm)
    names = ", ".join(t.name for t in tasks)
    typer.echo(f"warm worker: serving {names}, {limit} at once; Ctrl-C stops it")
    with contextlib.suppress(KeyboardInterrupt):
        serve(*tasks, limit=limit)
    typer.echo("warm worker: stopped")


def start_warm_worker(
    *, limit: int = 8, env: dict[str, str] | None = None, log: Path | None = None
) -> ChildProcess:
    """Start ``handover warm-worker`` with this process's environment plus ``env`` (the
    ``HANDOVER_*`` settings, the shared scheduling storage); its output goes to ``log``."""
    from cli.recover import HEARTBEAT_SECONDS

    # Heartbeats: the crash automation then sees a run whose process died (cli/recover.py).
    heartbeats = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
    return start_child(
        ["warm-worker", "--limit", str(limit)],
        env={**WARM_ENV, **heartbeats, **(env or {})},
        log=log,
    )


def wait_for_warm_worker(timeout: float = 60.0) -> None:
    """Wait until a warm worker serves the offboarding task (it subscribed on the server)."""
    import time

    from flows.warm import warm_workers

    deadline = time.monotonic() + timeout
    while not warm_workers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no warm worker subscribed within {timeout:g} s")
        time.sleep(0.5)
