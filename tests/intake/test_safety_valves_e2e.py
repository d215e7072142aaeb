"""Safety valves and flows that check their trigger (issue 15, "Safety valves" and "The
orchestrator's own door"), over HTTP: signed HR webhooks to the intake, which starts the real
offboarding flow (the thread launcher, as ``handover demo`` wires it) on the session's real
Prefect server against the demo org over loopback; approvals clicked through the signed Slack
endpoint.

- a termination burst: HR's leavers beyond ``termination_burst.max_people`` in an hour wait for
  the quorum (HR's own approval is not enough);
- a protected account is not locked out by an emergency, nor by one security approver alone;
- the emergency limit per HR source: beyond ``per_hour`` HR emergencies wait for the quorum,
  while a declared emergency from the terminal (another source) still locks out at once;
- an ``offboard`` run started directly with ``emergency=true`` and no recorded trigger is
  refused: nothing changed, an audit event, security told.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from approvals.policy import DEFAULT_POLICY
from domain.identity import SELF_DECLARED
from domain.policy import Policy
from domain.records import ApprovalRequest, ApprovalState
from intake.app import create_intake
from intake.hooks import sign_hr
from intake.launch import ThreadLauncher, thread_launcher
from ledger.approvals import get_approval
from ledger.audit import records
from sandbox.app import create_app
from sandbox.seeds import DEMO_PLANTED as PLANTED
from tests.conftest import IDP, LiveSandbox, serve, state_names
from tests.flows.offboard_stack import ADMIN, OffboardStack, make_stack
from tests.intake.test_hr_emergency_e2e import WithoutHeartbeats

pytestmark = pytest.mark.slow

HR = "hr.partner@acme.com"
SEC_LEAD = "sec.lead@acme.com"
SEC_ONCALL = "sec.oncall@acme.com"
RAJ = "raj.admin@acme.com"  # an org Admin: the break-glass account of these tests


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    yield make_stack(sb, tmp_path)
    sb.stop()


def use_policy(stack: OffboardStack, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """The default policy with ``changes``, for the flows, the intake and a ``handover``
    subprocess (``HANDOVER_POLICY``)."""
    data = {**yaml.safe_load(DEFAULT_POLICY.read_text()), **changes}
    policy = Policy.model_validate(data)
    stack.rt.policy = policy
    stack.svc.policy = policy
    path = stack.tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("HANDOVER_POLICY", str(path))


class Door:
    """The intake over the stack, starting real offboarding runs in threads."""

    def __init__(self, stack: OffboardStack) -> None:
        from flows.offboard import offboard
        from tasks.runtime import use_runtime

        self.stack = stack
        with use_runtime(stack.rt):  # the launcher's runs start in a copy of this context
            self.launcher: ThreadLauncher = thread_launcher(WithoutHeartbeats(offboard))
        self.http = TestClient(create_intake(stack.svc, launcher=self.launcher))

    def hr(self, event_id: str, email: str, *, risk: bool = False, **extra: Any) -> str:
        """A signed HR termination of ``email`` (``risk``: flagged a security risk); the run."""
        body = json.dumps(
            {
                "event_id": event_id,
                "type": "employee.terminated",
                "employee": {"email": email},
                "security_risk": risk,
                **extra,
            }
        ).encode()
        secret = self.stack.svc.settings.hr_webhook_secret.get_secret_value()
        r = self.http.post("/hooks/hr", content=body, headers=sign_hr(secret, body))
        assert r.status_code == 202, r.text
        return str(r.json().get("run") or "")

    def done(self, ref: str) -> dict[str, Any]:
        res = self.launcher.wait(ref, timeout=180)
        assert isinstance(res, dict), res
        return res

    def paused(self, ref: str, subject: str) -> ApprovalRequest:
        """The approval the run about ``subject`` waits at; fails at once if the run ended."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not self.launcher.runs[ref].is_alive():
                raise AssertionError(f"{subject}: the run did not wait: {self.launcher.results}")
            try:
                return self.stack.paused(subject, timeout=0.5)
            except AssertionError:
                continue
        raise AssertionError(f"no paused gate for {subject}")


def ordinary(stack: OffboardStack, n: int) -> list[str]:
    """``n`` ordinary members of the demo org (no planted case: a plan with no blocker)."""
    members = httpx.get(
        f"{stack.url}/admin/v1/members", params={"status": "joined"}, headers=ADMIN, timeout=10
    ).json()["members"]
    people = sorted(
        m["email"]
        for m in members
        if m["org_role"] in ("member", "viewer")
        and m["email"].endswith("@acme.com")
        and m["email"] not in PLANTED
    )
    return people[:n]


def lockout_writes(stack: OffboardStack, since: int, email: str) -> list[str]:
    """The org and IdP writes about ``email`` since ``since`` (Slack and Jira left out)."""
    user = httpx.get(
        f"{stack.url}/idp/scim/v2/Users",
        params={"filter": f'userName eq "{email}"'},
        headers=IDP,
        timeout=10,
    ).json()["Resources"]
    idp_id = user[0]["id"] if user else "?"
    return [
        f"{w['method']} {w['path']}"
        for w in stack.writes(since)
        if email in w["path"] or idp_id in w["path"]
    ]


def rules(appr: ApprovalRequest) -> set[str]:
    """The policy rules an approval asks."""
    return set(appr.rule.split(","))


def waits_again(run_id: str, pauses: int) -> None:
    """Wait until the run has paused ``pauses`` times (woken by a decision, it tallies and,
    short of a quorum, pauses again)."""
    deadline = time.monotonic() + 60
    while sum(n == "Paused" for n in state_names(run_id)) < pauses:
        assert time.monotonic() < deadline, state_names(run_id)
        time.sleep(0.2)


def test_a_termination_burst_waits_for_the_quorum(
    stack: OffboardStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(stack, monkeypatch, termination_burst={"max_people": 2}, emergency_limit=None)
    door = Door(stack)
    first, second, third = ordinary(stack, 3)
    refs = [door.hr(f"burst-{i}", who) for i, who in enumerate((first, second, third))]
    appr = [door.paused(ref, who) for ref, who in zip(refs, (first, second, third), strict=True)]
    # The first two are ordinary terminations: HR's (or the manager's) one approval.
    assert [a.rule for a in appr[:2]] == ["termination", "termination"]
    assert [a.quorum for a in appr[:2]] == [1, 1]
    # The third is beyond the burst: the quorum of security (separation of duty) as well.
    assert rules(appr[2]) == {"termination", "safety-valve"} and appr[2].quorum == 3, appr[2]
    assert any("termination burst: 3 leavers" in w for w in appr[2].plan_warnings)
    for a in appr[:2]:  # HR refuses those two: they end, nothing changed
        assert stack.click(a, HR, deny=True).json()["recorded"] is True
    for ref in refs[:2]:
        assert door.done(ref)["status"] == "denied"
    seq = stack.seq()
    # HR's approval, which would run an ordinary termination, is not enough.
    assert stack.click(appr[2], HR).json()["recorded"] is True
    waits_again(appr[2].flow_run_id, 2)
    assert get_approval(stack.svc.ledger, appr[2].id).state is ApprovalState.PENDING
    assert lockout_writes(stack, seq, third) == []
    assert stack.member(third) is not None
    for who in (SEC_LEAD, SEC_ONCALL):
        assert stack.click(appr[2], who).json()["recorded"] is True
    out = door.done(refs[2])
    assert out["status"] == "done", out
    assert stack.member(third) is None
    (valve,) = [r for r in records(stack.rt.ledger) if r.action == "offboard.safety_valve"]
    assert valve.subject == third and valve.after == {
        "valves": ["termination_burst"],
        "why": [appr[2].plan_warnings[0]],
    }


def test_a_protected_account_is_not_locked_out_by_one_approver(
    stack: OffboardStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(stack, monkeypatch, protected_accounts=[RAJ])
    door = Door(stack)
    seq = stack.seq()
    ref = door.hr("risk-raj", RAJ, risk=True)  # HR says: lock him out now
    appr = door.paused(ref, RAJ)
    # An emergency, and still a quorum first: two seats, never the fallback group.
    assert rules(appr) == {"emergency", "safety-valve"} and appr.quorum == 2, appr
    assert any("protected account" in w for w in appr.plan_warnings)
    assert lockout_writes(stack, seq, RAJ) == []
    # One security approver alone: still waiting, still not locked out.
    assert stack.click(appr, SEC_LEAD).json()["recorded"] is True
    waits_again(appr.flow_run_id, 2)
    assert get_approval(stack.svc.ledger, appr.id).state is ApprovalState.PENDING
    assert lockout_writes(stack, seq, RAJ) == []
    assert stack.member(RAJ) is not None
    # The second: the quorum, then the lockout.
    assert stack.click(appr, SEC_ONCALL).json()["recorded"] is True
    out = door.done(ref)
    assert out["status"] == "done", out
    assert stack.member(RAJ) is None


def test_the_emergency_limit_holds_per_hr_source(
    stack: OffboardStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(stack, monkeypatch, emergency_limit={"per_hour": 1}, termination_burst=None)
    door = Door(stack)
    first, second, third = ordinary(stack, 3)
    out = door.done(door.hr("risk-1", first, risk=True))  # within the limit: at once
    assert out["status"] == "done" and "Paused" not in state_names(out["run_id"]), out
    assert stack.member(first) is None
    seq = stack.seq()
    ref = door.hr("risk-2", second, risk=True)  # beyond it: waits for the quorum
    appr = door.paused(ref, second)
    assert rules(appr) == {"emergency", "safety-valve"} and appr.quorum == 2, appr
    assert any("emergency limit: 1 emergency lockouts" in w for w in appr.plan_warnings)
    assert lockout_writes(stack, seq, second) == []
    # Another source — a security engineer's declared emergency at the terminal — is not
    # held by HR's limit: `handover offboard --emergency` locks out at once.
    proc = stack.handover(
        "offboard",
        third,
        "--reason",
        "security_incident",
        "--emergency",
        "--requester",
        SEC_LEAD,
        "--json",
    )
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "done"
    assert stack.member(third) is None
    # Security refuses the held one: it ends, nothing changed.
    assert stack.click(appr, SEC_ONCALL, deny=True).json()["recorded"] is True
    assert door.done(ref)["status"] == "denied"
    assert stack.member(second) is not None
    assert lockout_writes(stack, seq, second) == []


def _refused(stack: OffboardStack, **params: Any) -> str:
    """Run an offboarding expected to be refused before it reads or writes; the reason."""
    run = stack.start(**params)
    run.thread.join(180)
    assert not run.thread.is_alive()
    assert run.error, f"the offboarding was not refused: {run.result}"
    return str(run.error[0])


def test_an_emergency_without_a_recorded_trigger_is_refused(stack: OffboardStack) -> None:
    from tasks.triggers import declare

    door = Door(stack)
    (who,) = ordinary(stack, 1)
    # A real HR event about this person, but no security risk (scheduled: nothing started).
    door.hr("later-1", who, effective_date="2099-12-31")
    not_a_declarer = declare(
        stack.rt.ledger,
        subject=who,
        declared_by=HR,
        verified=SELF_DECLARED.method,
        now=stack.rt.clock(),
    )
    seq = stack.seq()
    emergency = {"email": who, "reason": "security_incident", "emergency": True}
    cases = [
        ({"requester": "hr-system:forged-1"}, "no signed HR event forged-1 was recorded"),
        ({"requester": "hr-system:later-1"}, "HR event later-1 did not flag a security risk"),
        ({"requester": "alice.admin@acme.com"}, "needs a signed HR event"),
        (
            {"requester": HR, "declaration": not_a_declarer.id},
            f"{HR} is not one of the policy's emergency_declarers",
        ),
        ({"requester": SEC_LEAD, "declaration": "emg-nothere"}, "no emergency declaration"),
    ]
    for extra, why in cases:
        assert why in _refused(stack, **emergency, **extra), extra
    # Nothing changed in the org or the IdP; nobody was asked to approve anything.
    assert stack.member(who) is not None
    assert [w["path"] for w in stack.writes(seq) if not w["path"].startswith("/slack/")] == []
    refused = [r for r in records(stack.rt.ledger) if r.action == "offboard.trigger_refused"]
    assert [r.subject for r in refused] == [who] * len(cases)
    # Security hears of each attempt.
    told = [m for m in stack.dms(SEC_LEAD) if "refused" in m["text"]]
    assert len(told) == len(cases), told
    # A dry run changes nothing: it plans without a trigger.
    planned = stack.run(**emergency, requester="alice.admin@acme.com", dry_run=True)
    assert planned["status"] == "planned"


def test_the_cli_refuses_an_emergency_from_a_non_declarer(stack: OffboardStack) -> None:
    (who,) = ordinary(stack, 1)
    proc = stack.handover(
        "offboard", who, "--reason", "security_incident", "--emergency", "--requester", HR
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "may not declare an emergency offboarding" in stderr
    assert stack.member(who) is not None
    assert not [r for r in records(stack.rt.ledger) if r.action == "offboard.emergency_declared"]


def test_a_batch_approval_does_not_stand_for_a_protected_account(
    stack: OffboardStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk offboarding's one approval (HR's) covers its ordinary leavers; the protected
    account in the list waits for the quorum in its own subflow, and security's deny keeps it."""
    from flows.offboard_bulk import offboard_bulk
    from ledger.approvals import list_approvals

    guarded, plain = ordinary(stack, 2)
    use_policy(stack, monkeypatch, protected_accounts=[guarded])
    run = stack.start(
        offboard_bulk, emails=[guarded, plain], reason="termination", requester="it.ops@acme.com"
    )
    deadline = time.monotonic() + 180
    while not (batch := [a for a in list_approvals(stack.svc.ledger) if a.subject != guarded]):
        assert time.monotonic() < deadline and run.thread.is_alive(), run.result
        time.sleep(0.2)
    batch_appr = stack.paused(batch[0].subject)
    assert stack.click(batch_appr, HR).json()["recorded"] is True
    appr = stack.paused(guarded)  # the batch's approval does not stand for it
    assert rules(appr) == {"termination", "safety-valve"} and appr.quorum == 3, appr
    assert stack.click(appr, SEC_LEAD, deny=True).json()["recorded"] is True
    out = run.wait(300)
    by_email = {m["email"]: m["status"] for m in out["members"]}
    assert by_email == {guarded: "denied", plain: "done"}, out["members"]
    assert stack.member(guarded) is not None and stack.member(plain) is None


def test_a_forged_emergency_is_refused_on_a_scim_only_org(
    tmp_path: Path, prefect_server: str
) -> None:
    """The trigger is checked before any backend is touched: on an org reached by SCIM only
    (HANDOVER_ORG_BACKEND=amplitude) a made-up HR event is refused and nothing is written."""
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        stack = make_stack(sb, tmp_path, backend="amplitude")
        (who,) = ordinary(stack, 1)
        seq = stack.seq()
        why = _refused(
            stack,
            email=who,
            reason="security_incident",
            emergency=True,
            requester="hr-system:forged-9",
        )
        assert "no signed HR event forged-9 was recorded" in why
        assert stack.member(who) is not None
        assert [w["path"] for w in stack.writes(seq) if not w["path"].startswith("/slack/")] == []
        refused = [r for r in records(stack.rt.ledger) if r.action == "offboard.trigger_refused"]
        assert [r.subject for r in refused] == [who]
    finally:
        sb.stop()
