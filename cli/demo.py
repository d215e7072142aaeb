"""``handover demo``: the stories, end to end, on a throw-away stack on free loopback ports —
a Prefect server, the sandbox world, the intake and the approval watchdog (``handover watchdog
--no-launch``, its own process, as under ``handover up``; the runs are threads of this process
and no event of the stories is scheduled, so it starts none) — stopped cleanly at the end.

1. The embedded world, seen through the same client libraries the runbooks use.
2. HR terminates Dana (sole Admin of Development, owner of 22 assets, manager of two API keys):
   a signed HR webhook → the offboarding flow plans and pauses at the gate → her manager clicks
   Approve in Slack (a signed ``block_actions`` request) → promote, transfer, IdP, removal,
   rotation → the verification table.
3. A vendor asks for access in Jira (ACC-1): a signed Jira webhook → the onboarding flow
   validates the ticket and pauses for the data-governance lead (Govern was asked for) → one
   click → an invitation with exactly the requested roles, modules and note; a temporary grant
   with its end date in the ledger; the ticket Done. The invalid ticket ACC-2 gets one comment
   listing every problem, and nothing is provisioned.
4. Time passes (the sweep is given a later "now"): the vendor's temporary access gets its
   3-day reminder (with an Extend button), then expires and is revoked, and the record says how
   late the sweep was.
5. The same kind of offboarding on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``, real
   Amplitude's API): the replacement Admin, the content transfer and the keys are human tasks;
   an IT admin transfers the content in the console and clicks Done in Slack for each, the
   removal waits for them, and the verification says what she attested.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table

from cli.runbooks import verification_table
from cli.stack import HOME, free_port, start_prefect_server, start_sandbox
from cli.watchdog_cmd import start_watchdog
from ledger import open_ledger
from sandbox.world import Credentials


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def run(*, keep: bool = False, interactive: bool = False) -> int:
    console = Console()
    home = (HOME / "demo").resolve()
    shutil.rmtree(home, ignore_errors=True)
    # Prefect's INFO lines would drown the story; warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Everything runs on the sandbox: its development credentials, for us and our children.
    os.environ["HANDOVER_SANDBOX"] = "1"
    t0 = time.monotonic()
    with console.status("starting a Prefect server, the sandbox and the watchdog…"):
        prefect = start_prefect_server(home / "prefect")
        sb = start_sandbox(db=home / "sandbox.db", seed="demo")
        # The stories' ledger (cli.stack.local_runtime), whose approvals the watchdog sweeps:
        # its tables are made here, before two processes open it.
        ledger_url = f"sqlite:///{home / 'ledger.db'}"
        open_ledger(ledger_url).dispose()
        dog = start_watchdog(
            every=5,
            launch=False,
            env={"HANDOVER_LEDGER_URL": ledger_url},
            log=home / "watchdog.log",
        )
    console.print(
        f"[bold]stack up[/] in {time.monotonic() - t0:.1f} s: Prefect {prefect.url}, "
        f"sandbox {sb.url}, watchdog every 5 s"
    )
    intake = None
    try:
        show_world(console, sb.url, Credentials())
        # Imported here: PREFECT_API_URL must point at our server before prefect is imported.
        from cli.stack import local_runtime
        from tasks.runtime import use_runtime

        # The links in rotated-secret DMs point at the story's intake (served on this port).
        os.environ["HANDOVER_INTAKE_URL"] = f"http://127.0.0.1:{free_port()}"

        # The stories' runtime, bound for every flow run of this process: the runs the intake
        # launches in threads get it with the launcher's context (intake.launch).
        # HR's events name people by HiBob's id: read back from HiBob's API (the sandbox's).
        with use_runtime(local_runtime(sb.url, home, hr_api="hibob")) as rt:
            intake = offboarding_story(console, rt)
            onboarding_story(console, rt, intake)
            expiry_story(console, rt)
            scim_story(console, rt, intake, home)
            trust_story(console, rt, home)
            console_story(console, rt, intake, interactive=interactive)
    finally:
        if intake is not None:
            intake.stop()
        dog.stop()
        sb.stop()
        prefect.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    console.print("[green]demo done[/]: every service stopped cleanly")
    return 0


def offboarding_story(console: Console, rt: Any) -> Any:
    # Imported here: PREFECT_API_URL must point at our server before prefect is imported.
    from cli.approvals_cmd import send_click
    from cli.stack import serve_app
    from flows.offboard import offboard
    from intake.app import create_intake
    from intake.hr_vendors import sign_hibob
    from intake.launch import thread_launcher
    from ledger.approvals import list_approvals
    from ledger.audit import verify

    url, settings = rt.settings.org_url, rt.settings
    from flows.onboard import onboard

    launcher = thread_launcher(offboard)
    intake = serve_app(
        create_intake(rt, launcher=launcher, onboard_launcher=thread_launcher(onboard)),
        port=urlsplit(settings.intake_url).port,
        name="intake",
    )
    console.print(
        f"web console: [bold]{intake.url}/console/[/] (sign in as any sandbox person, "
        "password sandbox-password)"
    )
    console.rule("[bold]HR (HiBob) terminates dana.sole@acme.com")
    console.print(
        f"identity provider: [bold]{settings.idp_kind}[/] "
        "(HANDOVER_IDP_KIND=okta or entra make demo: the same stories through that vendor's API)"
    )
    # HiBob's own event, as Bob sends it on the leaving date: the employee by id only, read
    # back from HiBob's API (the sandbox's imitation) for the email.
    people = httpx.get(f"{url}/_sandbox/hr/employees", timeout=10).json()["employees"]
    bob_id = next(p["hibob_id"] for p in people if p["email"] == "dana.sole@acme.com")
    body = json.dumps(
        {
            "companyId": 636192,
            "type": "employee.left",
            "triggeredBy": "system",
            "triggeredAt": datetime.now(UTC).isoformat(timespec="microseconds")[:-6],
            "version": "v2",
            "data": {"employeeId": bob_id},
        }
    ).encode()
    secret = settings.hr_hibob_secret.get_secret_value()
    t0 = time.monotonic()
    hook = f"{intake.url}/hooks/hr/hibob"
    r = httpx.post(hook, content=body, headers=sign_hibob(secret, body))
    console.print(f"POST /hooks/hr/hibob (Bob-Signature) → {r.status_code} {r.json()}")
    again = httpx.post(hook, content=body, headers=sign_hibob(secret, body))
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
        f"(rule: {appr.rule}); the manager gets a Slack DM with the plan:"
    )
    for line in appr.plan_lines:
        console.print(f"  • {line}")
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
    console.print(verification_table(result["verification"]))
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    dms = httpx.get(
        f"{url}/_sandbox/slack/messages", params={"user_email": "alice.admin@acme.com"}
    ).json()["messages"]
    rotated = [m for m in dms if "was rotated" in m["text"]]
    console.print(
        f"Slack: alice.admin@acme.com got {len(rotated)} DM(s) about a rotated key, with a "
        f"one-time link to its new secret ({settings.intake_url}/secrets/…: she signs in there "
        "to see it once; the secret never goes to Slack, the ticket or a log)"
    )
    v = verify(rt.ledger)
    console.print(f"audit log: {v.events} events, chain {'intact' if v.ok else 'BROKEN'}")
    return intake


def slack_approve(console: Console, rt: Any, intake: Any, appr: Any, who: str) -> None:
    """``who`` clicks Approve on the approval's Slack message (a signed request to the intake)."""
    from cli.approvals_cmd import send_click

    status, _ = send_click(
        intake.url,
        rt.settings.slack_signing_secret.get_secret_value(),
        approval_id=appr.id,
        plan_hash=appr.plan_hash,
        slack_user=rt.messenger.user_id(who) or "",
        deny=False,
    )
    console.print(f"{who} clicks Approve in Slack → intake answers {status}")


def onboarding_story(console: Console, rt: Any, intake: Any) -> None:
    from intake.jira_hook import sign_jira
    from ledger.approvals import list_approvals
    from ledger.grants import grants

    url = rt.settings.org_url
    secret = rt.settings.jira_webhook_secret.get_secret_value()
    console.rule("[bold]A vendor asks for access in Jira (ACC-1, and the invalid ACC-2)")
    for key in ("ACC-2", "ACC-1"):
        body = json.dumps(
            {
                "webhookEvent": "jira:issue_created",
                "timestamp": int(time.time() * 1000),
                "issue": {"key": key, "fields": {"issuetype": {"name": "Access Request"}}},
            }
        ).encode()
        r = httpx.post(f"{intake.url}/hooks/jira", content=body, headers=sign_jira(secret, body))
        console.print(f"POST /hooks/jira ({key}) → {r.status_code} {r.json().get('status')}")
    vendor = "analytics-vendor-max.roe@vendorco.com"

    def issue(key: str) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{url}/_sandbox/jira/issues/{key}").json()
        return found

    bad = wait_for(
        "ACC-2 rejected", lambda: issue("ACC-2")["status"] == "Rejected" and issue("ACC-2")
    )
    console.print(f"ACC-2 → {bad['status']}; its comment:\n[dim]{bad['comments'][-1]}[/]")
    appr = wait_for(
        "the ACC-1 approval",
        lambda: next((a for a in list_approvals(rt.ledger) if a.subject == vendor), None),
    )
    seats = " and ".join(" or ".join(seat) for seat in appr.required)
    console.print(f"approval {appr.id} waiting for {seats} (rules: {appr.rule}); the plan:")
    for line in appr.plan_lines:
        console.print(f"  • {line}")
    time.sleep(1.0)
    clicked: list[str] = []
    for seat in appr.required:  # one distinct person per seat
        who = next(p for p in seat if p not in clicked)
        clicked.append(who)
        slack_approve(console, rt, intake, appr, who)
    done = wait_for("ACC-1 done", lambda: issue("ACC-1")["status"] == "Done" and issue("ACC-1"))
    member = httpx.get(
        f"{url}/admin/v1/members/{vendor}", headers={"Authorization": "Bearer sandbox-admin-token"}
    ).json()
    t = Table(title=f"invitation for {vendor}")
    t.add_column("what")
    t.add_column("value")
    t.add_row("status", member["status"])
    t.add_row("org role", member["org_role"])
    t.add_row("projects", ", ".join(f"{p['project']}={p['role']}" for p in member["projects"]))
    t.add_row("modules", ", ".join(member["modules"]) or "—")
    t.add_row("note", member["note"])
    t.add_row(
        "temporary grants",
        ", ".join(
            f"{g.project or g.module}={g.role or 'on'} until {g.end.date()}"
            for g in grants(rt.ledger, subject=vendor)
        ),
    )
    t.add_row("ticket ACC-1", f"{done['status']}: {done['comments'][-1][:80]}…")
    console.print(t)


def expiry_story(console: Console, rt: Any) -> None:
    from datetime import timedelta

    from domain.runbook import call_runbook
    from flows.expire import expire_access
    from ledger.grants import grants

    vendor = "analytics-vendor-max.roe@vendorco.com"
    ends = min(g.end for g in grants(rt.ledger, subject=vendor))
    console.rule("[bold]Time passes: the vendor's temporary access")
    for label, when in (
        ("2 days before the end", ends - timedelta(days=2)),
        ("6 hours after the end", ends + timedelta(hours=6)),
        ("the next sweep", ends + timedelta(hours=6, minutes=15)),
    ):
        out = call_runbook(expire_access, now=when.isoformat())
        done = [f"{k} → {v}" for k, v in out["effects"].items()] or ["nothing to do"]
        console.print(f"sweep at {label} ({when:%Y-%m-%d %H:%M} UTC): {out['status']}")
        for line in done:
            console.print(f"  {line}")
    left = [f"{g.project or g.module}: {g.status.value}" for g in grants(rt.ledger, subject=vendor)]
    console.print(f"grants of {vendor}: {', '.join(left)}")


def scim_story(console: Console, rt: Any, intake: Any, home: Path) -> None:
    """An offboarding on a SCIM-only org (real Amplitude's API): what no API can do is a human
    task; an IT admin does it in the console (the sandbox's admin API, acting as her) and
    clicks Done in Slack, and the run goes on."""
    from cli.approvals_cmd import send_click
    from cli.stack import local_runtime
    from domain.runbook import call_runbook
    from domain.tasks import TaskState
    from flows.offboard import offboard
    from ledger.approvals import list_approvals
    from ledger.tasks import list_tasks
    from tasks.runtime import use_runtime

    gina, sofia, alice = "gina.groups@acme.com", "sofia.lead@acme.com", "alice.admin@acme.com"
    url, secret = rt.settings.org_url, rt.settings.slack_signing_secret.get_secret_value()
    console.rule(f"[bold]A SCIM-only org (HANDOVER_ORG_BACKEND=amplitude): {gina} leaves")
    scim = local_runtime(url, home, org_backend="amplitude")  # the same ledger and intake
    out: list[Any] = []

    def start() -> None:
        with use_runtime(scim):
            out.append(call_runbook(offboard, email=gina, reason="termination"))

    thread = threading.Thread(target=start, name="scim-offboarding", daemon=True)
    thread.start()

    def click(ref: str, who: str, **kw: Any) -> int:
        user = rt.messenger.user_id(who) or ""
        return send_click(intake.url, secret, approval_id=ref, slack_user=user, **kw)[0]

    appr = wait_for(
        "the approval",
        lambda: next((a for a in list_approvals(rt.ledger) if a.subject == gina), None),
    )
    time.sleep(1.0)
    status = click(appr.id, sofia, plan_hash=appr.plan_hash, deny=False)
    console.print(f"{sofia} clicks Approve in Slack → {status}")
    admin = {"Authorization": f"Bearer {rt.settings.org_admin_token.get_secret_value()}"}

    def open_task(kind: str) -> Any:
        found = list_tasks(rt.ledger, state=TaskState.OPEN)
        return next((t for t in found if t.subject == gina and t.kind.value == kind), None)

    for kind in ("replace_sole_admin", "transfer_content", "rotate_keys"):
        task = wait_for(f"the {kind} task", functools.partial(open_task, kind))
        console.print(f"task [bold]{task.id}[/] ({', '.join(task.assignees)}): {task.title}")
        if kind == "transfer_content":
            r = httpx.post(
                f"{url}/admin/v1/assets/bulk-transfer",
                json={"from": gina, "to": sofia},
                headers={**admin, "X-Acting-User": alice},
            )
            still = httpx.get(f"{url}/admin/v1/members/{gina}", headers=admin).status_code == 200
            console.print(
                f"  {alice} transfers the content in the console → {r.status_code} "
                f"({gina} {'is still' if still else 'is no longer'} a member while it waits)"
            )
        time.sleep(1.0)
        status = click(task.id, alice, plan_hash="", deny=False, task=True)
        console.print(f"  {alice} clicks Done in Slack → {status}")
    thread.join(120)
    result: dict[str, Any] = out[0] if out else {"status": "did not finish", "verification": {}}
    console.print(f"offboarding on the SCIM-only org: [bold]{result['status']}[/]")
    title = "verification (a person's word is attested, never a pass)"
    console.print(verification_table(result["verification"], title))


def trust_story(console: Console, rt: Any, home: Path) -> None:
    """What an insider or a leaked credential cannot do: call Prefect's API without its
    credential, start an emergency lockout with a made-up trigger, cut the audit log."""
    import sqlite3

    from domain.runbook import call_runbook
    from flows.offboard import offboard
    from ledger.audit import ChainHead, verify
    from ledger.db import LedgerDB

    console.rule("[bold]Trust: Prefect's API, a forged emergency, a cut audit log")
    api = os.environ["PREFECT_API_URL"]
    r = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    console.print(f"Prefect API without its credential: POST /deployments/filter → {r.status_code}")
    target = "alice.admin@acme.com"
    # The refused run fails on purpose: its traceback (and its log lines, sent to the server
    # after the demo stopped it) would bury the one line that matters.
    quiet = [logging.getLogger(n) for n in ("prefect", "prefect.flow_runs", "prefect.task_runs")]
    for logger in quiet:
        logger.disabled = True
    try:
        call_runbook(
            offboard,
            email=target,
            reason="security_incident",
            emergency=True,
            requester="hr-system:made-up-event",
        )
        console.print(f"[red]a forged emergency ran against {target}[/]")
    except Exception as exc:  # the refusal is the point: shown, not raised
        console.print(f"an emergency lockout of {target} naming a made-up HR event → refused:")
        console.print(f"  {exc}")
    finally:
        for logger in quiet:
            logger.disabled = False
    # A copy of the ledger, cut by someone with database access: the last two events deleted
    # and the chain head moved back. The checkpoints outside the database catch it.
    source = urlsplit(rt.settings.ledger_database_url()).path.removeprefix("/")
    copy = home / "ledger-cut.db"
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    cut = LedgerDB(f"sqlite:///{copy}", anchor=rt.ledger.anchor)
    before = verify(cut)
    with sqlite3.connect(copy) as db:
        last = db.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
        db.execute("DELETE FROM audit_events WHERE seq > ?", (last - 2,))
        head = db.execute("SELECT hash FROM audit_events WHERE seq = ?", (last - 2,)).fetchone()
        db.execute(f"UPDATE {ChainHead.__tablename__} SET seq = ?, hash = ?", (last - 2, head[0]))
    after = verify(cut)
    cut.dispose()
    console.print(
        f"audit log: {before.events} events, keyed, intact up to its checkpoint "
        f"(seq {before.checkpoint_seq}); the last two deleted and the head moved back → "
        f"audit verify: {'intact' if after.ok else 'BROKEN'} ({after.reason})"
    )


NEWCOMER = "nora.new@partner.io"
CONSOLE_APPROVER = "sec.lead@acme.com"


def console_story(console: Console, rt: Any, intake: Any, *, interactive: bool) -> None:
    """A Production=admin request waiting in the web console for its last seat: with
    ``interactive``, for the person running the demo to decide in a browser."""
    from flows.onboard import onboard
    from intake.launch import thread_launcher
    from ledger.approvals import get_approval, list_approvals

    console.rule("[bold]The web console: a Production=admin request")
    thread_launcher(onboard)(
        {
            "email": NEWCOMER,
            "projects": {"Production": "admin"},
            "requester": "sofia.lead@acme.com",
            "justification": "runs the Production pipelines from January",
        }
    )
    appr = wait_for(
        "the approval",
        lambda: next((a for a in list_approvals(rt.ledger) if a.subject == NEWCOMER), None),
    )
    # Every seat but the one the console's approver may fill is filled by a Slack click.
    clicked: list[str] = []
    for seat in appr.required:
        if CONSOLE_APPROVER in seat:
            continue
        who = next(p for p in seat if p not in clicked and p != appr.requester)
        clicked.append(who)
        slack_approve(console, rt, intake, appr, who)
    page = f"{intake.url}/console/approvals/{appr.id}"
    console.print(
        f"the last seat is security's: [bold]{page}[/]\n"
        f"  (sign in as {CONSOLE_APPROVER}, password sandbox-password)"
    )
    if not interactive:
        console.print("run [bold]make demo DEMO_ARGS=--interactive[/] to decide it in a browser")
        return
    console.print("waiting for your decision in the browser (Ctrl-C to stop the demo)…")
    closed = wait_for(
        "your decision",
        lambda: (a := get_approval(rt.ledger, appr.id)).state.value != "pending" and a,
        timeout=24 * 3600,
    )
    who = ", ".join(d.approver for d in closed.decisions if d.channel == "console") or "nobody"
    console.print(f"approval {closed.id}: [bold]{closed.state.value}[/] (in the console: {who})")


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
