"""``handover approvals``, ``handover approve``, ``handover sandbox click`` and
``handover audit verify|export`` (INTERFACES.md). Who decides is :func:`cli.identity.acting`:
the signed-in person, or ``--as`` in sandbox mode only."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import typer
from rich.console import Console
from rich.table import Table

from connectors.settings import (
    SANDBOX_SLACK_APP_ID,
    SANDBOX_SLACK_TEAM_ID,
    SettingsError,
    load_settings,
)

approvals_app = typer.Typer(help="Approval requests.")
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _services() -> Any:
    from approvals.policy import PolicyError
    from approvals.services import Services

    try:
        return Services.from_settings(load_settings())
    except (SettingsError, PolicyError) as e:
        raise _fail(str(e)) from None


def _ledger() -> Any:
    from approvals.services import open_settings_ledger

    try:
        return open_settings_ledger(load_settings())
    except SettingsError as e:
        raise _fail(str(e)) from None


def _ledger_after(sweep: Callable[[Any], Iterable[str]] | None) -> Any:
    """The ledger to list from; with ``sweep``, after one sweep over the services (each line
    it reports goes to stderr, the listing stays clean on stdout)."""
    if sweep is None:
        return _ledger()
    svc = _services()
    for line in sweep(svc):
        typer.echo(line, err=True)
    return svc.ledger


def list_approvals(
    pending: bool = typer.Option(False, help="only pending requests"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
    sweep: bool = typer.Option(False, help="escalate / expire what is due"),
) -> None:
    """List approval requests: id, runbook, subject, plan hash, approvers, decisions, state."""
    from approvals.watchdog import sweep as run_sweep
    from domain.records import ApprovalState
    from ledger.approvals import list_approvals as rows

    db = _ledger_after(
        (lambda svc: (f"{a.approval_id}: {a.kind} ({a.result})" for a in run_sweep(svc)))
        if sweep
        else None
    )
    items = rows(db, state=ApprovalState.PENDING if pending else None)
    if as_json:
        typer.echo(json.dumps({"approvals": [a.model_dump(mode="json") for a in items]}))
        return
    t = Table(title="Approval requests")
    for col in ("id", "runbook", "subject", "plan", "approvers (per seat)", "decisions", "state"):
        t.add_column(col)
    for a in items:
        seats = "; ".join(" | ".join(s) or "—" for s in a.required) or "—"
        ds = (
            ", ".join(
                f"{d.approver} {d.decision}{'' if d.counted else ' (ignored)'}" for d in a.decisions
            )
            or "—"
        )
        t.add_row(a.id, a.runbook, a.subject, a.plan_hash[:12], seats, ds, a.state.value)
    Console().print(t)


def approve(
    approval_id: str = typer.Argument(..., help="the approval's id (apr-…)"),
    as_: str | None = typer.Option(
        None, "--as", help="sandbox mode only: the approver's email (else: handover login)"
    ),
    deny: bool = typer.Option(False, "--deny", help="deny instead of approve"),
    comment: str = typer.Option("", help="a comment kept with the decision"),
    plan: str | None = typer.Option(
        None,
        "--plan",
        help="the plan hash you were shown elsewhere (at least its first 12 characters); "
        "default: the plan this command prints",
    ),
) -> None:
    """Decide an approval without Slack, as the signed-in person: the plan is printed, and the
    decision is for exactly that plan (or for ``--plan``; refused if the plan changed since)."""
    from cli.identity import acting

    # Who decides first: a refused identity costs no import of the ledger or the flows.
    email, verified = acting(as_)
    from approvals.handler import DecisionRefused, decide
    from ledger.approvals import get_approval

    svc = _services()
    try:
        appr = get_approval(svc.ledger, approval_id)
    except KeyError:
        raise _fail(f"no approval {approval_id}") from None
    typer.echo(plan_shown(appr), err=True)
    try:
        out = decide(
            svc,
            approval_id,
            approver=email,
            decision="deny" if deny else "approve",
            plan_hash=plan or appr.plan_hash,
            verified=verified,
            channel="cli",
            comment=comment,
        )
    except DecisionRefused as e:
        raise _fail(str(e)) from None
    typer.echo(f"{approval_id}: {'deny' if deny else 'approve'} by {email} {out.message}")


def plan_shown(appr: Any) -> str:
    """What ``handover approve`` shows before it records: the request and its plan."""
    from domain.blocks import plan_text

    head = (
        f"Approval {appr.id} ({appr.state.value}): {appr.runbook} {appr.subject}, "
        f"asked by {appr.requester}\nPlan {appr.plan_hash[:12]} ({appr.plan_hash}):"
    )
    return head + "\n" + plan_text(appr.plan_lines, appr.plan_warnings, org=appr.org)


def click(
    approval_id: str = typer.Argument(..., help="an approval id (apr-…) or a task id (task-…)"),
    as_: str = typer.Option(..., "--as", help="the person clicking"),
    deny: bool = typer.Option(False, "--deny"),
    intake: str = typer.Option("http://127.0.0.1:8801", help="the intake's base URL"),
    plan_hash: str | None = typer.Option(
        None, help="the plan hash the message showed (default: the approval's current one)"
    ),
) -> None:
    """Act as that person clicking the Slack button (Approve/Deny, or a task's Done): a signed
    block_actions request. Sandbox mode only."""
    from cli.identity import require_sandbox

    require_sandbox("handover sandbox click")
    from ledger.approvals import get_approval
    from ledger.tasks import get_task

    settings = load_settings()
    is_task = approval_id.startswith("task-")
    try:
        if is_task:
            get_task(_ledger(), approval_id)
        else:
            appr = get_approval(_ledger(), approval_id)
    except KeyError:
        raise _fail(f"no {'task' if is_task else 'approval'} {approval_id}") from None
    if is_task and deny:
        raise _fail("a task has no Deny button: `handover tasks cant ID --reason …`")
    from connectors.slack import SlackMessenger

    user = SlackMessenger(settings).user_id(as_)
    if user is None:
        raise _fail(f"{as_} is not a Slack user")
    status, body = send_click(
        intake,
        settings.slack_signing_secret.get_secret_value(),
        approval_id=approval_id,
        plan_hash="" if is_task else plan_hash or appr.plan_hash,
        slack_user=user,
        deny=deny,
        task=is_task,
        team_id=settings.slack_team_id,
        app_id=settings.slack_app_id,
    )
    typer.echo(f"{status} {body}")
    if status != 200:
        raise typer.Exit(1)


def block_actions_body(
    *,
    approval_id: str,
    plan_hash: str,
    slack_user: str,
    deny: bool,
    channel: str | None = None,
    ts: str | None = None,
    task: bool = False,
    team_id: str = SANDBOX_SLACK_TEAM_ID,
    app_id: str = SANDBOX_SLACK_APP_ID,
) -> bytes:
    """The form body Slack posts for a button click (``payload=<json>``): Approve or Deny on
    an approval, or (``task``) Done on the task ``approval_id``; from workspace ``team_id``
    through app ``app_id``, as Slack names them in every payload."""
    action = (
        {"action_id": "task_done", "block_id": "human_task", "value": approval_id}
        if task
        else {
            "action_id": "deny" if deny else "approve",
            "block_id": "approval",
            "value": f"{approval_id}:{plan_hash}",
        }
    )
    payload = {
        "type": "block_actions",
        **from_slack(team_id=team_id, app_id=app_id),
        "user": {"id": slack_user, "team_id": team_id},
        # Slack stamps every click (trigger_id, action_ts): two clicks are two distinct bodies.
        "trigger_id": f"{time.time_ns()}.sandbox",
        "actions": [
            {
                **action,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def from_slack(
    *, team_id: str = SANDBOX_SLACK_TEAM_ID, app_id: str = SANDBOX_SLACK_APP_ID
) -> dict[str, Any]:
    """What Slack puts in every interaction payload about where it comes from: the workspace
    (``team``) and the app (``api_app_id``); the intake takes clicks only from its own."""
    return {"team": {"id": team_id, "domain": "sandbox"}, "api_app_id": app_id}


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for ``body``."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def send_click(intake: str, secret: str, **kw: Any) -> tuple[int, str]:
    body = block_actions_body(**kw)
    r = httpx.post(
        f"{intake.rstrip('/')}/slack/interactions",
        content=body,
        headers=sign(secret, body),
        timeout=10,
    )
    return r.status_code, r.text


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the chain's hashes and MACs (HANDOVER_AUDIT_KEY) and that it reaches its latest
    checkpoint (HANDOVER_AUDIT_CHECKPOINT); name the first bad seq."""
    from ledger.audit import verify

    v = verify(_ledger())
    for note in v.notes:
        typer.echo(f"note: {note}", err=True)
    if not v.ok:
        where = f" at seq {v.first_bad_seq}" if v.first_bad_seq is not None else ""
        typer.secho(f"audit log BROKEN{where}: {v.reason}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    if v.events == 0:
        typer.echo("audit log OK: no events yet")
        return
    parts = [f"{v.events} events, chain intact, MACs verified"]
    if v.unkeyed:
        parts.append(f"{v.unkeyed} unkeyed (an older Handover's; the first keyed event vouches)")
    parts.append(f"reaches its latest checkpoint (seq {v.checkpoint_seq})")
    if v.unanchored:
        parts.append(f"{v.unanchored} event(s) after it not checkpointed yet")
    typer.echo("audit log OK: " + "; ".join(parts))


@audit_app.command("export")
def audit_export(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | csv"),
    since: str | None = typer.Option(None, help="ISO 8601, e.g. 2026-11-01"),
) -> None:
    """Export the log, oldest first."""
    from ledger.audit import export

    if fmt not in ("jsonl", "csv"):
        raise _fail("--format must be jsonl or csv")
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise _fail(f"--since {since!r} is not an ISO 8601 date or time") from None
        if when.tzinfo is None:
            from datetime import UTC

            when = when.replace(tzinfo=UTC)
    for chunk in export(_ledger(), fmt, since=when):
        sys.stdout.write(chunk)
