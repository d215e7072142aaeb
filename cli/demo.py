"""``handover demo``: the stories, end to end, on a throw-away stack on free loopback ports —
a Prefect server, the sandbox world, and the intake — stopped cleanly at the end.

1. The embedded world, seen through the same client libraries the runbooks use.
2. HR terminates Dana (sole Admin of Development, owner of 22 assets, manager of two API keys):
   a signed HR webhook → the offboarding flow plans and pauses at the gate → her manager clicks
   Approve in Slack (a signed ``block_actions`` request) → promote, transfer, IdP, removal,
   rotation → the verification table.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from cli.stack import HOME, start_prefect_server, start_sandbox
from sandbox.world import Credentials


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def run(*, keep: bool = False) -> int:
    console = Console()
    home = (HOME / "demo").resolve()
    shutil.rmtree(home, ignore_errors=True)
    # Prefect's INFO lines would drown the story; warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    t0 = time.monotonic()
    with console.status("starting a Prefect server, the sandbox and the intake…"):
        prefect = start_prefect_server(home / "prefect")
        sb = start_sandbox(db=home / "sandbox.db", seed="demo")
    console.print(
        f"[bold]stack up[/] in {time.monotonic() - t0:.1f} s: Prefect {prefect.url}, "
        f"sandbox {sb.url}"
    )
    intake = None
    try:
        show_world(console, sb.url, Credentials())
        intake = offboarding_story(console, sb.url, home)
    finally:
        if intake is not None:
            intake.stop()
        sb.stop()
        prefect.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    console.print("[green]demo done[/]: every service stopped cleanly")
    return 0


def offboarding_story(console: Console, url: str, home: Path) -> Any:
    # Imported here: PREFECT_API_URL must point at our server before prefect is imported.
    from cli.approvals_cmd import send_click
    from cli.stack import local_runtime, serve_app
    from flows.offboard import offboard
    from intake.app import create_intake
    from intake.hooks import sign_hr
    from intake.launch import thread_launcher
    from ledger.approvals import list_approvals
    from ledger.audit import verify

    rt, svc = local_runtime(url, home)
    settings = rt.settings
    launcher = thread_launcher(offboard)
    intake = serve_app(create_intake(svc, sweep_every=5, launcher=launcher), name="intake")
    console.rule("[bold]HR terminates dana.sole@acme.com")
    body = json.dumps(
        {
            "event_id": "hr-evt-1001",
            "type": "employee.terminated",
            "employee": {"email": "dana.sole@acme.com", "name": "Dana Sole"},
        }
    ).encode()
    secret = settings.hr_webhook_secret.get_secret_value()
    t0 = time.monotonic()
    r = httpx.post(f"{intake.url}/hooks/hr", content=body, headers=sign_hr(secret, body))
    console.print(f"POST /hooks/hr → {r.status_code} {r.json()}")
    again = httpx.post(f"{intake.url}/hooks/hr", content=body, headers=sign_hr(secret, body))
    console.print(f"the same event delivered again → {again.status_code} (same run, nothing new)")
    run_ref = r.json()["run"]
    appr = wait_for(
        "the approval request",
        lambda: next(
            (a for a in list_approvals(rt.ledger) if a.subject == "dana.sole@acme.com"), None
        ),
    )
    console.print(
        f"approval {appr.id} waiting for "
        f"{', '.join(p for seat in appr.required for p in seat)} "
        f"(rule: {appr.rule}); the manager gets a Slack DM with the plan"
    )
    time.sleep(1.0)
    user = rt.messenger.user_id("sofia.lead@acme.com")
    status, _ = send_click(
        intake.url,
        settings.slack_signing_secret.get_secret_value(),
        approval_id=appr.id,
        plan_hash=appr.plan_hash,
        slack_user=user or "",
        deny=False,
    )
    console.print(f"sofia.lead@acme.com clicks Approve in Slack → intake answers {status}")
    result = launcher.wait(run_ref, timeout=120)
    if isinstance(result, BaseException):
        raise result
    console.print(
        f"offboarding finished in {time.monotonic() - t0:.1f} s "
        f"(webhook → verified), status [bold]{result['status']}[/], ticket "
        f"{result.get('ticket')}"
    )
    steps = Table(title=f"plan {result['plan']['hash'][:12]}")
    for col in ("#", "step", "target", "effect"):
        steps.add_column(col)
    for i, s in enumerate(result["plan"]["steps"], 1):
        steps.add_row(
            str(i),
            s["kind"],
            s["target"][:40],
            result["effects"].get(f"{s['kind']}:{s['target']}", "—"),
        )
    console.print(steps)
    checks = Table(title="verification")
    checks.add_column("check")
    checks.add_column("result")
    for k, v in result["verification"].items():
        checks.add_row(k, f"[green]{v}[/]" if v == "pass" else f"[red]{v}[/]")
    console.print(checks)
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    dms = httpx.get(
        f"{url}/_sandbox/slack/messages", params={"user_email": "alice.admin@acme.com"}
    ).json()["messages"]
    rotated = [m for m in dms if "was rotated" in m["text"]]
    console.print(
        f"Slack: alice.admin@acme.com got {len(rotated)} DM(s) with a rotated key "
        "(secrets go by DM only, never a channel, the ticket or a log)"
    )
    v = verify(rt.ledger)
    console.print(f"audit log: {v.events} events, chain {'intact' if v.ok else 'BROKEN'}")
    return intake


def show_world(console: Console, url: str, creds: Credentials) -> None:
    admin = httpx.Client(
        base_url=f"{url}/admin/v1",
        timeout=10,
        headers={"Authorization": f"Bearer {creds.org_admin_token}"},
    )
    idp = httpx.Client(
        base_url=f"{url}/idp/scim/v2",
        timeout=10,
        headers={"Authorization": f"Bearer {creds.idp_token}"},
    )
    summary = httpx.get(f"{url}/_sandbox/summary", timeout=10).json()
    t = Table(title="The demo org (Amplitude-style backend)")
    t.add_column("what")
    t.add_column("count / detail")
    t.add_row("members", f"{summary['members']} {summary['members_by_status']}")
    t.add_row("org roles", str(summary["members_by_role"]))
    for p in summary["projects"]:
        t.add_row(f"project {p['name']}", "admins: " + (", ".join(p["admins"]) or "—"))
    t.add_row("permission groups", str(summary["permission_groups"]))
    t.add_row("invitations", str(summary["invitations"]))
    t.add_row("assets", f"{summary['assets']} ({summary['unassigned_assets']} unassigned)")
    t.add_row("API keys", str(summary["api_keys"]))
    idp_users = idp.get("/Users", params={"count": 1}).json()["totalResults"]
    idp_groups = idp.get("/Groups", params={"count": 100}).json()["totalResults"]
    t.add_row("IdP users / groups", f"{idp_users} / {idp_groups}")
    console.print(t)
    cases = Table(title="Planted hard cases")
    cases.add_column("person")
    cases.add_column("why it is hard")
    for email, why in [
        (
            "dana.sole@acme.com",
            "terminated today; sole Admin of Development; owns assets; "
            "manages 2 API keys; exported data last week",
        ),
        ("mike.stale@acme.com", "Manager, last login 45 days ago: cannot receive content"),
        ("gina.groups@acme.com", "two groups with different roles in Production (union)"),
        ("jon.smith@gmail.com", "look-alike of jon.smith@acme.com (same name, other domain)"),
        ("analytics-vendor-lee.park@vendorco.com", "service account, IdP-managed"),
        ("carla.contract@agency.io", "contractor, contract ends in 10 days"),
        ("frank.former@acme.com", "terminated, deactivated in the IdP, still in the org"),
    ]:
        d = admin.get(f"/members/{email}").json()
        cases.add_row(
            email,
            f"{why}\n[dim]{d['org_role']}, last login "
            f"{(d['last_login_at'] or 'never')[:10]}, owns "
            f"{sum(d['owned_assets'].values())}[/]",
        )
    console.print(cases)
