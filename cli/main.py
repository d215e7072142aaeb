"""The ``handover`` command (INTERFACES.md). Exit codes: 0 done, 1 failed, 2 bad input,
3 denied or timed out.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cli import (
    approvals_cmd,
    change_cmd,
    expire_cmd,
    hygiene_cmd,
    login_cmd,
    offboard_cmd,
    onboard_cmd,
    org_cmd,
    review_cmd,
    tasks_cmd,
    warm_cmd,
    watchdog_cmd,
)
from cli.stack import HOME

app = typer.Typer(
    help="Handover: access runbooks (join, move, leave) as Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(
    help="The embedded sandbox world (org, IdP, Slack, Jira).", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(approvals_cmd.audit_app, name="audit")
app.add_typer(tasks_cmd.tasks_app, name="tasks")
app.add_typer(org_cmd.org_app, name="org")
app.command("approvals")(approvals_cmd.list_approvals)
app.command("approve")(approvals_cmd.approve)
app.command("offboard")(offboard_cmd.offboard)
app.command("onboard")(onboard_cmd.onboard)
app.command("hygiene")(hygiene_cmd.hygiene)
app.command("expire")(expire_cmd.expire)
app.command("review")(review_cmd.review)
app.command("change")(change_cmd.change)
app.command("change-email")(change_cmd.change_email)
app.command("watchdog")(watchdog_cmd.watchdog)
app.command("warm-worker")(warm_cmd.warm_worker)
app.command("login")(login_cmd.login)
app.command("logout")(login_cmd.logout)
app.command("whoami")(login_cmd.whoami)
sandbox_app.command("click")(approvals_cmd.click)


# Long-running commands keep Prefect's log lines: their logs (worker.log, watchdog.log) are
# where a stalled run is explained.
_KEEP_PREFECT_LINES = ("up", "watchdog", "warm-worker")
# Commands that start a Prefect server of their own: they join no other stack.
_OWN_SERVER = ("up", "demo")


@app.callback()
def _before_any_command(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", help="show Prefect's own log lines too"),
) -> None:
    """Before any command (and before prefect is imported, which reads these once):

    - Prefect's own INFO lines stay out of the terminal (what Handover prints says what was
      done) unless ``--verbose``; they still reach the Prefect server's run logs;
    - Prefect's telemetry is off: Handover reports to nobody (and, offline, it only printed
      "Failed to send telemetry");
    - without a ``PREFECT_API_URL``, the command joins the stack that ``handover up`` runs from
      this directory (``HANDOVER_HOME``), as its state file says, and tells so on stderr; a stale
      state file is reported and not used (``cli.stack.join_running_stack``);
    - a ``PREFECT_API_URL`` on loopback gets the credential of the local ``handover up`` stack
      (``cli.stack.join_local_stack``).
    """
    from cli.stack import join_local_stack, join_running_stack

    if not verbose and ctx.invoked_subcommand not in _KEEP_PREFECT_LINES:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    home = Path(os.environ.get("HANDOVER_HOME") or HOME)
    if not os.environ.get("PREFECT_API_URL") and ctx.invoked_subcommand not in _OWN_SERVER:
        said = join_running_stack(home)
        if said:
            typer.echo(said, err=True)
    join_local_stack(home)


def bad_input(message: str) -> typer.Exit:
    """Print a clear message on stderr and exit 2 (bad input, nothing changed)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


@sandbox_app.command("up")
def sandbox_up(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8800, min=1, max=65535, help="one port for every API"),
    db: Path = typer.Option(HOME / "sandbox.db", help="SQLite file; kept across restarts"),
    seed: str = typer.Option("demo", help="demo | empty | scale:N (applied to a new DB only)"),
    fault_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="probability of a 5xx"),
    rate_limit: int | None = typer.Option(None, min=1, help="requests/min per API (429 beyond)"),
    latency_ms: float = typer.Option(0.0, min=0.0, max=60_000, help="added to every API call"),
) -> None:
    """Serve the whole sandbox world on one port until Ctrl-C."""
    import os

    import uvicorn

    # The sandbox's own development credentials are what it serves: sandbox mode, for this
    # process and anything it starts.
    os.environ["HANDOVER_SANDBOX"] = "1"

    from sandbox.app import create_app
    from sandbox.control import seed_spec
    from sandbox.world import Credentials, FaultSettings

    try:
        seed = seed_spec(seed)
    except ValueError as e:
        raise bad_input(str(e)) from None
    faults = FaultSettings(fault_rate=fault_rate, rate_limit=rate_limit, latency_ms=latency_ms)
    typer.echo(f"seeding {seed} into {db} (skipped if the database already has a world)…")
    from sandbox.control import OutdatedWorld

    try:
        application = create_app(db, seed=seed, faults=faults)
    except OutdatedWorld as e:
        raise bad_input(str(e)) from None
    base = f"http://{host}:{port}"
    creds = Credentials()
    typer.echo(
        "\n".join(
            [
                f"sandbox on {base}",
                f"  org SCIM    {base}/scim/1          Bearer {creds.org_scim_key}",
                f"  org admin   {base}/admin/v1        Bearer {creds.org_admin_token}",
                f"  IdP SCIM    {base}/idp/scim/v2     Bearer {creds.idp_token}",
                f"  IdP OIDC    {base}/idp/oidc        any active IdP user, password "
                f"{creds.idp_user_password}",
                f"  Slack       {base}/slack/api/      {creds.slack_bot_token}",
                f"  Jira        {base}/jira            {creds.jira_user} / {creds.jira_token}",
                f"  controls    {base}/_sandbox/docs",
                "Ctrl-C stops it; the state stays in the database file.",
            ]
        )
    )
    uvicorn.run(application, host=host, port=port, log_level="warning", lifespan="off")


@app.command()
def demo(
    keep: bool = typer.Option(False, help="keep the demo database afterwards"),
    interactive: bool = typer.Option(
        False, help="leave one approval for you to decide in the web console, and wait for it"
    ),
) -> None:
    """Run the demo stories on a throw-away sandbox (what ``make demo`` runs).

    Starts the stack on free loopback ports, runs the stories, prints a summary and stops
    everything.
    """
    import os

    from cli import demo as demo_mod  # the sandbox loads only for the commands that use it

    os.environ["HANDOVER_SANDBOX"] = "1"  # the demo runs on the sandbox only, children too
    raise typer.Exit(demo_mod.run(keep=keep, interactive=interactive))


@app.command()
def up(
    port: int = typer.Option(8800, min=1, max=65535, help="sandbox port"),
    intake_port: int = typer.Option(8801, min=1, max=65535),
    prefect_port: int = typer.Option(4200, min=1, max=65535),
    no_sandbox: bool = typer.Option(False, help="use the HANDOVER_* settings' real systems"),
    prefect_db_url: str | None = typer.Option(
        None, help="postgresql+asyncpg://… (default: SQLite under .handover/prefect)"
    ),
    postgres: bool = typer.Option(
        False,
        "--postgres",
        help="the Prefect server and the ledger on a local PostgreSQL (Debian's postgresql) "
        "under .handover/postgres, started and stopped with the stack",
    ),
    warm_worker: bool = typer.Option(
        True,
        "--warm-worker/--no-warm-worker",
        help="also run a warm worker (emergencies and bulk leavers without a new interpreter "
        "each); without it every run goes to the process worker",
    ),
) -> None:
    """Start the long-running stack: Prefect server, deployments and workers, the intake,
    the sandbox; Ctrl-C stops everything."""
    import os

    from cli.up import up as run_up  # lazy: PREFECT_API_URL is set before prefect is imported

    if not no_sandbox:  # the sandbox's credentials: sandbox mode, for us and our children
        os.environ["HANDOVER_SANDBOX"] = "1"
    raise typer.Exit(
        run_up(
            port_sandbox=port,
            port_intake=intake_port,
            no_sandbox=no_sandbox,
            prefect_port=prefect_port,
            db_url=prefect_db_url,
            postgres=postgres,
            warm=warm_worker,
            # The state under HANDOVER_HOME, where the other commands look for it.
            home=Path(os.environ.get("HANDOVER_HOME") or HOME),
        )
    )


if __name__ == "__main__":
    app()
