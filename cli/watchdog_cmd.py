"""``handover watchdog``: the approval watchdog and the launch of due HR and Jira events, as a
process of its own beside the intake (which only records and resumes).

Every ``--every`` seconds (30 by default) it sweeps the pending approvals
(``approvals.watchdog.run_forever``: escalation, auto-deny, wake-ups a click missed, each run
backed off rather than woken at every sweep) and then, unless ``--no-launch``, starts the HR and
Jira events whose time has come as runs of the ``offboard/offboard`` and ``onboard/onboard``
deployments, and Extend clicks whose launch was lost, as ``extend-grant`` runs
(``intake.launch.launch_due``). It reads the ``HANDOVER_*`` settings (the ledger
above all) and ``PREFECT_API_URL``, like the intake, and stops on Ctrl-C or SIGTERM after the
sweep in progress.

``handover up`` starts it with the deployments; ``handover demo`` with ``--no-launch`` (its runs
are threads of the demo's own process, and none of its events is scheduled).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]


def watchdog(
    every: float = typer.Option(30.0, min=0.1, help="seconds between two sweeps"),
    launch: bool = typer.Option(
        True,
        "--launch/--no-launch",
        help="also start due HR and Jira events (offboard/offboard, onboard/onboard deployments)",
    ),
) -> None:
    """Sweep approvals (escalate, auto-deny, missed wake-ups) and start due HR and Jira events,
    every EVERY seconds, until Ctrl-C or SIGTERM."""
    from approvals.policy import PolicyError
    from approvals.services import Services
    from approvals.watchdog import run_forever
    from connectors.settings import SettingsError, load_settings

    try:
        svc = Services.from_settings(load_settings())
    except (SettingsError, PolicyError) as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    log = _log_to_stdout()
    also = []
    if launch:
        from cli.deploy import OFFBOARD_DEPLOYMENT, ONBOARD_DEPLOYMENT
        from cli.up import EXTEND_DEPLOYMENT
        from intake.app import EXTEND_SOURCE
        from intake.launch import Launcher, deployment_launcher, launch_due

        launchers: dict[str, Launcher] = {
            "hr": deployment_launcher(OFFBOARD_DEPLOYMENT),
            "jira": deployment_launcher(ONBOARD_DEPLOYMENT),
            # An Extend click claimed but never launched (the intake died): started here.
            EXTEND_SOURCE: deployment_launcher(EXTEND_DEPLOYMENT),
        }

        def due_events() -> None:
            for event_id, run in launch_due(svc, launchers):
                log.info("watchdog: due event %s started as run %s", event_id, run)

        also.append(due_events)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    typer.echo(
        f"watchdog: sweeping approvals{' and due events' if launch else ''} every {every:g} s "
        f"(ledger {svc.settings.ledger_database_url()}); Ctrl-C or SIGTERM stops it",
    )
    run_forever(svc, every=every, stop=stop, also=also)
    typer.echo("watchdog: stopped")


def _log_to_stdout() -> logging.Logger:
    """Our INFO lines (a run woken late, an event started) on stdout, whatever Prefect's
    logging setup does to the root logger."""
    import prefect  # noqa: F401  (its logging set-up comes first; ours is beside it)

    ours = logging.getLogger("handover")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    return logging.getLogger("handover.watchdog")


@dataclass
class ChildProcess:
    """A ``handover watchdog`` (or ``warm-worker``) subprocess (its own process group: a Ctrl-C
    meant for its parent reaches it only through ``stop``)."""

    proc: subprocess.Popen[bytes]
    log: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15) -> None:
        """SIGTERM (it ends after the sweep in progress), then SIGKILL after ``grace`` s."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_watchdog(
    *,
    every: float,
    launch: bool = True,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> ChildProcess:
    """Start ``handover watchdog`` with this process's environment plus ``env`` (the
    ``HANDOVER_*`` settings; ``PREFECT_API_URL`` is inherited); its output goes to ``log``."""
    args = ["watchdog", "--every", str(every), *([] if launch else ["--no-launch"])]
    return start_child(args, env=env, log=log)


def start_child(
    args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> ChildProcess:
    """Start ``handover ARGS…`` in a session of its own, with this process's environment plus
    ``env``; its output (both streams) goes to ``log`` (default: inherited)."""
    out = open(log, "ab") if log else None  # noqa: SIM115 (kept open for the child)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()  # the child has its own descriptor
    return ChildProcess(proc=proc, log=log)
