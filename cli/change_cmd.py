"""``handover change`` and ``handover change-email``: validate, run the flow in this process,
print the outcome as a table or as one JSON object (exit codes as ``cli.runbooks``; an email
change waiting for the invitee to accept exits 0 and says to run the same command again)."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from cli.identity import requester_of
from cli.options import AsJson, DryRun, Requester
from cli.runbooks import EXIT, _bad, run_flow, show, validation_message

CHANGE_EXIT = {**EXIT, "invalid": 2, "waiting_for_acceptance": 0}


def _projects(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, role = v.partition("=")
        if not sep or not name.strip() or not role.strip():
            raise _bad(f"--project takes NAME=ROLE (ROLE: viewer|member|manager|admin|none): {v!r}")
        out[name.strip()] = role.strip()
    return out


def _finish(result: dict[str, Any], *, as_json: bool) -> None:
    status = str(result["status"])
    if status == "invalid":
        raise _bad("; ".join(result["plan"]["blockers"]))
    show(result, as_json=as_json)
    if result.get("message") and not as_json:
        typer.echo(str(result["message"]))
    raise typer.Exit(CHANGE_EXIT.get(status, 1))


def change(
    email: str = typer.Argument(..., help="whose access changes (exact email)"),
    project: list[str] = typer.Option(
        [], "--project", help="NAME=ROLE (viewer|member|manager|admin|none); repeatable"
    ),
    org_role: str | None = typer.Option(None, "--org-role", help="viewer|member|manager|admin"),
    module_add: list[str] = typer.Option([], "--module-add", help="grant an add-on module"),
    module_remove: list[str] = typer.Option([], "--module-remove", help="revoke a module"),
    ticket: str = typer.Option("", help="Jira ticket key to comment on"),
    dry_run: DryRun = False,
    as_json: AsJson = False,
    requester: Requester = None,
) -> None:
    """Mover runbook: narrow or widen scope on *effective* access (groups included)."""
    asker = requester_of(requester)  # a refused requester costs no import of the flows
    from flows.change import change_access, validate_change

    params = {
        "email": email,
        "projects": _projects(project),
        "org_role": org_role,
        "modules_add": module_add,
        "modules_remove": module_remove,
        "ticket": ticket,
        "dry_run": dry_run,
        "requester": asker,
    }
    try:
        validate_change(**params)
    except ValidationError as e:
        raise _bad(validation_message(e)) from None
    _finish(run_flow(change_access, params, as_json=as_json), as_json=as_json)


def change_email(
    old: str = typer.Argument(..., help="the current address"),
    new: str = typer.Argument(..., help="the new address"),
    ticket: str = typer.Option("", help="Jira ticket key to comment on"),
    dry_run: DryRun = False,
    as_json: AsJson = False,
    requester: Requester = None,
) -> None:
    """Email change: invite the new address, transfer all content, remove the old one."""
    asker = requester_of(requester)  # a refused requester costs no import of the flows
    from flows.email_change import EmailChangeRequest
    from flows.email_change import change_email as change_email_flow

    params = {"old": old, "new": new, "ticket": ticket, "dry_run": dry_run, "requester": asker}
    try:
        EmailChangeRequest(**params)
    except ValidationError as e:
        raise _bad(validation_message(e)) from None
    _finish(run_flow(change_email_flow, params, as_json=as_json), as_json=as_json)
