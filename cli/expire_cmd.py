"""``handover expire``: one temporary-access expiry sweep in this process (revoke what is due,
remind before the end, report drift), printed as a table or as one JSON object.

Exit codes (INTERFACES.md): 0 done, planned or nothing to do, 1 failed or blocked, 2 bad input.
"""

from __future__ import annotations

import typer

from cli.runbooks import EXIT, _bad, run_flow, show


def expire(
    now: str | None = typer.Option(
        None, "--now", help="the org's time, ISO 8601 (default: this machine's clock)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the actions; write nothing"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Temporary-access expiry: revoke due grants, remind before the end, report drift."""
    from flows.expire import expire_access
    from flows.hygiene import parse_now

    try:
        parse_now(now)
    except ValueError:
        raise _bad(f"--now: {now!r} is not an ISO 8601 time (e.g. 2025-06-01T09:00:00Z)") from None
    result = run_flow(expire_access, {"now": now, "dry_run": dry_run}, as_json=as_json)
    if as_json or result["plan"]["steps"]:
        show(result, as_json=as_json)
    else:
        typer.echo(f"{result['status']}: no grant to revoke or remind about")
        for w in result.get("warnings", []):
            typer.echo(f"warning: {w}")
    for f in result.get("failures", []):
        typer.secho(f"failed: {f}", err=True, fg=typer.colors.RED)
    raise typer.Exit(EXIT.get(result["status"], 1))
