"""``handover org`` (is Handover holding new runs?) and ``handover org resume`` (the key was
replaced: ask the org once, then let the held runs go on, recorded as the signed-in person, or
``--as EMAIL`` in sandbox mode) — ``approvals.holds``."""

from __future__ import annotations

import json

import typer

from cli.approvals_cmd import _fail, _services
from cli.identity import acting, resume_hint

org_app = typer.Typer(
    help="The org's credentials: whether new runs are held because the org rejected the key.",
    invoke_without_command=True,
)

# What the probe asks for: an address no org has (the answer is "no such member" or a 401).
PROBE_EMAIL = "handover-credentials-check@invalid.example"


@org_app.callback()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
) -> None:
    """Say whether new runs are held (exit 1 while they are)."""
    if ctx.invoked_subcommand is not None:
        return
    from approvals.holds import held

    hold = held(_services())
    if as_json:
        body: dict[str, object] = {"held": hold is not None}
        if hold is not None:
            body |= {"since": hold.since.isoformat(), "reason": hold.reason}
        typer.echo(json.dumps(body))
    elif hold is None:
        typer.echo("new runs are not held")
    else:
        typer.echo(
            f"new runs are held since {hold.since.isoformat(timespec='seconds')}: {hold.reason}\n"
            f"replace the key, then: {resume_hint()}"
        )
    if hold is not None:
        raise typer.Exit(1)


@org_app.command("resume")
def resume(
    as_: str | None = typer.Option(
        None, "--as", help="sandbox mode only: who replaced the key (else: the signed-in person)"
    ),
) -> None:
    """Ask the org once with the key the settings hold now; accepted, the held runs go on."""
    email, verified = acting(as_)  # a refused identity costs no import of the runtime
    from approvals.holds import lift_hold
    from connectors.errors import ConnectorError
    from tasks.runtime import Runtime

    svc = _services()
    org = Runtime.from_settings(svc.settings).org  # the org connector, with the key set now
    # Read before the hold is lifted: a held run that looks at the ledger in between goes on
    # by itself, and is still one this command let go on.
    known = _held_runs()
    try:
        lifted = lift_hold(
            svc, by=email, verified=verified, probe=lambda: org.get_member(PROBE_EMAIL)
        )
    except ConnectorError as e:
        raise _fail(f"the org still refuses: {e} — new runs stay held", code=1) from None
    if lifted is None:
        typer.echo("the org accepts the key; new runs were not held")
    else:
        typer.echo(f"the org accepts the key; new runs go on (held since {lifted.since})")
        _wake_held_runs(known)


def _held_runs() -> list[str] | None:
    """The runs held on the Prefect server this command joined (cli.main); None without one
    (no PREFECT_API_URL: Prefect would start a throw-away server, where no run waits) or when
    it does not answer."""
    import os

    from approvals.holds import held_runs

    if not os.environ.get("PREFECT_API_URL"):
        return None
    try:
        return held_runs()
    except Exception:  # said by _wake_held_runs, which asks again
        return None


def _wake_held_runs(known: list[str] | None) -> None:
    """Wake the held runs on the Prefect server this command joined (``known``: those held
    before the hold was lifted); without one, or when it does not answer, they go on by
    themselves at their next poll."""
    import os

    from approvals.holds import POLL_S, wake_held_runs

    later = f"the held runs go on within {POLL_S} s, when they next look"
    if not os.environ.get("PREFECT_API_URL"):
        typer.echo(later)
        return
    try:
        woken = wake_held_runs(known or ())
    except Exception as e:  # the hold is lifted; waking is only sooner
        typer.echo(f"could not reach the Prefect server ({type(e).__name__}): {later}", err=True)
        return
    typer.echo(f"{woken} held run{'' if woken == 1 else 's'} woken")
