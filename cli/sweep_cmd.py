"""What ``handover expire`` and ``handover hygiene`` share: their options, and one sweep run in
this process, printed as a table or as one JSON object.

Exit codes (INTERFACES.md): 0 done, planned or nothing to do, 1 failed or blocked, 2 bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from cli.runbooks import EXIT, _bad, run_flow, show

NOW = typer.Option(None, "--now", help="the org's time, ISO 8601 (default: this machine's clock)")
DRY_RUN = typer.Option(False, "--dry-run", help="show the actions; write nothing")
AS_JSON = typer.Option(False, "--json", help="one JSON object on stdout")


def run_sweep(
    sweep: Callable[..., dict[str, Any]],
    *,
    now: str | None,
    dry_run: bool,
    as_json: bool,
    nothing: str,
) -> None:
    """Run ``sweep`` once at ``now``; print its actions (or ``status: nothing``) and exit with
    its status's code."""
    from flows.sweep import parse_now

    try:
        parse_now(now)
    except ValueError:
        raise _bad(f"--now: {now!r} is not an ISO 8601 time (e.g. 2025-06-01T09:00:00Z)") from None
    result = run_flow(sweep, {"now": now, "dry_run": dry_run}, as_json=as_json)
    if as_json or result["plan"]["steps"]:
        show(result, as_json=as_json)
    else:
        typer.echo(f"{result['status']}: {nothing}")
        for w in result.get("warnings", []):
            typer.echo(f"warning: {w}")
    for f in result.get("failures", []):
        typer.secho(f"failed: {f}", err=True, fg=typer.colors.RED)
    raise typer.Exit(EXIT.get(result["status"], 1))
