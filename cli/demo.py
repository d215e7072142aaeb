"""``handover demo``: the stories, end to end, on a throw-away sandbox on a free loopback port.

Today's story: the embedded world itself — start it, show what is in it through the same client
libraries the runbooks use (httpx for the org and the IdP, slack-sdk, jira), stop it cleanly.
"""

from __future__ import annotations

import shutil
import time

import httpx
from jira import JIRA
from rich.console import Console
from rich.table import Table
from slack_sdk import WebClient

from cli.stack import HOME, start_sandbox
from sandbox.world import Credentials


def run(*, keep: bool = False) -> int:
    console = Console()
    creds = Credentials()
    home = HOME / "demo"
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.monotonic()
    with console.status("starting the sandbox and seeding the demo org…"):
        sb = start_sandbox(db=home / "sandbox.db", seed="demo")
    console.print(f"[bold]sandbox[/] on {sb.url} (seeded in {time.monotonic() - t0:.1f} s)")
    try:
        show_world(console, sb.url, creds)
    finally:
        sb.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    console.print("[green]demo done[/]: sandbox stopped cleanly")
    return 0


def show_world(console: Console, url: str, creds: Credentials) -> None:
    admin = httpx.Client(
        base_url=f"{url}/admin/v1",
        timeout=10,
        headers={"Authorization": f"Bearer {creds.org_admin_token}"},
    )
    scim = httpx.Client(
        base_url=f"{url}/scim/1",
        timeout=10,
        headers={"Authorization": f"Bearer {creds.org_scim_key}"},
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
    t.add_row("assets by kind", str(summary["assets_by_kind"]))
    t.add_row("API keys", str(summary["api_keys"]))
    scim_total = scim.get("/Users", params={"itemsPerPage": 1}).json()["totalResults"]
    t.add_row("SCIM /scim/1/Users", f"totalResults={scim_total}")
    idp_users = idp.get("/Users", params={"count": 1}).json()["totalResults"]
    idp_groups = idp.get("/Groups", params={"count": 100}).json()
    t.add_row("IdP users / groups", f"{idp_users} / {idp_groups['totalResults']}")
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
        detail = (
            f"{d['org_role']}, last login {(d['last_login_at'] or 'never')[:10]}, "
            f"owns {sum(d['owned_assets'].values())}, sole admin of "
            f"{d['sole_admin_of'] or '—'}"
        )
        cases.add_row(email, f"{why}\n[dim]{detail}[/]")
    console.print(cases)

    slack = WebClient(base_url=f"{url}/slack/api/", token=creds.slack_bot_token)
    who = slack.users_lookupByEmail(email="dana.sole@acme.com")["user"]
    jira = JIRA(server=f"{url}/jira", basic_auth=(creds.jira_user, creds.jira_token))
    issues = jira.search_issues("project = ACC ORDER BY created ASC", maxResults=10)
    console.print(
        f"Slack: dana.sole@acme.com is {who['id']} ({who['real_name']}); "
        f"Jira ACC has {len(issues)} access requests: "
        + ", ".join(f"{i.key} {i.fields.summary!r}" for i in issues)
    )
