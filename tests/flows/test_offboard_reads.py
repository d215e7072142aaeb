"""What one offboarding reads from the org's admin API (issue 18: the scarce 600/min budget),
against the demo sandbox over loopback, the bare task functions (no Prefect server):

- the possible receivers: the manager alone when they take everything, the projects' admins
  too only when the plan may need them — and the plan is the same as from reading them all;
- a bulk run's inventory, kept with the plan its approval covered, is what the leaver's run
  applies while it is fresh, never once it is older than ``FRESH_READ`` or without a batch;
- the verification reads the transferred assets by id, never the receiver's whole portfolio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.plan import Inventory, Options, Reason, make_offboarding_plan
from flows.offboard import FRESH_READ, OffboardRequest, approved_inventory, preapprove
from tasks.offboard import take_inventory, verify_offboarding
from tests.flows.offboard_stack import OffboardStack
from tests.tasks.sandbox_runtime import demo_stack

JON = "jon.smith@acme.com"  # a joined member whose manager may receive content
DANA = "dana.sole@acme.com"  # the sole Admin of a project


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[OffboardStack]:
    yield from demo_stack(tmp_path)


def member_reads(stack: OffboardStack, since: int) -> list[str]:
    return [
        r["path"].rsplit("/", 1)[-1]
        for r in stack.calls(since)
        if r["method"] == "GET" and r["path"].startswith("/admin/v1/members/")
    ]


@pytest.mark.parametrize("who", [JON, DANA])
def test_project_admins_are_read_only_when_the_plan_may_need_them(
    stack: OffboardStack, who: str
) -> None:
    rt = stack.rt
    since = stack.seq()
    inv = take_inventory.fn(rt, who)
    reads = member_reads(stack, since)
    admins = {a for p in inv.projects for a in p.admins} - {who}
    manager = inv.roster.manager if inv.roster else None
    if who == JON:
        assert manager and manager in inv.people
        assert not admins - {manager} & set(reads), reads  # the manager takes everything
    else:  # a project admin: replacements are chosen among everyone with access
        assert admins <= set(inv.people)
    # The plan is the one a read of every project admin gives.
    everyone = {a: m for a in sorted(admins) if (m := rt.org.get_member(a)) is not None}
    full = inv.model_copy(update={"people": {**everyone, **inv.people}})
    opts = Options(reason=Reason.TERMINATION)
    assert make_offboarding_plan(inv, opts) == make_offboarding_plan(full, opts)


def approved_elsewhere(stack: OffboardStack, **standing: str) -> Inventory:
    """JON's inventory, kept with his plan as approved by ``standing`` (preapprove)."""
    inv: Inventory = take_inventory.fn(stack.rt, JON)
    plan = make_offboarding_plan(inv, Options(reason=Reason.TERMINATION))
    preapprove(
        stack.rt,
        plan,
        reason="termination",
        requester="it.ops@acme.com",
        approvers=["hr.partner@acme.com"],
        inventory=inv,
        **standing,
    )
    return inv


def test_a_bulk_runs_inventory_is_applied_while_fresh_and_only_then(stack: OffboardStack) -> None:
    rt = stack.rt
    req = OffboardRequest(email=JON, reason="termination", requester="offboard-batch-x")
    assert approved_inventory(rt, req) is None  # no case yet
    inv = approved_elsewhere(stack, batch_approval="appr-1")
    assert approved_inventory(rt, req) == inv
    later = dataclasses.replace(rt, clock=lambda: inv.taken_at + FRESH_READ * 2)
    assert approved_inventory(later, req) is None  # too old: the run reads afresh
    dry = req.model_copy(update={"dry_run": True})
    assert approved_inventory(rt, dry) is None  # a dry run shows the systems as they are


def test_an_approval_given_elsewhere_without_a_batch_reads_afresh(stack: OffboardStack) -> None:
    approved_elsewhere(stack, expired_grant="g-1")
    assert approved_inventory(stack.rt, OffboardRequest(email=JON, reason="termination")) is None


def test_verification_reads_the_transferred_assets_not_the_receivers_portfolio(
    stack: OffboardStack,
) -> None:
    rt = stack.rt
    inv = take_inventory.fn(rt, JON)
    plan = make_offboarding_plan(inv, Options(reason=Reason.TERMINATION))
    assert plan.receivers, "the demo's leaver has content to hand over"
    receiver, ids = next(iter(plan.receivers.items()))
    rt.org.transfer_assets(ids, receiver)  # type: ignore[attr-defined]
    since = stack.seq()
    out = verify_offboarding.fn(rt, inv, plan, narrowed=False)
    assert out["assets_owned_by_active_people"] == "pass"
    assets = [r for r in stack.calls(since) if r["path"] == "/admin/v1/assets"]
    assert all("owner=" not in r["query"] or "held_by" in r["query"] for r in assets), assets
    assert any("ids=" in r["query"] for r in assets)
    # Not the member's own record read twice, nor the receivers' many pages.
    assert member_reads(stack, since).count(JON) == 1
    assert len(stack.calls(since)) <= 6, [r["path"] for r in stack.calls(since)]
