"""``handover offboard EMAIL`` (or ``--csv FILE``): the leaver runbook from the terminal.

Exit codes (INTERFACES.md): 0 done or planned, 1 failed or blocked, 2 bad input (nothing
changed), 3 denied or timed out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import ValidationError

from cli.identity import requester_of
from cli.offboard_bulk_cmd import offboard_csv
from cli.options import AsJson, DryRun, Requester
from cli.runbooks import EXIT, _bad, require_prefect_server, run_flow, show, validation_message
from connectors.settings import SettingsError, load_settings


def _declare(subject: str, requester: str | None) -> str:
    """Record the emergency declaration of the person at the terminal; its id.

    The flow takes ``--emergency`` only with a recorded trigger (``tasks.triggers``): here, the
    signed-in person (``--requester`` in sandbox mode only), who must be one of the policy's
    ``emergency_declarers``. Exit 2 otherwise, nothing recorded or changed.
    """
    from approvals.policy import PolicyError, load_policy
    from approvals.services import open_settings_ledger
    from cli.identity import current_session, settings_here
    from domain.identity import SELF_DECLARED
    from tasks.triggers import declare

    settings = settings_here()
    if requester is not None:
        who, how = requester_of(requester, settings=settings), SELF_DECLARED.method
    else:
        session = current_session(settings)
        if session is None:
            hint = " (or, in sandbox mode, --requester EMAIL)" if settings.sandbox else ""
            raise _bad(f"an emergency is declared by a signed-in person: handover login{hint}")
        who, how = session.email, session.verified.method
    try:
        policy = load_policy(settings.policy)
    except PolicyError as e:
        raise _bad(str(e)) from None
    if who.lower() not in policy.declarers():
        raise _bad(
            f"{who} may not declare an emergency offboarding (the policy's emergency_declarers: "
            f"{', '.join(policy.emergency_declarers) or 'nobody'}); HR's signed event with "
            "security_risk starts one, or ask a declarer"
        )
    db = open_settings_ledger(settings)
    try:
        found = declare(db, subject=subject, declared_by=who, verified=how, now=datetime.now(UTC))
    finally:
        db.dispose()
    return found.id


def offboard(
    email: str | None = typer.Argument(None, help="who leaves (exact email)"),
    reason: str = typer.Option(
        ...,
        help="termination | contract_end | role_change | "
        "inactivity | security_incident | idp_removal",
    ),
    ticket: str = typer.Option("", help="Jira ticket key (created when missing)"),
    emergency: bool = typer.Option(False, help="lock out first, transfer after"),
    receiver: str | None = typer.Option(None, help="who receives their content"),
    keep_project: list[str] = typer.Option([], help="role_change: keep this project"),
    dry_run: DryRun = False,
    as_json: AsJson = False,
    requester: Requester = None,
    csv: Path | None = typer.Option(
        None, "--csv", help="a file of leavers (CSV with an email column, or one per line)"
    ),
    max_workers: int = typer.Option(8, min=1, max=32, help="--csv: leavers offboarded at once"),
    org: str = typer.Option(
        "", help="only this org (default: the main org, then every other org they are in)"
    ),
) -> None:
    """Leaver runbook: inventory, plan, approval, transfer, removal, rotation, verification.

    With --csv FILE: every leaver of the file, one approval for the batch.
    """
    asker = requester_of(requester)  # a refused requester costs no import of the flows
    from flows.offboard import OffboardRequest
    from flows.offboard import offboard as offboard_flow

    if csv is not None:
        if email or emergency or keep_project or ticket:
            raise _bad("--csv takes no EMAIL, --emergency, --keep-project or --ticket")
        offboard_csv(
            csv,
            reason=reason,
            receiver=receiver,
            requester=asker,
            dry_run=dry_run,
            as_json=as_json,
            max_workers=max_workers,
        )
    if email is None:
        raise _bad("give the leaver's EMAIL (or --csv FILE)")

    params = {
        "email": email,
        "reason": reason,
        "ticket": ticket,
        "emergency": emergency,
        "receiver": receiver,
        "keep_projects": keep_project,
        "dry_run": dry_run,
        "requester": asker,
        "org": org,
    }
    try:
        OffboardRequest(**params)
        load_settings().for_org(org)
    except ValidationError as e:
        raise _bad(validation_message(e)) from None
    except SettingsError as e:
        raise _bad(str(e)) from None
    if emergency and not dry_run:
        require_prefect_server(dry_run=False)  # before the declaration is recorded
        params["declaration"] = _declare(str(OffboardRequest(**params).email), requester)
    result = run_flow(offboard_flow, params, as_json=as_json)
    if result["status"] in ("planned",) or result["plan"]["steps"] or as_json:
        show(result, as_json=as_json)
    elif result["status"] == "nothing_to_do":
        # Say so (exit 0): an unknown or already offboarded address, or a typo — the warnings
        # name look-alike accounts.
        typer.echo(f"nothing_to_do: {email} has no access, content or keys to remove")
        for w in result.get("warnings", []):
            typer.echo(f"warning: {w}")
    if not as_json:
        for name, theirs in result.get("orgs", {}).items():
            typer.echo(f"org {name}: {theirs['status']} {theirs['failure']}".rstrip())
    raise typer.Exit(EXIT.get(result["status"], 1))
