"""The watchdog does not flood: a run it cannot wake yet (running, not paused yet; or paused
without its input schema, as Prefect's own pause leaves a run for a moment — and for good when
its process dies there) is tried again with a doubling back-off, not at every sweep, and said
once in the log; a click whose wake-up was lost is woken once. ``handover watchdog`` is a
process of its own that wakes due runs and stops on SIGTERM; its loop outlives a failing sweep
and says so once.

On the session's real Prefect server; the back-off runs on a fake monotonic clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow

from approvals.gate import ApprovalWakeup
from approvals.services import Services
from approvals.watchdog import Watchdog, run_forever
from cli.watchdog_cmd import start_watchdog
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


def _run(*, paused: str = "") -> UUID:
    """A flow run that is Running (``paused=""``), or Paused with an input keyset and its
    schema stored (``"with schema"``) or not (``"without schema"``)."""
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import run_input_subclass_from_type
    from prefect.states import Paused, Running, State

    with get_client(sync_client=True) as c:
        run = c.create_flow_run(nothing, state=Running())
        if paused:
            keyset = {
                "description": "paused-k1-description",
                "response": "paused-k1-response",
                "schema": "paused-k1-schema",
            }
            if paused == "with schema":
                run_input_subclass_from_type(ApprovalWakeup).save(keyset, flow_run_id=run.id)  # type: ignore[arg-type]
            state: State[Any] = Paused(timeout_seconds=3600, pause_key="k1")
            state.state_details.run_input_keyset = keyset
            answer = c.set_flow_run_state(run.id, state)
            assert answer.state is not None and answer.state.is_paused()
    return run.id


def _pending(svc: Services, run_id: UUID, *, age: timedelta = timedelta(0)) -> ApprovalRequest:
    """A pending approval of that run, created ``age`` ago."""
    now = svc.clock() - age
    return create_approval(
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


def _pending_with_a_new_decision(svc: Services, run_id: UUID) -> ApprovalRequest:
    """A pending approval of that run holding a decision its flow has not tallied."""
    appr = _pending(svc, run_id)
    decision = Decision(
        approver="sofia.lead@acme.com",
        decision="approve",
        at=svc.clock(),
        plan_hash=appr.plan_hash,
    )
    add_decision(svc.ledger, appr.id, decision)
    return appr


@pytest.fixture
def requests_to_prefect(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every (method, path) this process sends to the Prefect API and the server handles. An
    answer of 500 or more is left out: a Prefect server on SQLite answers 503 while its database
    is busy and the client sends the same request again, which is one request of ours."""
    real = httpx.HTTPTransport.handle_request
    sent: list[tuple[str, str]] = []

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = real(self, request)
        if response.status_code < 500:
            sent.append((request.method, request.url.path))
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    yield sent


@pytest.mark.parametrize("paused_without_schema", [False, True])
def test_a_run_that_cannot_be_woken_yet_is_not_woken_at_every_sweep(
    stack: Stack,
    requests_to_prefect: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
    paused_without_schema: bool,
) -> None:
    run_id = _run(paused="without schema" if paused_without_schema else "")
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


def test_handover_watchdog_is_a_process_that_wakes_due_runs_and_stops_on_sigterm(
    stack: Stack, tmp_path: Path
) -> None:
    from prefect.input.actions import read_flow_run_input

    run_id = _run(paused="with schema")
    _pending(stack.svc, run_id, age=timedelta(hours=25))  # past its 24 h: auto-deny
    log = tmp_path / "watchdog.log"
    dog = start_watchdog(
        every=0.5,
        launch=False,
        env={"HANDOVER_LEDGER_URL": str(stack.svc.settings.ledger_url)},
        log=log,
    )
    try:
        deadline = time.monotonic() + 60
        while read_flow_run_input("paused-k1-response", flow_run_id=run_id) is None:
            assert dog.alive(), log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        dog.stop()
    assert read_flow_run_input("paused-k1-response", flow_run_id=run_id) == {"kind": "expired"}
    assert dog.proc.returncode == 0, log.read_text()
    out = log.read_text()
    assert "watchdog: sweeping approvals every 0.5 s" in out and "watchdog: stopped" in out


def test_a_failing_sweep_does_not_end_the_loop_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from approvals.policy import load_policy
    from approvals.services import open_settings_ledger
    from connectors.settings import Settings

    settings = Settings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}", home=tmp_path)
    svc = Services(settings=settings, ledger=open_settings_ledger(settings), policy=load_policy())
    stop = threading.Event()
    rounds: list[int] = []

    def due_events() -> None:
        rounds.append(1)
        if len(rounds) >= 5:
            stop.set()
        raise RuntimeError("the ledger is briefly unreachable")

    with caplog.at_level(logging.WARNING, logger="handover.approvals"):
        run_forever(svc, every=0.01, stop=stop, also=[due_events])
    assert len(rounds) == 5
    said = [r.getMessage() for r in caplog.records if r.name == "handover.approvals"]
    assert said == [
        "watchdog: the due_events sweep failed (retried): the ledger is briefly unreachable"
    ]
