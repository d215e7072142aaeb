"""The watchdog does not flood: a run it cannot wake yet (running, not paused yet; or paused
without its input schema, as Prefect's own pause leaves a run for a moment — and for good when
its process dies there) is tried again with a doubling back-off, not at every sweep, and said
once in the log; a run it woke is not woken again for the same decisions.

On the session's real Prefect server; the back-off runs on a fake monotonic clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow

from approvals.services import Services
from approvals.watchdog import Watchdog
from domain.records import ApprovalRequest, ApprovalState, Decision
from ledger.approvals import add_decision, create_approval, get_approval
from tests.approvals.stack import Stack

pytestmark = pytest.mark.slow

TERMINATION = {
    "runbook": "offboard",
    "subject": "dana.sole@acme.com",
    "requester": "hr.bot@acme.com",
    "reason": "termination",
    "subject_manager": "sofia.lead@acme.com",
}


@flow(name="watchdog-test", persist_result=False)
def nothing() -> None:
    """Only its runs are used: created on the server, never executed."""


def _run(*, paused_without_schema: bool) -> UUID:
    """A flow run that is Running, or Paused with an input keyset but no schema stored."""
    from prefect.client.orchestration import get_client
    from prefect.states import Paused, Running, State

    with get_client(sync_client=True) as c:
        run = c.create_flow_run(nothing, state=Running())
        if paused_without_schema:
            state: State[Any] = Paused(timeout_seconds=3600, pause_key="k1")
            state.state_details.run_input_keyset = {
                "description": "paused-k1-description",
                "response": "paused-k1-response",
                "schema": "paused-k1-schema",
            }
            answer = c.set_flow_run_state(run.id, state)
            assert answer.state is not None and answer.state.is_paused()
    return run.id


def _pending_with_a_new_decision(svc: Services, run_id: UUID) -> ApprovalRequest:
    """An approval of that run holding a decision its flow has not tallied."""
    now = svc.clock()
    appr = create_approval(
        svc.ledger,
        ApprovalRequest(
            id=f"apr-{run_id.hex[:12]}",
            flow_run_id=str(run_id),
            runbook="offboard",
            subject="dana.sole@acme.com",
            requester="hr.bot@acme.com",
            plan_hash="d" * 64,
            rule="termination",
            required=[["sofia.lead@acme.com"]],
            created_at=now,
            expires_at=now + timedelta(hours=24),
        ),
    )
    decision = Decision(
        approver="sofia.lead@acme.com", decision="approve", at=now, plan_hash=appr.plan_hash
    )
    add_decision(svc.ledger, appr.id, decision)
    return appr


@pytest.fixture
def requests_to_prefect(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every (method, path) this process sends to the Prefect API."""
    real = httpx.HTTPTransport.handle_request
    sent: list[tuple[str, str]] = []

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    yield sent


@pytest.mark.parametrize("paused_without_schema", [False, True])
def test_a_run_that_cannot_be_woken_yet_is_not_woken_at_every_sweep(
    stack: Stack,
    requests_to_prefect: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
    paused_without_schema: bool,
) -> None:
    run_id = _run(paused_without_schema=paused_without_schema)
    _pending_with_a_new_decision(stack.svc, run_id)
    tick = [0.0]
    dog = Watchdog(stack.svc, every=1.0, monotonic=lambda: tick[0])
    requests_to_prefect.clear()
    with caplog.at_level(logging.INFO, logger="handover.approvals"):
        for _ in range(60):  # a minute of sweeps, one a second
            assert dog.sweep() == []  # never woken: nothing to report
            tick[0] += 1.0
    looks = [p for m, p in requests_to_prefect if m == "GET" and p.endswith(str(run_id))]
    resumes = [p for m, p in requests_to_prefect if m == "POST" and p.endswith("/resume")]
    # Tried at 0, 1, 3, 7, 15 and 31 s: six times, not sixty.
    assert len(looks) == 6
    assert len(resumes) == (6 if paused_without_schema else 0)
    said = [r.getMessage() for r in caplog.records if r.name == "handover.approvals"]
    if paused_without_schema:
        assert len(said) == 1 and "input schema is not stored yet" in said[0], said
    else:
        assert said == []  # simply between two pauses: nothing to say


def test_a_click_whose_wake_up_was_lost_is_woken_once_by_the_watchdog(
    stack: Stack, requests_to_prefect: list[tuple[str, str]]
) -> None:
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    # A click whose wake-up was lost (it came between the flow's tally and its pause): in the
    # ledger, untallied.
    decision = Decision(
        approver="sofia.lead@acme.com",
        decision="approve",
        at=stack.svc.clock(),
        plan_hash=appr.plan_hash,
    )
    add_decision(stack.svc.ledger, appr.id, decision)
    dog = Watchdog(stack.svc, every=1.0)
    requests_to_prefect.clear()
    woke: list[Any] = []
    deadline = time.monotonic() + 30
    while run.thread.is_alive() and time.monotonic() < deadline:
        woke += [(a.kind, a.result) for a in dog.sweep()]
        time.sleep(0.05)  # twenty sweeps a second while the flow tallies and finishes
    assert run.wait() == "approved"
    assert woke == [("decision", "resumed")]
    assert len([m for m, p in requests_to_prefect if p.endswith("/resume")]) == 1
    assert get_approval(stack.svc.ledger, appr.id).state is ApprovalState.APPROVED
