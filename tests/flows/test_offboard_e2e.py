"""The offboarding runbook end to end, over HTTP against the demo sandbox, on a real Prefect
server (issue 5, "Done when").

Covered: a termination approved by a signed Slack click (ticket, DMs, audit chain, artifacts);
a sole project admin (the replacement is promoted before any transfer or removal); an inactive
manager (each project's admin receives); a member in two groups; an IdP sync after the
offboarding (and the control case: removed in the org only, the sync brings them back); the
emergency path (lockout first, no approval, post-hoc review, activity collected); a dry run
that writes nothing; a run killed after the transfers and run again (no duplicate transfer,
rotation or message); bad input through the CLI.

Also pinned: a person already offboarded is planned nothing (no second key rotation), and a
project admin HR terminated never receives content.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from typer.testing import CliRunner

from approvals.handler import decide
from cli.main import app as cli
from domain.identity import SELF_DECLARED
from domain.records import ApprovalRequest, ApprovalState
from ledger.approvals import list_approvals
from ledger.audit import export, records, verify
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve, state_names
from tests.flows.offboard_stack import ADMIN, OffboardStack, make_stack

pytestmark = pytest.mark.slow

DANA = "dana.sole@acme.com"
SOFIA = "sofia.lead@acme.com"
HR = "hr.partner@acme.com"
CHECKS = {
    "member_removed",
    "idp_user_inactive",
    "idp_no_mapped_group",
    "not_reprovisioned",
    "nothing_left_unassigned",
    "assets_owned_by_active_people",
    "old_keys_rejected",
}


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    """A pristine demo org of its own (seeding takes about a second)."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    return make_stack(sandbox, tmp_path)


@pytest.fixture(scope="module")
def quiet_sandbox() -> Iterator[LiveSandbox]:
    """One demo org for the tests that must not write anything (each checks that it did not)."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def quiet(quiet_sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    """A stack (own ledger) over the shared read-only org."""
    return make_stack(quiet_sandbox, tmp_path)


def approve_by_click(stack: OffboardStack, subject: str, approver: str) -> ApprovalRequest:
    """Wait for the gate, then ``approver`` clicks Approve in the DM they received."""
    appr = stack.paused(subject)
    r = stack.click(appr, approver)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    return appr


def steps_of(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in result["plan"]["steps"] if s["kind"] == kind]


def index(writes: list[dict[str, Any]], method: str, pattern: str) -> list[int]:
    """Positions in the write log of the calls matching ``method`` and the path ``pattern``."""
    return [
        i for i, w in enumerate(writes) if w["method"] == method and re.search(pattern, w["path"])
    ]


def texts(stack: OffboardStack, email: str, contains: str) -> list[str]:
    return [m["text"] for m in stack.dms(email) if contains in m["text"]]


def project_admins(stack: OffboardStack) -> dict[str, list[str]]:
    return {p["name"]: p["admins"] for p in stack.get("/admin/v1/projects")["projects"]}


# ---------------------------------------------------------------------------- dana, by a click
@dataclass
class Terminated:
    stack: OffboardStack
    result: dict[str, Any]
    approval: ApprovalRequest
    asked: list[dict[str, Any]]  # sofia's DMs while the flow waited
    writes: list[dict[str, Any]]  # every write of the run, in order
    assets: list[int]  # dana's assets before


@pytest.fixture(scope="module")
def terminated(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[Terminated]:
    """dana.sole (sole Admin of Development, assets, 2 keys) terminated at HR's request and
    approved by her manager's signed Slack click; several tests read this one run."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        stack = make_stack(sb, tmp_path_factory.mktemp("terminated"))
        assets = [a["id"] for a in stack.get("/admin/v1/assets", owner=DANA)["assets"]]
        seq0 = stack.seq()
        run = stack.start(email=DANA, reason="termination", requester=HR)
        appr = stack.paused(DANA)
        asked = stack.dms(SOFIA)
        r = stack.click(appr, SOFIA)
        assert r.status_code == 200 and r.json()["recorded"] is True, r.text
        result = run.wait()
        yield Terminated(stack, result, appr, asked, stack.writes(seq0), assets)
    finally:
        sb.stop()


def test_a_termination_approved_by_a_signed_slack_click(terminated: Terminated) -> None:
    st, res, appr = terminated.stack, terminated.result, terminated.approval
    # The requester never approves: only the manager's seat is left, and she was asked.
    assert appr.required == [[SOFIA]]
    assert any(b["type"] == "actions" for b in terminated.asked[-1]["blocks"])
    assert not texts(st, HR, "Approval needed")
    assert res["status"] == "done", res
    assert res["verification"] == dict.fromkeys(CHECKS, "pass")
    assert "Paused" in state_names(res["run_id"])  # it waited at the gate (cf. the emergency)
    # The ticket was created, commented and moved to Done.
    key = res["ticket"]
    assert key.startswith("IT-")
    issue = st.get(f"/_sandbox/jira/issues/{key}")
    assert issue["status"] == "Done"
    assert [t["to"] for t in issue["transitions"]][-1] == "Done"
    assert any(
        f"Offboarding of {DANA}" in c and "all checks passed" in c for c in issue["comments"]
    )
    # The requester got the summary; each new owner was told what they received.
    assert len(texts(st, HR, f"Offboarding of {DANA}")) == 1
    receivers = [s["target"] for s in steps_of(res, "transfer_assets")]
    assert receivers == [SOFIA]
    for who in receivers:
        assert len(texts(st, who, "You are now the owner")) == 1
    # The key's remaining manager got a one-time link to the rotated secret, never the secret
    # itself: no message, the ticket or the audit log holds one (the retrieval over the link:
    # tests/intake/test_secret_links_e2e.py).
    (dm,) = texts(st, "alice.admin@acme.com", "was rotated")
    assert re.search(r"/secrets/[A-Za-z0-9_-]{43} ", dm), dm
    secret = re.compile(r"amp_[0-9a-f]{8,}")
    assert not secret.search(json.dumps(issue))
    assert not secret.search("".join(export(st.rt.ledger)))
    assert not secret.search(json.dumps(st.get("/_sandbox/slack/messages")["messages"]))
    # The audit log: one event per step, the record, and an intact chain.
    actions = [r.action for r in records(st.rt.ledger, subject=DANA)]
    for s in res["plan"]["steps"]:
        assert f"offboard.{s['kind']}" in actions
    assert actions[-1] == "offboard.recorded"
    assert verify(st.rt.ledger).ok
    # Prefect artifacts: the steps table and the summary.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(res["run_id"])])
            )
        )
    by_key = {a.key: a for a in arts}
    assert {"offboard-steps", "offboard-summary"} <= set(by_key)
    assert by_key["offboard-steps"].type == "table"
    assert f"Offboarding {DANA}: done" in str(by_key["offboard-summary"].data)
    (case,) = st.cases()
    assert (case["status"], case["outcome"], case["ticket"]) == ("closed", "done", key)


def test_a_sole_admin_replacement_is_promoted_before_any_transfer_or_removal(
    terminated: Terminated,
) -> None:
    res, w = terminated.result, terminated.writes
    promote = steps_of(res, "promote_admin")
    assert [s["target"] for s in promote] == ["Development"]
    assert res["plan"]["steps"][0]["kind"] == "promote_admin"
    promoted = index(w, "PUT", r"/admin/v1/members/sofia\.lead@acme\.com/projects/Development$")
    transfers = index(w, "POST", r"/admin/v1/assets/(bulk-)?transfer$")
    removal = index(w, "PATCH", r"/scim/1/Users/dana\.sole@acme\.com$")
    idp = index(w, "PATCH", r"/idp/scim/v2/(Users|Groups)/")
    assert len(promoted) == 1 and transfers and removal and idp
    assert promoted[0] < min(transfers) < min(idp) < min(removal)
    # Development still has an Admin, and every asset of dana went to someone active.
    assert project_admins(terminated.stack)["Development"] == [SOFIA]
    moved = terminated.stack.get("/admin/v1/transfers")["transfers"]
    assert sorted(t["asset_id"] for t in moved) == sorted(terminated.assets)
    assert {t["to"] for t in moved} == {SOFIA}


def test_offboarding_someone_already_offboarded_plans_nothing(terminated: Terminated) -> None:
    again = terminated.stack.run(email=DANA, reason="termination", requester=HR, dry_run=True)
    assert again["plan"]["steps"] == []


# ---------------------------------------------------------------------------- other people
def test_an_inactive_manager_falls_back_to_each_project_admin(
    sandbox: LiveSandbox, tmp_path: Path, prefect_server: str
) -> None:
    carla = "carla.contract@agency.io"

    def managed_by_mike(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["email"] == carla:
                r["manager"] = "mike.stale@acme.com"
            if r["email"] == DANA:  # Development's admin must be a valid fallback here
                r["status"] = "active"

    stack = make_stack(sandbox, tmp_path, edit_roster=managed_by_mike)
    admins = project_admins(stack)
    owned = {a["id"]: a["project"] for a in stack.get("/admin/v1/assets", owner=carla)["assets"]}
    assert owned and len(set(owned.values())) > 1
    run = stack.start(email=carla, reason="contract_end")
    approve_by_click(stack, carla, HR)
    res = run.wait()
    assert res["status"] == "done", res
    assert set(res["verification"].values()) == {"pass"}
    assert any("mike.stale@acme.com" in w and "project's admin" in w for w in res["warnings"])
    moved = stack.get("/admin/v1/transfers")["transfers"]
    assert sorted(t["asset_id"] for t in moved) == sorted(owned)
    for t in moved:
        assert t["to"] in admins[owned[t["asset_id"]]], t
    assert "mike.stale@acme.com" not in {t["to"] for t in moved}
    assert not texts(stack, "mike.stale@acme.com", "You are now the owner")
    for who in {t["to"] for t in moved}:
        assert len(texts(stack, who, "You are now the owner")) == 1


def test_content_never_goes_to_someone_hr_terminated(
    quiet_sandbox: LiveSandbox, tmp_path: Path, prefect_server: str
) -> None:
    carla = "carla.contract@agency.io"
    rows: list[dict[str, Any]] = []

    def managed_by_mike(roster: list[dict[str, Any]]) -> None:
        rows.extend(roster)
        for r in roster:
            if r["email"] == carla:
                r["manager"] = "mike.stale@acme.com"

    stack = make_stack(quiet_sandbox, tmp_path, edit_roster=managed_by_mike)
    res = stack.run(email=carla, reason="contract_end", dry_run=True)
    gone = {r["email"] for r in rows if r["status"] == "terminated"}
    assert DANA in gone
    assert not {s["target"] for s in steps_of(res, "transfer_assets")} & gone


def test_the_orgs_last_admin_is_blocked_before_anything_is_written(stack: OffboardStack) -> None:
    alice, raj = "alice.admin@acme.com", "raj.admin@acme.com"
    r = httpx.put(
        f"{stack.url}/admin/v1/members/{raj}/org-role",
        json={"role": "member"},
        headers=ADMIN,
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["changed"], r.text  # alice: the only Admin left
    seq0 = stack.seq()
    res = stack.run(email=alice, reason="termination", requester=HR)
    assert res["status"] == "blocked", res
    assert any(
        b.startswith(f"{alice} is the organization's only Admin") for b in res["plan"]["blockers"]
    )
    # Nothing written to the org or the IdP (the ticket and the requester's DM say why).
    assert not [w for w in stack.writes(seq0) if w["api"] not in ("jira", "slack")]
    assert (stack.member(alice) or {}).get("org_role") == "admin"
    assert "Paused" not in state_names(res["run_id"])  # nobody was asked to approve it


def test_a_member_in_two_groups_is_removed_cleanly(stack: OffboardStack) -> None:
    gina = "gina.groups@acme.com"

    def groups() -> dict[str, list[str]]:
        return {g["display_name"]: g["members"] for g in stack.get("/admin/v1/groups")["groups"]}

    before = groups()
    assert gina in before["Analysts Production"] and gina in before["Prod Managers"]
    run = stack.start(email=gina, reason="termination")
    approve_by_click(stack, gina, SOFIA)
    res = run.wait()
    assert res["status"] == "done", res
    assert res["verification"] == dict.fromkeys(CHECKS, "pass")
    assert stack.member(gina) is None
    after = groups()
    assert all(gina not in members for members in after.values())
    # Nobody else lost a group.
    assert after == {name: [m for m in ms if m != gina] for name, ms in before.items()}
    user = stack.rt.idp.find_user(gina)
    assert user is not None and not user.active
    assert not [g.name for g in stack.rt.idp.groups_of(user.id) if g.name.startswith("amplitude-")]


def test_an_idp_sync_does_not_bring_them_back_but_would_after_an_org_only_removal(
    stack: OffboardStack,
) -> None:
    jon = "jon.smith@acme.com"
    run = stack.start(email=jon, reason="termination")
    approve_by_click(stack, jon, SOFIA)
    res = run.wait()
    assert res["status"] == "done", res
    assert res["verification"]["not_reprovisioned"] == "pass"
    # The look-alikes are reported, never touched.
    assert any("look-alike" in w and "jon.smith@gmail.com" in w for w in res["warnings"])
    assert stack.member("jon.smith@gmail.com") is not None
    # Control case: a colleague removed in the org only, still active in mapped IdP groups.
    ava = "ava.adams@acme.com"
    assert str(stack.rt.org.remove_member(ava)).startswith("deleted")
    assert stack.member(ava) is None
    synced = httpx.post(f"{stack.url}/_sandbox/idp/sync", timeout=30).json()
    by_email = {r["email"]: r["action"] for r in synced["results"]}
    assert stack.member(jon) is None, "the IdP sync re-provisioned the offboarded person"
    assert by_email.get(jon) != "provisioned"
    assert by_email[ava] == "provisioned" and stack.member(ava) is not None


def test_the_emergency_path_locks_out_first_without_waiting_for_approval(
    stack: OffboardStack,
) -> None:
    old = stack.seed_secrets()
    keys = {k["name"]: k["id"] for k in stack.get("/admin/v1/api-keys", manager=DANA)["api_keys"]}
    assert len(keys) == 2 and all(stack.ingest(old[str(k)]) == 200 for k in keys.values())
    seq0 = stack.seq()
    res = stack.start(**stack.emergency(DANA)).wait(timeout=120)  # no click: it must not pause
    assert "Paused" not in state_names(res["run_id"])
    assert res["status"] == "done", res
    assert res["verification"] == dict.fromkeys(CHECKS, "pass")
    (appr,) = list_approvals(stack.svc.ledger)
    assert appr.state is ApprovalState.APPROVED and appr.quorum == 0 and appr.decisions == []
    for person in (SOFIA, HR):
        assert not texts(stack, person, "Approval needed")
    # Lockout (IdP deactivation, key revocation, org removal) before any transfer.
    w = stack.writes(seq0)
    deactivate = index(w, "PATCH", r"/idp/scim/v2/Users/")
    revoke = index(w, "POST", r"/admin/v1/api-keys/\d+/revoke$")
    removal = index(w, "PATCH", r"/scim/1/Users/dana\.sole@acme\.com$")
    transfers = index(w, "POST", r"/admin/v1/assets/(bulk-)?transfer$")
    assert deactivate and len(revoke) == 2 and removal and transfers
    assert max(deactivate[0], *revoke, removal[0]) < min(transfers)
    assert not index(w, "POST", r"/rotate$")
    # Nobody is messaged before the lockout (security's notice never holds it up behind Slack).
    posts = index(w, "POST", r"/slack/api/chat\.postMessage$")
    assert posts and min(posts) > max(deactivate[0], *revoke, removal[0])
    # The old secrets are refused; another key still works.
    for kid in keys.values():
        assert stack.ingest(old[str(kid)]) == 401
    other = next(k for k in old if int(k) not in keys.values())
    assert stack.ingest(old[other]) == 200
    # Security is asked to review after the fact.
    for reviewer in ("sec.lead@acme.com", "sec.oncall@acme.com"):
        assert len(texts(stack, reviewer, "Emergency offboard of dana.sole@acme.com")) == 1
    # The record holds the person's last 30 days of activity, exports included.
    (collected,) = [
        r for r in records(stack.rt.ledger, subject=DANA) if r.action == "offboard.collect_activity"
    ]
    assert collected.after is not None
    assert len(collected.after["exports"]) == 3 and collected.after["events"]["export"] == 3
    assert verify(stack.rt.ledger).ok


# ---------------------------------------------------------------------------- the CLI
def cli_env(stack: OffboardStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point an in-process ``handover`` at the stack's sandbox, roster and ledger."""
    for k, v in stack.env().items():
        if k.startswith("HANDOVER_"):
            monkeypatch.setenv(k, v)
    monkeypatch.chdir(stack.tmp)  # no stray .env or handover.toml


def invoke(*args: str) -> Any:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return CliRunner().invoke(cli, list(args))


def test_a_dry_run_writes_nothing(quiet: OffboardStack, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = quiet
    cli_env(stack, monkeypatch)
    seq0 = stack.seq()
    out = invoke("offboard", DANA, "--reason", "termination", "--dry-run", "--json")
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["status"] == "planned" and res["effects"] == {}
    kinds = [s["kind"] for s in res["plan"]["steps"]]
    assert kinds[0] == "promote_admin" and "transfer_assets" in kinds and "rotate_key" in kinds
    assert stack.seq() > seq0  # it did read the systems…
    assert stack.writes(seq0) == []  # …and wrote nothing
    assert stack.cases() == [] and list(records(stack.rt.ledger)) == []
    assert stack.member(DANA) is not None


def test_an_unknown_email_is_nothing_to_do(
    quiet: OffboardStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = quiet
    cli_env(stack, monkeypatch)
    seq0 = stack.seq()
    out = invoke("offboard", "nobody.here@acme.com", "--reason", "termination")
    assert out.exit_code == 0, out.output
    assert "nothing_to_do" in out.stdout
    # A typo of a real address also does nothing, and names the accounts that look alike.
    typo = invoke("offboard", "jon.smith@acme.co", "--reason", "termination")
    assert typo.exit_code == 0, typo.output
    assert "nothing_to_do" in typo.stdout and "jon.smith@acme.com" in typo.stdout
    assert stack.writes(seq0) == []
    assert stack.cases() == [] and list(records(stack.rt.ledger)) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["not-an-email", "--reason", "termination"], "email"),
        ([DANA, "--reason", "fired"], "reason"),
        ([DANA, "--reason", "termination", "--emergency"], "--emergency"),
        ([DANA, "--reason", "security_incident"], "--emergency"),
        ([DANA, "--reason", "termination", "--keep-project", "Staging"], "--keep-project"),
        ([DANA, "--reason", "termination", "--receiver", DANA], "receiver"),
    ],
    ids=[
        "malformed-email",
        "unknown-reason",
        "emergency-not-security",
        "security-without-emergency",
        "keep-project-not-role-change",
        "receiver-is-leaver",
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(
    quiet: OffboardStack, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    stack = quiet
    cli_env(stack, monkeypatch)
    seq0 = stack.seq()
    out = invoke("offboard", *args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("error: ") and says in out.stderr, out.stderr
    assert out.stdout == ""
    assert stack.writes(seq0) == [] and stack.cases() == []


# ---------------------------------------------------------------------------- kill and re-run
@pytest.mark.parametrize(
    "kill_after",
    [f"transfer_assets:{SOFIA}", "rotate_key:1"],
    ids=["after-the-transfers", "after-a-rotation"],
)
def test_a_run_killed_after_the_transfers_converges_when_run_again(
    stack: OffboardStack, kill_after: str
) -> None:
    args = ("offboard", DANA, "--reason", "termination", "--requester", HR, "--json")
    assets = [a["id"] for a in stack.get("/admin/v1/assets", owner=DANA)["assets"]]
    first = stack.handover(*args)
    try:
        appr = stack.paused(DANA, timeout=180)
        # Slow every API call down so the kill lands right after the transfer step.
        httpx.put(f"{stack.url}/_sandbox/faults", json={"latency_ms": 150}, timeout=10)
        decide(
            stack.svc,
            appr.id,
            approver=SOFIA,
            decision="approve",
            plan_hash=appr.plan_hash,
            verified=SELF_DECLARED,
        )
        (case,) = stack.cases()
        deadline = time.monotonic() + 60
        while kill_after not in stack.done(case["id"]):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, f"{kill_after} never finished"
            time.sleep(0.01)
        first.kill()
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    httpx.put(f"{stack.url}/_sandbox/faults", json={}, timeout=10)
    done_before = set(stack.done(case["id"]))
    assert {f"transfer_assets:{SOFIA}", kill_after} <= done_before
    assert not any(s.startswith("record:") for s in done_before)

    again = stack.handover(*args)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "waiting for" not in err  # no new approval
    res = json.loads(out)
    assert res["status"] == "done", res
    assert res["verification"] == dict.fromkeys(CHECKS, "pass")
    assert [a.id for a in list_approvals(stack.svc.ledger)] == [appr.id]
    # Each asset transferred once, each key rotated once.
    moved = Counter(t["asset_id"] for t in stack.get("/admin/v1/transfers")["transfers"])
    assert sorted(moved) == sorted(assets) and set(moved.values()) == {1}
    rotated = {k["id"]: k["rotation_count"] for k in stack.get("/admin/v1/api-keys")["api_keys"]}
    assert rotated[1] == rotated[2] == 1
    # One rotation DM per remaining manager, one summary, one message per new owner.
    assert len(texts(stack, "alice.admin@acme.com", "was rotated")) == 1
    assert len(texts(stack, HR, f"Offboarding of {DANA}")) == 1
    assert len(texts(stack, SOFIA, "You are now the owner")) == 1
    (case,) = stack.cases()
    assert case["status"] == "closed"
    issue = stack.get(f"/_sandbox/jira/issues/{case['ticket']}")
    assert issue["status"] == "Done"
    assert verify(stack.rt.ledger).ok
    assert stack.member(DANA) is None
    r = httpx.get(f"{stack.url}/admin/v1/members/{DANA}", headers=ADMIN, timeout=10)
    assert r.status_code == 404
