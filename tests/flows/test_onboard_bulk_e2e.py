"""Bulk onboarding end to end (issue 6, "Done when": a 50-row CSV under a 300/min rate limit),
over HTTP against the demo sandbox, on a real Prefect server.

47 new vendor accounts and 3 bad rows (malformed email, unknown project, unknown role); the
sandbox answers 429 beyond 300 requests/min per API and the connectors' client-side buckets are
sized to the same 300/min. One Slack approval (a signed click) for the whole batch → 47 pending
invitations with exactly their roles, 3 rows invalid, zero 429s. The same file again does
nothing twice: every row is a fresh pending invitation with the same grants → nothing_to_do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from domain.records import ApprovalRequest
from domain.runbook import call_runbook
from ledger.approvals import list_approvals
from sandbox.app import create_app
from sandbox.org.models import Member as OrgMember
from sandbox.org.models import ModuleGrant, Project, ProjectRole
from tasks.runtime import Runtime, use_runtime
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import ADMIN, OffboardStack, Run, make_stack

pytestmark = pytest.mark.slow

ALICE = "alice.admin@acme.com"  # it_admins: the default rule's approver
RATE = 300
HEADER = "email,projects,org_role,modules,until,justification,sow\r\n"
LAYOUTS = [  # Production Viewer: the production rule applies (seed 003)
    ("Staging=viewer; Development=member", "viewer"),
    ('"Production=viewer, Staging=member"', "member"),
    ("Development=viewer", "viewer"),
    ("Staging=member; Production=viewer; Development=viewer", "member"),
]
BAD = {
    "not-an-email": ("not-an-email,Staging=viewer,,,,,\r\n", "email"),
    "analytics-vendor-bad.project@vendorco.com": (
        "analytics-vendor-bad.project@vendorco.com,Marketing=viewer,,,,,\r\n",
        "Marketing",
    ),
    "analytics-vendor-bad.role@vendorco.com": (
        "analytics-vendor-bad.role@vendorco.com,Staging=owner,,,,,\r\n",
        "unknown role 'owner'",
    ),
}


def vendor(i: int) -> str:
    return f"analytics-vendor-user{chr(97 + i // 26)}{chr(97 + i % 26)}.test@vendorco.com"


def batch_csv() -> tuple[str, dict[str, tuple[dict[str, str], str]]]:
    """The 50-row file, and what each good row asks: email → (projects, org role)."""
    lines, wanted = [HEADER], {}
    bad = iter(BAD.values())
    for i in range(47):
        projects, role = LAYOUTS[i % len(LAYOUTS)]
        lines.append(f"{vendor(i)},{projects},{role},,,bulk onboarding test,SOW-9\r\n")
        wanted[vendor(i)] = (
            dict(p.strip().split("=") for p in projects.strip('"').replace(";", ",").split(",")),
            role,
        )
        if i in (10, 30, 46):  # the bad rows in the middle and at the end
            lines.append(next(bad)[0])
    return "".join(lines), wanted


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    st = make_stack(sandbox, tmp_path)
    settings = st.rt.settings.model_copy(
        update={
            "org_scim_rate_per_minute": RATE,
            "org_admin_rate_per_minute": RATE,
            "idp_rate_per_minute": RATE,
        }
    )
    st.rt = Runtime.from_settings(settings)
    r = httpx.put(f"{st.url}/_sandbox/faults", json={"rate_limit": RATE}, headers=ADMIN)
    r.raise_for_status()
    return st


def start(stack: OffboardStack, **params: Any) -> Run:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.onboard_bulk import onboard_bulk

    run = Run(threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            with (
                temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                use_runtime(stack.rt),
            ):
                run.result.append(call_runbook(onboard_bulk, **params))
        except BaseException as exc:
            run.error.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()
    return run


def paused_batch(stack: OffboardStack, timeout: float = 180) -> ApprovalRequest:
    """The batch's approval, once its flow run is paused at the gate."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            a for a in list_approvals(stack.svc.ledger) if a.subject.startswith("onboard-batch-")
        ]
        if found and found[-1].flow_run_id:
            with get_client(sync_client=True) as c:
                state = c.read_flow_run(UUID(found[-1].flow_run_id)).state
            if state is not None and state.is_paused():
                return found[-1]
        time.sleep(0.2)
    raise AssertionError("no paused gate for the batch")


def org_access(stack: OffboardStack) -> dict[str, tuple[str, str, dict[str, str], list[str]]]:
    """email → (status, org role, project roles, modules), read from the sandbox's database."""
    with stack.sandbox.world.db.session() as s:
        names = {p.id: p.name for p in s.scalars(select(Project))}
        out = {}
        for m in s.scalars(select(OrgMember).where(OrgMember.email.like("analytics-vendor-%"))):
            roles = s.scalars(select(ProjectRole).where(ProjectRole.email == m.email))
            mods = s.scalars(select(ModuleGrant).where(ModuleGrant.email == m.email))
            out[m.email] = (
                m.status,
                m.org_role,
                {names[r.project_id]: r.role for r in roles},
                [g.module for g in mods],
            )
        return out


def invites_since(stack: OffboardStack, seq: int) -> list[dict[str, Any]]:
    return [
        w
        for w in stack.writes(seq)
        if w["method"] == "POST" and w["path"].rstrip("/").endswith("/members")
    ]


def test_a_50_row_csv_under_a_300_per_minute_rate_limit(stack: OffboardStack) -> None:
    text, wanted = batch_csv()
    assert text.count("\r\n") == 51  # header + 50 rows
    before = org_access(stack)
    seq0 = stack.seq()
    t0 = time.monotonic()

    run = start(stack, csv_text=text, requester="operator", max_workers=8)
    appr = paused_batch(stack)
    assert appr.rule.startswith("production-access"), appr  # Production grants in the batch
    stack.approve_every_seat(appr)
    res = run.wait(timeout=120)
    elapsed = time.monotonic() - t0
    print(f"\nbulk onboarding of 50 rows: {elapsed:.1f}s (flow {res['elapsed_s']}s)")

    assert res["status"] == "partial", res["counts"]
    assert res["counts"] == {"done": 47, "invalid": 3}, res["rows"]
    assert len(res["rows"]) == 50
    invalid = {r["email"]: r for r in res["rows"] if r["status"] == "invalid"}
    assert set(invalid) == set(BAD)
    for email, (_, words) in BAD.items():
        assert words in invalid[email]["message"], invalid[email]
    assert [r["row"] for r in res["rows"] if r["status"] == "invalid"] == [13, 34, 51]
    # approvers saw every bad row
    assert sum("invalid" in w for w in res["warnings"]) == 3
    assert len(res["plan"]["steps"]) == 47
    assert {s["kind"] for s in res["plan"]["steps"]} == {"invite"}

    # 47 pending invitations with exactly their roles; nothing for the bad rows.
    after = org_access(stack)
    new = {e: v for e, v in after.items() if e not in before}
    assert set(new) == set(wanted)
    for email, (projects, role) in wanted.items():
        status, org_role, have, mods = new[email]
        assert (status, org_role, have, mods) == ("pending", role, projects, []), email
    assert len(invites_since(stack, seq0)) == 47

    # Under the limit all the way: the sandbox never had to say 429.
    log = stack.get("/_sandbox/requests", since=seq0)["requests"]
    assert [x for x in log if x["status"] == 429] == []
    assert len(log) >= 47

    # The same file again: nothing twice (fresh pending invitations with the same grants).
    seq1 = stack.seq()
    res2 = start(stack, csv_text=text, requester="operator", max_workers=8).wait(timeout=120)
    assert res2["status"] == "partial", res2["counts"]
    assert res2["counts"] == {"nothing_to_do": 47, "invalid": 3}
    assert res2["plan"]["steps"] == []
    assert stack.writes(seq1) == []  # no invite, no resend, no approval DM
    assert org_access(stack) == after
    log2 = stack.get("/_sandbox/requests", since=seq1)["requests"]
    assert [x for x in log2 if x["status"] == 429] == []


def test_dry_run_writes_nothing(stack: OffboardStack) -> None:
    text, _ = batch_csv()
    seq0 = stack.seq()
    res = start(stack, csv_text=text, dry_run=True).wait()
    assert res["status"] == "planned"
    assert res["counts"] == {"ready": 47, "invalid": 3}
    assert stack.writes(seq0) == []
