"""``handover onboard``: the joiner runbook from a ticket or from options (INTERFACES.md).

``--ticket KEY | --email E --project NAME=ROLE … [--org-role R] [--module M …] [--until DATE]
[--justification TEXT] [--dry-run] [--json]``. Bad input exits 2 with a clear message before
anything is read or written; so does a request the org refuses (unknown project: the flow says
``rejected``), a request for an existing member (``change_needed``: use ``handover change``),
a ticket that is not an access request (``not_an_access_request``: the ticket is told so) and
a ticket Jira does not have (``unknown_ticket``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import ValidationError

from cli.identity import requester_of
from cli.options import AsJson, DryRun, Requester
from cli.runbooks import EXIT, _bad, run_flow, show, validation_message
from connectors.settings import SettingsError, load_settings

# Statuses of this runbook beyond the shared ones (cli.runbooks.EXIT).
ONBOARD_EXIT = {
    **EXIT,
    "rejected": 2,
    "change_needed": 2,
    "not_an_access_request": 2,  # answered on the ticket; nothing else done
    "unknown_ticket": 2,
}


def _projects(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, eq, role = v.partition("=")
        if not eq or not name.strip() or not role.strip():
            raise _bad(f"--project {v!r}: expected NAME=ROLE (e.g. Production=viewer)")
        if name.strip().casefold() in {n.casefold() for n in out}:
            raise _bad(f"--project {name.strip()!r} is given twice")
        out[name.strip()] = role.strip().lower()
    return out


def onboard(
    ticket: str = typer.Option(
        "", help="an access-request ticket (e.g. ACC-1; HANDOVER_JIRA_REQUEST_TYPES/_LABEL)"
    ),
    email: str = typer.Option("", help="who joins (without a ticket)"),
    project: list[str] = typer.Option([], help="NAME=ROLE, once per project"),
    org_role: str = typer.Option("viewer", help="viewer | member | manager | admin"),
    module: list[str] = typer.Option([], help="govern | experiment | audiences | data_tables"),
    until: str | None = typer.Option(None, help="end of temporary access (YYYY-MM-DD)"),
    justification: str = typer.Option("", help="why (goes into the invitation note)"),
    idp: bool | None = typer.Option(
        None, "--idp/--no-idp", help="pre-provision in the IdP (default: the setting)"
    ),
    dry_run: DryRun = False,
    as_json: AsJson = False,
    requester: Requester = None,
    csv: Path | None = typer.Option(
        None, "--csv", help="a CSV of access requests: every row planned, one approval"
    ),
    max_workers: int = typer.Option(4, min=1, max=32, help="--csv: rows applied at once"),
    org: str = typer.Option("", help="the org to join (default: the main org)"),
) -> None:
    """Joiner runbook: validate, plan, approval, invite (or IdP), verify, record."""
    asker = requester_of(requester)  # a refused requester costs no import of the flows
    from flows.onboard import OnboardRequest
    from flows.onboard import onboard as onboard_flow

    if csv is not None:
        if ticket or email or project:
            raise _bad("give --csv, or --ticket, or --email with --project: not several")
        from cli.onboard_bulk_cmd import onboard_csv

        onboard_csv(csv, dry_run=dry_run, as_json=as_json, requester=asker, max_workers=max_workers)

    params = {
        "ticket": ticket.strip(),
        "email": email.strip(),
        "projects": _projects(project),
        "org_role": org_role.strip().lower(),
        "modules": [m.strip().lower() for m in module],
        "until": until,
        "justification": justification,
        "requester": asker,
        "dry_run": dry_run,
        "idp_managed": idp,
        "org": org.strip(),
    }
    try:
        checked = OnboardRequest(**{**params, "email": params["email"] or None})
        settings = load_settings()
        settings.for_org(checked.org)
        if checked.ticket:  # which tickets are requests: a bad setting is said before any run
            settings.request_kinds()
    except ValidationError as e:
        raise _bad(validation_message(e)) from None
    except SettingsError as e:
        raise _bad(str(e)) from None
    if checked.until is not None and checked.until <= datetime.now(UTC).date():
        raise _bad(f"--until {checked.until.isoformat()} is not in the future")
    result = run_flow(onboard_flow, params, as_json=as_json)
    status = result["status"]
    if as_json or result["plan"]["steps"] or status == "planned":
        show(result, as_json=as_json)
    if not as_json:
        if status in ("rejected", "not_an_access_request", "unknown_ticket"):
            typer.secho(result.get("problems", "the request is invalid"), err=True, fg="red")
        elif status == "change_needed":
            typer.secho(
                f"change_needed: {result.get('subject')} is already a member — use "
                f"handover change ({'; '.join(result.get('change', []))})",
                err=True,
            )
        elif status == "nothing_to_do":
            typer.echo("nothing_to_do: the access is already there (or the ticket was handled)")
        for w in result.get("warnings", []) if not result["plan"]["steps"] else []:
            typer.echo(f"warning: {w}")
    raise typer.Exit(ONBOARD_EXIT.get(status, 1))
