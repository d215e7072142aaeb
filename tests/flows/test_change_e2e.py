"""The mover runbooks end to end, over HTTP against the demo sandbox, on a real Prefect server
(issue 6, "Change" and "Email change"): the group-union trap (gina), a production widening that
needs a project admin AND security (signed clicks), an email change with the acceptance in
between, re-runs that do nothing twice, bad input (exit 2)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cli.change_cmd import change, change_email
from domain.models import Role
from domain.records import ApprovalState
from domain.runbook import call_runbook
from ledger.approvals import get_approval
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import ADMIN, OffboardStack, Run, make_stack

pytestmark = pytest.mark.slow

GINA = "gina.groups@acme.com"
JON = "jon.smith@acme.com"
IT = "alice.admin@acme.com"
PROD_ADMIN = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    return make_stack(sandbox, tmp_path)


def start(stack: OffboardStack, fn: Callable[..., dict[str, Any]], **params: Any) -> Run:
    """Run a flow in a thread (it may pause at the gate)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from tasks.runtime import use_runtime

    run = Run(threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            with (
                temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                use_runtime(stack.rt),
            ):
                run.result.append(call_runbook(fn, **params))
        except BaseException as exc:
            run.error.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()
    return run


def click(stack: OffboardStack, subject: str, who: str) -> None:
    appr = stack.paused(subject)
    r = stack.click(appr, who)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text


def effective(stack: OffboardStack, email: str) -> dict[str, str]:
    return {g.project: g.role.value for g in stack.rt.org.effective_access(email)}


def test_narrowing_while_a_group_grants_more(stack: OffboardStack) -> None:
    from flows.change import change_access

    assert effective(stack, GINA)["Production"] == "manager"
    dry = start(stack, change_access, email=GINA, projects={"Production": "viewer"}, dry_run=True)
    planned = dry.wait()
    assert planned["status"] == "planned"
    left = [s for s in planned["plan"]["steps"] if s["kind"] == "remove_group_membership"]
    assert len(left) == 2  # Analysts Production (member) and Prod Managers (manager)
    assert any("Prod Managers" in w for w in planned["warnings"])

    run = start(stack, change_access, email=GINA, projects={"Production": "viewer"})
    click(stack, GINA, IT)  # narrowing only: the default rule (manager or IT)
    out = run.wait()
    assert out["status"] == "done", out
    assert out["plan"]["hash"] == planned["plan"]["hash"]
    assert effective(stack, GINA)["Production"] == "viewer"
    assert out["verification"] == {"effective:Production": "pass"}

    seq = stack.seq()
    again = start(stack, change_access, email=GINA, projects={"Production": "viewer"}).wait()
    assert again["status"] == "nothing_to_do" and not again["plan"]["steps"]
    assert stack.writes(seq) == []


def test_production_widening_needs_a_project_admin_and_security(stack: OffboardStack) -> None:
    from flows.change import change_access

    assert effective(stack, JON)["Production"] == "viewer"
    run = start(stack, change_access, email=JON, projects={"Production": "manager"})
    appr = stack.paused(JON)
    assert stack.click(appr, PROD_ADMIN).json()["recorded"] is True
    # One seat filled: still waiting for security.
    assert run.thread.is_alive()
    assert get_approval(stack.rt.ledger, appr.id).state is ApprovalState.PENDING  # type: ignore[union-attr]
    assert effective(stack, JON)["Production"] == "viewer"
    assert stack.click(appr, SECURITY).json()["recorded"] is True
    out = run.wait()
    assert out["status"] == "done", out
    assert out["plan"]["steps"][0]["widening"] is True
    assert effective(stack, JON)["Production"] == "manager"


def _with_assets(stack: OffboardStack) -> str:
    for m in stack.rt.org.list_members():
        if (
            m.status == "joined"
            and m.email.endswith("@acme.com")
            and m.email
            not in (GINA, JON, IT, PROD_ADMIN, "dana.sole@acme.com", "raj.admin@acme.com")
            and m.org_role is not None
            and m.org_role.value in ("viewer", "member")
            and stack.rt.org.list_assets(owner=m.email)
        ):
            return m.email
    raise AssertionError("no member with content")


def test_email_change_end_to_end(stack: OffboardStack) -> None:
    from flows.email_change import change_email as flow

    old = _with_assets(stack)
    new = old.replace("@acme.com", "@acme.io")
    before = stack.rt.org.get_member(old)
    assert before is not None
    owned = {a.id for a in stack.rt.org.list_assets(owner=old)}
    want = effective(stack, old)

    run = start(stack, flow, old=old, new=new)
    # The new address is invited with the old one's Production role: the production rule.
    stack.approve_every_seat(stack.paused(old))
    first = run.wait()
    assert first["status"] == "waiting_for_acceptance", first
    assert "run the same command again" in first["message"]
    assert stack.member(new)["status"] == "pending"  # type: ignore[index]

    seq = stack.seq()
    still = start(stack, flow, old=old, new=new).wait()
    assert still["status"] == "waiting_for_acceptance"
    assert stack.writes(seq) == []  # no second invitation

    r = httpx.post(f"{stack.url}/_sandbox/members/{new}/accept", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    idp_user = stack.rt.idp.find_user(old)
    assert idp_user is not None, "the old address is IdP-managed"
    mapped = {g.id for g in stack.rt.idp.groups_of(idp_user.id) if g.name.startswith("amplitude-")}
    assert mapped
    seq = stack.seq()
    done = start(stack, flow, old=old, new=new).wait()  # no second approval
    assert done["status"] == "done", done
    assert all(v == "pass" for v in done["verification"].values()), done["verification"]
    assert done["verification"]["old_out_of_idp_groups"] == "pass"
    assert stack.rt.org.get_member(old) is None
    # IdP first (seed 003: the IdP wins): out of every mapped group before the org removal,
    # so the next sync does not provision the old address again.
    paths = [(w["method"], w["path"]) for w in stack.writes(seq)]
    idp_writes = [i for i, (_m, p) in enumerate(paths) if any(g in p for g in mapped)]
    removal = [i for i, (_m, p) in enumerate(paths) if p.endswith(f"/Users/{old}")]
    assert len(idp_writes) == len(mapped) and removal, paths
    assert max(idp_writes) < min(removal), paths
    r = httpx.post(f"{stack.url}/_sandbox/idp/sync", headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    assert stack.rt.org.get_member(old) is None
    assert {a.id for a in stack.rt.org.list_assets(owner=new)} >= owned
    assert effective(stack, new) == want
    after = stack.rt.org.get_member(new)
    assert after is not None and after.org_role == before.org_role
    assert set(after.modules) == set(before.modules)

    seq = stack.seq()
    again = start(stack, flow, old=old, new=new).wait()
    assert again["status"] == "nothing_to_do"
    assert stack.writes(seq) == []


def test_bad_input_exits_2(stack: OffboardStack) -> None:
    app = typer.Typer()
    app.command("change")(change)
    app.command("change-email")(change_email)
    runner = CliRunner()
    env = stack.env()
    seq = stack.seq()
    for args in (
        ["change", "not-an-email", "--project", "Production=viewer"],
        ["change", GINA, "--project", "Production=boss"],
        ["change", GINA, "--project", "Production"],
        ["change", GINA],
        ["change", GINA, "--project", "Nowhere=viewer"],
        ["change", "nobody@acme.com", "--project", "Production=viewer"],
        ["change-email", GINA, GINA],
        ["change-email", GINA, "bad@"],
    ):
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 2, (args, res.output)
    assert stack.writes(seq) == []


def test_an_idp_managed_members_change_goes_through_the_idp(stack: OffboardStack) -> None:
    """Seed 003, the IdP wins role conflicts: an IdP-managed member's org role is changed in
    the IdP's org groups and a group the IdP pushes is left in the IdP, so an IdP sync
    afterwards keeps the change instead of undoing it."""
    from flows.change import change_access as flow

    org: Any = stack.rt.org
    pushed = "group:amplitude-project-viewers-production"
    who = next(
        m.email
        for m in org.list_members()
        if m.idp_managed
        and m.org_role is Role.MEMBER
        and m.email not in (GINA, JON, IT, PROD_ADMIN)
        and any(
            p.project == "Production" and set(p.sources) == {"individual", pushed}
            for p in org.effective_access(m.email)
        )
    )
    run = start(stack, flow, email=who, projects={"Production": "none"}, org_role="viewer")
    stack.approve_every_seat(stack.paused(who))
    res = run.wait()
    assert res["status"] == "done", res
    kinds = [(s["kind"], s["target"]) for s in res["plan"]["steps"]]
    assert ("idp_add_group", "amplitude-org-viewers") in kinds, kinds
    assert not [k for k, _ in kinds if k in ("set_org_role", "remove_group_membership")], kinds
    assert all(v == "pass" for v in res["verification"].values()), res["verification"]
    assert res["verification"]["idp_org_group"] == "pass"

    r = httpx.post(f"{stack.url}/_sandbox/idp/sync", headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    after = stack.rt.org.get_member(who)
    assert after is not None and after.org_role is Role.VIEWER  # the sync kept it
    assert "Production" not in effective(stack, who)
