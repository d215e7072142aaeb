"""What the scheduled sweeps' end-to-end tests share: the demo sandbox's stack on the session's
Prefect server, the sandbox's clock (moved by the tests, so every sweep is given the sandbox's
time as ``now``), one sweep run in this process, and the contractor's temporary grant of the
expiry stories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from domain.models import Role
from domain.records import Grant
from domain.runbook import RunbookFailed
from ledger.cases import open_case
from ledger.grants import record_grant
from sandbox.app import create_app
from tasks.runtime import Runtime, use_runtime
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import ADMIN, OffboardStack, make_stack

CARLA = "carla.contract@agency.io"
SPONSOR = "sofia.lead@acme.com"


def demo_stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    """The demo sandbox over loopback and its stack (a fixture: ``pytest.fixture(...)``)."""
    sb: LiveSandbox = serve(create_app(None, seed="demo", rng_seed=5))
    yield make_stack(sb, tmp_path)
    sb.stop()


def sandbox_now(url: str) -> datetime:
    """The sandbox's clock."""
    r = httpx.get(f"{url}/_sandbox/clock", headers=ADMIN, timeout=10)
    r.raise_for_status()
    return datetime.fromisoformat(str(r.json()["now"]).replace("Z", "+00:00"))


def sweep(flow: Callable[..., dict[str, Any]], st: OffboardStack, **params: Any) -> dict[str, Any]:
    """Run the sweep ``flow`` here at the sandbox's time; its outcome (a failed or blocked
    sweep's too)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), use_runtime(st.rt):
        try:
            return flow(now=sandbox_now(st.url).isoformat(), **params)
        except RunbookFailed as exc:  # the run ended Failed: its outcome says why
            return exc.outcome


def extend_buttons(url: str, email: str) -> list[str]:
    """The values of the Extend buttons in ``email``'s DMs."""
    r = httpx.get(
        f"{url}/_sandbox/slack/messages", params={"user_email": email}, headers=ADMIN, timeout=10
    )
    r.raise_for_status()
    return [
        el["value"]
        for m in r.json()["messages"]
        for b in m.get("blocks") or []
        if b.get("type") == "actions"
        for el in b.get("elements", [])
        if el.get("action_id") == "extend"
    ]


def access_ticket(rt: Runtime, email: str, summary: str) -> str:
    """A new access request in Jira about ``email``; its key."""
    return rt.tickets.create(
        project="ACC", issue_type="Access Request", summary=summary, description=f"email: {email}"
    ).key


def temporary_staging_manager(rt: Runtime, start: datetime) -> Grant:
    """Carla's temporary Staging Manager role, from ``start`` for 2 days, on a ticket,
    sponsored by Sofia: given in the org and recorded in the ledger."""
    rt.org.set_project_role(CARLA, "Staging", Role.MANAGER)  # type: ignore[union-attr]
    ticket = access_ticket(rt, CARLA, f"Temporary Staging Manager for {CARLA}")
    return record_grant(
        rt.ledger,
        Grant(
            subject=CARLA,
            project="Staging",
            role="manager",
            start=start,
            end=start + timedelta(days=2),
            ticket=ticket,
            sponsor=SPONSOR,
        ),
    )


def onboarding_case(rt: Runtime, email: str) -> str:
    """An earlier onboarding case of ``email`` in the ledger, asked by Sofia on a new ticket
    (how the hygiene finds an invitation's ticket); the ticket."""
    ticket = access_ticket(rt, email, f"Amplitude access for {email}")
    open_case(
        rt.ledger,
        runbook="onboard",
        subject=email,
        reason="access_request",
        requester=SPONSOR,
        ticket=ticket,
        now=rt.clock(),
    )
    return ticket
