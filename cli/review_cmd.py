"""``handover review [--roster FILE] [--inactive-days 90] [--members-export FILE] [--json]
[--dry-run]``: the quarterly access review against an HR roster (CSV or JSON), in this process
(``--members-export``: the console's Members export, for a SCIM-only org). Without ``--roster``
the roster is read from the HR system's API (``HANDOVER_HR_API``: hibob, bamboohr or merge).

Exit codes (INTERFACES.md): 0 done, planned or nothing to do; 1 failed; 2 bad input (the roster's
row and field problems on stderr, nothing read from the org); 3 denied or timed out.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.runbooks import EXIT, _bad, run_flow, show


def review(
    roster: Path | None = typer.Option(
        None,
        "--roster",
        help="the HR roster, CSV or JSON (default: read from HANDOVER_HR_API's HR system)",
    ),
    inactive_days: int = typer.Option(
        90, "--inactive-days", help="no login for this many days is inactive"
    ),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    dry_run: bool = typer.Option(False, "--dry-run", help="find and report; change nothing"),
    members_export: Path | None = typer.Option(
        None,
        "--members-export",
        help="the console's Members export (CSV): last logins and roles a SCIM-only org "
        "does not give by API",
    ),
) -> None:
    """Access review: terminated, unknown and inactive people, Admins, group over-privilege and
    stale invitations; security approves the removals, which run the offboarding."""
    from connectors.hris import RosterError, RosterFile
    from flows.review import access_review

    if inactive_days < 1:
        raise _bad(f"--inactive-days: {inactive_days} must be at least 1")
    if roster is not None:
        try:
            RosterFile(roster)
        except RosterError as e:
            raise _bad(str(e)) from None
    else:
        _check_hr_api()
    params: dict[str, object] = {
        "roster": str(roster) if roster is not None else None,
        "inactive_days": inactive_days,
        "dry_run": dry_run,
    }
    if members_export is not None:
        from connectors.org.export import MembersExportError, read_members_export

        try:
            read_members_export(members_export)
        except MembersExportError as e:
            raise _bad(f"--members-export: {e}") from None
        params["members_export"] = str(members_export)
    result = run_flow(access_review, params, as_json=as_json)
    if as_json:
        show(result, as_json=True)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"access review — {result['status']}")
        for col in ("#", "kind", "subject", "detail", "action", "outcome"):
            t.add_column(col)
        for i, f in enumerate(result["findings"], 1):
            t.add_row(str(i), f["kind"], f["subject"], f["detail"], f["action"], f["outcome"])
        c = Console()
        c.print(t)
        c.print(f"reports: {result['reports']['csv']} {result['reports']['html']}")
    raise typer.Exit(EXIT.get(result["status"], 1))


def _check_hr_api() -> None:
    """Exit 2 unless ``HANDOVER_HR_API`` names an HR system whose API gives a roster."""
    from connectors.hris import ROSTER_APIS
    from connectors.settings import SettingsError, load_settings

    try:
        vendor = load_settings().hr_api_checked()
    except SettingsError as e:
        raise _bad(str(e)) from None
    if vendor not in ROSTER_APIS:
        said = f"HANDOVER_HR_API={vendor} gives no roster" if vendor else "HANDOVER_HR_API is unset"
        raise _bad(
            f"no roster: give --roster FILE (CSV or JSON), or set HANDOVER_HR_API to one of "
            f"{', '.join(ROSTER_APIS)} to read it from the HR system ({said})"
        )
