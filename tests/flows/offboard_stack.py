"""An offboarding test stack: a demo sandbox over loopback, the HR roster it exports written to a
file, a :class:`tasks.runtime.Runtime` over both and a tmp ledger (bound with
``tasks.runtime.use_runtime`` for each flow run the stack starts), and the intake in-process for
signed Slack clicks. Flows run on the session's real Prefect server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
from fastapi.testclient import TestClient

from approvals.policy import load_policy
from approvals.services import Services
from cli.approvals_cmd import block_actions_body, from_slack, sign
from connectors.settings import SANDBOX_IDP_PATHS, Settings
from domain.records import ApprovalRequest
from domain.runbook import call_runbook
from domain.tasks import TaskRecord, TaskState
from intake.app import create_intake
from ledger.approvals import list_approvals
from ledger.tasks import list_tasks
from sandbox.db import Setting
from tasks.runtime import Runtime, use_runtime
from tests.conftest import LiveSandbox

SECRET = "sandbox-signing-secret"
SECURITY = "sec.lead@acme.com"  # an emergency declarer of the default policy
ADMIN = {"Authorization": "Bearer sandbox-admin-token"}
REPO = Path(__file__).resolve().parents[2]


def thread_stacks() -> str:
    """Where every thread of this process is (for a run that did not finish: which wait): the
    frames of this repository's code, then the innermost library frames below them."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        frames = traceback.extract_stack(frame)
        ours = [f for f in frames if str(REPO) in f.filename and "/.venv/" not in f.filename]
        shown = [*ours[-15:], *frames[-8:]]
        out.append(f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_list(shown)))
    return "\n".join(out)


STACKS_EVERY_S = 30.0
TEST_LOGS = REPO / ".handover" / "test-logs"


def keep_stacks() -> None:
    """Append this process's thread stacks, with the time and the test, to a file per worker."""
    TEST_LOGS.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    test = os.environ.get("PYTEST_CURRENT_TEST", "?")
    with (TEST_LOGS / f"slow-runs-{worker}.txt").open("a") as f:
        f.write(f"=== {time.strftime('%H:%M:%S')} {test}\n{thread_stacks()}\n")


@dataclass
class Run:
    """A flow run in a thread of the test process (it may pause at the gate)."""

    thread: threading.Thread
    result: list[Any] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)

    def wait(self, timeout: float = 180) -> dict[str, Any]:
        # Every 30 s the run is still going, where each thread is goes to .handover/test-logs/
        # (a run that stalls but still finishes in time leaves its trace there too).
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            self.thread.join(min(STACKS_EVERY_S, max(0.0, deadline - time.monotonic())))
            if self.thread.is_alive() and time.monotonic() < deadline:
                keep_stacks()
        assert not self.thread.is_alive(), f"the flow did not finish:\n{thread_stacks()}"
        assert not self.error, f"the flow raised {self.error[0]!r}"
        return self.result[0]  # type: ignore[no-any-return]


@dataclass
class OffboardStack:
    sandbox: LiveSandbox
    rt: Runtime
    svc: Services
    intake: TestClient
    roster: Path
    tmp: Path

    # --- the sandbox ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.sandbox.url

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, headers=ADMIN, timeout=10)
        r.raise_for_status()
        return r.json()

    def seq(self) -> int:
        """The request log's last sequence number."""
        reqs = self.get("/_sandbox/requests", limit=1)["requests"]
        return int(reqs[-1]["seq"]) if reqs else 0

    def writes(self, since: int = 0) -> list[dict[str, Any]]:
        """Every write the sandbox saw after ``since``, oldest first."""
        return self.get("/_sandbox/requests", since=since, writes="true")["requests"]  # type: ignore[no-any-return]

    def calls(self, since: int = 0, *, api: str = "org_admin") -> list[dict[str, Any]]:
        """Every request to ``api`` the sandbox saw after ``since``, oldest first."""
        return self.get("/_sandbox/requests", since=since, api=api, limit=100_000)["requests"]  # type: ignore[no-any-return]

    def dms(self, email: str) -> list[dict[str, Any]]:
        return self.get("/_sandbox/slack/messages", user_email=email)["messages"]  # type: ignore[no-any-return]

    def member(self, email: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.url}/admin/v1/members/{email}", headers=ADMIN, timeout=10)
        return None if r.status_code == 404 else r.json()

    def seed_secrets(self) -> dict[str, str]:
        """The demo keys' original secrets (key id → secret), kept by the seed."""
        with self.sandbox.world.db.session() as s:
            return dict(s.get(Setting, "seed_secrets").value)  # type: ignore[union-attr]

    def ingest(self, api_key: str) -> int:
        r = httpx.post(
            f"{self.url}/ingest/2/httpapi",
            json={"api_key": api_key, "events": [{"event_type": "ping"}]},
            timeout=10,
        )
        return r.status_code

    # --- the ledger -------------------------------------------------------------------------------
    def cases(self) -> list[dict[str, Any]]:
        """Every runbook case in the ledger, oldest first."""
        from sqlalchemy import select

        from ledger.cases import CaseRow

        with self.rt.ledger.sessions() as s:
            rows = s.scalars(select(CaseRow).order_by(CaseRow.id)).all()
            return [{c.name: getattr(r, c.name) for c in CaseRow.__table__.columns} for r in rows]

    def done(self, case_id: int) -> dict[str, dict[str, Any]]:
        """The steps the ledger says a case has done."""
        from ledger.cases import done_steps

        return done_steps(self.rt.ledger, case_id)

    # --- the flow ---------------------------------------------------------------------------------
    def emergency(self, email: str, by: str = SECURITY) -> dict[str, Any]:
        """The parameters of an emergency offboarding of ``email`` declared by ``by`` (recorded
        in the ledger as ``handover offboard --emergency`` records it: tasks.triggers)."""
        from domain.identity import SELF_DECLARED
        from tasks.triggers import declare

        found = declare(
            self.rt.ledger,
            subject=email,
            declared_by=by,
            verified=SELF_DECLARED.method,
            now=self.rt.clock(),
        )
        return {
            "email": email,
            "reason": "security_incident",
            "emergency": True,
            "requester": by,
            "declaration": found.id,
        }

    def start(self, runbook: Any = None, /, **params: Any) -> Run:
        """Run the offboarding flow (or ``runbook``) in a thread (it pauses at the gate until a
        decision)."""
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from flows.offboard import offboard

        flow = runbook or offboard

        run = Run(threading.Thread(target=lambda: None))

        def target() -> None:
            try:
                # A sync flow joins its heartbeat thread at the end (~1 s each): off in tests.
                with (
                    temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                    use_runtime(self.rt),  # a new thread: the binding is made in it
                ):
                    run.result.append(call_runbook(flow, **params))
            except BaseException as exc:  # surfaced by Run.wait
                run.error.append(exc)

        run.thread = threading.Thread(target=target, daemon=True)
        run.thread.start()
        return run

    def run(self, **params: Any) -> dict[str, Any]:
        """Run a flow that needs no approval to the end."""
        return self.start(**params).wait()

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

    def approve_every_seat(self, appr: ApprovalRequest) -> list[str]:
        """Fill each seat of the approval with a distinct person, by signed clicks; who."""
        clicked: list[str] = []
        for seat in appr.required:
            who = next(e for e in seat if e not in clicked)
            r = self.click(appr, who)
            assert r.status_code == 200 and r.json()["recorded"] is True, r.text
            clicked.append(who)
        return clicked

    def click(self, appr: ApprovalRequest, email: str, *, deny: bool = False) -> Any:
        """``email`` clicks Approve (or Deny) on the DM: a signed request to the intake."""
        user = self.svc.messenger.user_id(email)  # type: ignore[union-attr]
        asked = [r for r in appr.slack_refs if r["email"] == email]
        body = block_actions_body(
            approval_id=appr.id,
            plan_hash=appr.plan_hash,
            slack_user=user,
            deny=deny,
            channel=asked[-1]["channel"] if asked else None,
            ts=asked[-1]["ts"] if asked else None,
        )
        return self.intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))

    def task_waiting(self, subject: str, kind: str, timeout: float = 180) -> TaskRecord:
        """Wait until the run about ``subject`` is paused on its open human task of ``kind``;
        the task."""
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                t
                for t in list_tasks(self.svc.ledger, state=TaskState.OPEN)
                if t.subject == subject and t.kind.value == kind and t.flow_run_id
            ]
            if found:
                with get_client(sync_client=True) as c:
                    state = c.read_flow_run(UUID(found[-1].flow_run_id)).state
                if state is not None and state.is_paused():
                    return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no run of {subject} waiting on a {kind} task")

    def click_done(self, task: TaskRecord, email: str) -> Any:
        """``email`` clicks Done on the task's DM: a signed request to the intake."""
        user = self.svc.messenger.user_id(email)  # type: ignore[union-attr]
        asked = [r for r in task.slack_refs if r["email"] == email]
        body = block_actions_body(
            approval_id=task.id,
            plan_hash="",
            slack_user=user,
            deny=False,
            channel=asked[-1]["channel"] if asked else None,
            ts=asked[-1]["ts"] if asked else None,
            task=True,
        )
        return self.intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))

    def _interaction(self, payload: dict[str, Any]) -> Any:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.intake.post("/slack/interactions", content=body, headers=sign(SECRET, body))

    def click_cant(self, task: TaskRecord, email: str) -> tuple[Any, dict[str, Any] | None]:
        """``email`` clicks Can't do on the task's DM (a signed request, with Slack's
        trigger id); the intake's answer and the modal Slack then shows them, if any."""
        trigger = f"{time.time_ns()}.sandbox"
        r = self._interaction(
            {
                "type": "block_actions",
                **from_slack(),
                "user": {"id": self.svc.messenger.user_id(email)},  # type: ignore[union-attr]
                "trigger_id": trigger,
                "actions": [{"action_id": "task_cant", "block_id": "human_task", "value": task.id}],
            }
        )
        views = [
            v for v in self.get("/_sandbox/slack/views")["views"] if v["trigger_id"] == trigger
        ]
        return r, (views[0] if views else None)

    def send_view(self, view: dict[str, Any], email: str, reason: str) -> Any:
        """``email`` types ``reason`` into the Can't do modal and sends it (signed)."""
        return self._interaction(
            {
                "type": "view_submission",
                **from_slack(),
                "user": {"id": self.svc.messenger.user_id(email)},  # type: ignore[union-attr]
                "view": {
                    "id": view["id"],
                    "callback_id": view["callback_id"],
                    "private_metadata": view["private_metadata"],
                    "state": {
                        "values": {
                            "reason": {"reason": {"type": "plain_text_input", "value": reason}}
                        }
                    },
                },
            }
        )

    def console(self, method: str, path: str, actor: str, **kw: Any) -> Any:
        """A person acting in the org's web console (the sandbox's admin API as ``actor``)."""
        r = httpx.request(
            method,
            f"{self.url}/admin/v1{path}",
            headers={**ADMIN, "X-Acting-User": actor},
            timeout=10,
            **kw,
        )
        r.raise_for_status()
        return r.json()

    # --- the CLI in a subprocess ------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of a ``handover`` subprocess: same sandbox, roster and ledger."""
        s = self.rt.settings
        return {
            **os.environ,
            "HANDOVER_ORG_URL": s.org_url,
            "HANDOVER_ORG_BACKEND": s.org_backend,
            "HANDOVER_IDP_KIND": s.idp_kind,
            "HANDOVER_IDP_URL": s.idp_url,
            "HANDOVER_IDP_TOKEN_URL": s.idp_token_url,
            "HANDOVER_SLACK_API_URL": s.slack_api_url,
            "HANDOVER_JIRA_URL": s.jira_url,
            "HANDOVER_LEDGER_URL": str(s.ledger_url),
            "HANDOVER_ROSTER": str(self.roster),
            "HANDOVER_HOME": str(self.tmp / "home"),
            "HANDOVER_EXTRA_ORGS": json.dumps(
                {
                    name: {"url": o.url, "backend": o.backend} | QA_TOKENS
                    for name, o in s.extra_orgs.items()
                }
            ),
        }

    def handover(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        """Start ``handover ARGS…`` (the installed console script) in a subprocess."""
        exe = Path(sys.executable).with_name("handover")
        return subprocess.Popen(
            [str(exe), *args],
            env=self.env(),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )


# Where each IdP kind's API lives in the sandbox.
IDP_PATHS = SANDBOX_IDP_PATHS
QA_TOKENS = {"scim_token": "sandbox-scim-key", "admin_token": "sandbox-admin-token"}
QA_ORG: dict[str, Any] = {"backend": "sandbox", **QA_TOKENS}


def make_stack(
    sandbox: LiveSandbox,
    tmp: Path,
    *,
    edit_roster: Callable[[list[dict[str, Any]]], None] | None = None,
    backend: str = "sandbox",
    qa_org: bool = False,
    intake_url: str | None = None,
    idp_kind: str = "scim",
    more: dict[str, Any] | None = None,
) -> OffboardStack:
    """The stack over ``sandbox``: roster file (optionally edited), runtime, services, intake;
    ``backend`` is ``HANDOVER_ORG_BACKEND`` (``amplitude``: the org's SCIM API only);
    ``qa_org``: the sandbox's second org (``/orgs/qa``) is an extra org of the settings;
    ``intake_url``: ``HANDOVER_INTAKE_URL`` (where the links in DMs point), when the test
    serves the intake there; ``idp_kind``: ``HANDOVER_IDP_KIND``, each kind's API of the
    sandbox's one IdP (SCIM, Okta's Management API or Microsoft Graph); ``more``: other
    settings (e.g. an HR vendor's webhook secret and API)."""
    url = sandbox.url
    rows = httpx.get(f"{url}/_sandbox/roster", timeout=10).json()["rows"]
    if edit_roster is not None:
        edit_roster(rows)
    roster = tmp / "roster.json"
    roster.write_text(json.dumps({"rows": rows}))
    kw: dict[str, Any] = {
        "org_url": url,
        "idp_kind": idp_kind,
        "idp_url": f"{url}{IDP_PATHS[idp_kind]}",
        "slack_api_url": f"{url}/slack/api/",
        "jira_url": f"{url}/jira",
        "ledger_url": f"sqlite:///{tmp / 'ledger.db'}",
        "roster": roster,
        "home": tmp / "home",
        "org_backend": backend,
        "extra_orgs": {"qa": QA_ORG | {"url": f"{url}/orgs/qa"}} if qa_org else {},
        "oidc_issuer": f"{url}/idp/oidc",
        **({"intake_url": intake_url} if intake_url else {}),
    }
    settings = Settings(**(kw | (more or {})))
    rt = Runtime.from_settings(settings)
    # The intake's own services (it runs no steps), over the runtime's ledger and connectors.
    svc = Services(
        settings=settings,
        ledger=rt.ledger,
        policy=load_policy(settings.policy),
        messenger=rt.messenger,
        tickets=rt.tickets,
        clock=rt.clock,
        ticket_base_url=rt.ticket_base_url,
        idp=rt.idp,
        hr=rt.hr,
    )
    return OffboardStack(
        sandbox=sandbox,
        rt=rt,
        svc=svc,
        intake=TestClient(create_intake(svc)),
        roster=roster,
        tmp=tmp,
    )


def _demo_stack(tmp_path: Path, backend: str) -> Iterator[OffboardStack]:
    from sandbox.app import create_app
    from tests.conftest import serve

    sb = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        yield make_stack(sb, tmp_path, backend=backend)
    finally:
        sb.stop()


def demo_stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    """The demo sandbox over loopback and a stack on it, for one test (a fixture:
    ``pytest.fixture(...)``)."""
    yield from _demo_stack(tmp_path, "sandbox")


def scim_stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    """The demo sandbox over loopback and a stack on its SCIM-only org
    (``HANDOVER_ORG_BACKEND=amplitude``), for one test (a fixture: ``pytest.fixture(...)``)."""
    yield from _demo_stack(tmp_path, "amplitude")
