"""A gate test stack: the demo sandbox over loopback, a ledger, the services, the intake
in-process, and flows that pass through the gate on the session's real Prefect server."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient
from prefect import flow

from approvals.gate import PlanSummary, gate
from approvals.policy import load_policy
from approvals.services import Services, open_settings_ledger
from cli.approvals_cmd import block_actions_body, sign
from connectors.idp import ScimIdp
from connectors.settings import Settings
from connectors.slack import SlackMessenger
from connectors.tickets import JiraTickets
from domain.policy import ApprovalContext
from domain.records import ApprovalRequest
from intake.app import create_intake
from ledger.approvals import list_approvals
from tests.conftest import LiveSandbox

SERVICES: dict[str, Services] = {}
SUMMARY = PlanSummary(
    {"remove_member": 1, "transfer_assets": 3},
    ["receiver inactive > 30 days"],
    ["3 asset(s) of the subject go to their manager", "the subject is removed from the org"],
)
SECRET = "sandbox-signing-secret"


@flow(name="gate-test", persist_result=False)
def gated(key: str, ctx: dict[str, Any], plan_hash: str, ticket: str = "") -> str:
    """Stand-in for a runbook: plan (given), then the gate; returns the approval's state."""
    svc = SERVICES[key]
    res = gate(
        svc,
        ApprovalContext(**ctx),
        plan_hash=plan_hash,
        summary=SUMMARY,
        ticket=ticket,
    )
    return res.state.value


@dataclass
class Run:
    thread: threading.Thread
    result: list[Any] = field(default_factory=list)

    def wait(self, timeout: float = 180) -> str:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not finish"
        assert self.result, "the flow raised"
        return str(self.result[0])


@dataclass
class Stack:
    sandbox: LiveSandbox
    svc: Services
    intake: TestClient
    key: str

    def start(self, *, plan_hash: str = "a" * 64, ticket: str = "", **ctx: Any) -> Run:
        run = Run(threading.Thread(target=lambda: None))

        def target() -> None:
            from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

            try:
                # A sync flow joins its heartbeat thread at the end (~1 s each): off in tests.
                with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                    run.result.append(gated(self.key, ctx, plan_hash, ticket))
            except BaseException as exc:  # surfaced by Run.wait
                run.result.clear()
                print("flow raised", repr(exc))

        run.thread = threading.Thread(target=target, daemon=True)
        run.thread.start()
        return run

    def paused(self, subject: str, timeout: float = 180) -> ApprovalRequest:
        """Wait until the flow about ``subject`` is paused at the gate; its approval."""
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [a for a in list_approvals(self.svc.ledger) if a.subject == subject]
            if found and found[-1].flow_run_id:
                with get_client(sync_client=True) as c:
                    state = c.read_flow_run(UUID(found[-1].flow_run_id)).state
                if state is not None and state.is_paused():
                    return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no paused gate for {subject}")

    def settled(self, appr: ApprovalRequest, run: Run, timeout: float = 2.5) -> bool:
        """Wait until the flow has tallied every decision given so far and paused again.

        Each decision the flow read is marked (counted, or a reason why not) before it pauses,
        so "all marked, still pending, paused" means the flow woke, saw them all and went back
        to sleep. Gives up after ``timeout`` (False): e.g. a click that landed while the flow
        was between two pauses is only read on its next wake-up.
        """
        from prefect.client.orchestration import get_client

        from domain.records import ApprovalState
        from ledger.approvals import get_approval

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and run.thread.is_alive():
            now = get_approval(self.svc.ledger, appr.id)
            if now.state is ApprovalState.PENDING and all(
                d.counted or d.reason for d in now.decisions
            ):
                with get_client(sync_client=True) as c:
                    state = c.read_flow_run(UUID(str(now.flow_run_id))).state
                if state is not None and state.is_paused():
                    return True
            time.sleep(0.05)
        return False

    def click(
        self,
        appr: ApprovalRequest,
        email: str,
        *,
        deny: bool = False,
        plan_hash: str | None = None,
        secret: str = SECRET,
        timestamp: int | None = None,
    ) -> Any:
        user = self.svc.messenger.user_id(email)  # type: ignore[union-attr]
        body = block_actions_body(
            approval_id=appr.id, plan_hash=plan_hash or appr.plan_hash, slack_user=user, deny=deny
        )
        return self.intake.post(
            "/slack/interactions", content=body, headers=sign(secret, body, timestamp)
        )

    def dms(self, email: str) -> list[dict[str, Any]]:
        r = self.intake.get  # (the sandbox's control API is on the sandbox, not the intake)
        del r
        import httpx

        return httpx.get(
            f"{self.sandbox.url}/_sandbox/slack/messages", params={"user_email": email}
        ).json()["messages"]


def make_stack(sandbox: LiveSandbox, tmp: Path) -> Stack:
    url = sandbox.url
    settings = Settings(
        org_url=url,
        idp_url=f"{url}/idp/scim/v2",
        slack_api_url=f"{url}/slack/api/",
        jira_url=f"{url}/jira",
        ledger_url=f"sqlite:///{tmp / 'ledger.db'}",
        home=tmp,
    )
    svc = Services(
        settings=settings,
        ledger=open_settings_ledger(settings),
        policy=load_policy(),
        messenger=SlackMessenger(settings),
        tickets=JiraTickets(settings),
        ticket_base_url=f"{url}/jira/browse/",
        idp=ScimIdp(settings),
    )
    key = uuid.uuid4().hex
    SERVICES[key] = svc
    return Stack(sandbox=sandbox, svc=svc, intake=TestClient(create_intake(svc)), key=key)
