"""The gate's pause under the races CI met under load (tests/flows/test_chaos.py), made
deterministic on the session's real Prefect server.

- The answer to the Paused proposal is lost after the server committed it (a read timeout): the
  client resends the same request, the server refuses it as a duplicate ("This run has already
  made this state transition") and hands back the Paused state; the run must wait at its gate,
  not crash with ``prefect.exceptions.Pause``.
- A resume arrives the moment the run is Paused, before the flow does anything else: it must be
  accepted (Prefect's own pause stores the input schema only after pausing, and the resume was
  refused: "Run input schema not found"). The answer to storing the schema may be lost too: the
  resend is refused (409, the key exists), which is no failure.
- The gate is entered again in the same flow run with the approval still pending: its pauses
  must not reuse a key of the earlier entry (the server refuses a used key and the client then
  replays that pause's old input as if it were a new wake-up).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.runtime import flow_run

from approvals.gate import PlanSummary, await_decision, open_approval
from approvals.pause import pause_run
from domain.policy import ApprovalContext
from domain.records import ApprovalState
from ledger.approvals import get_approval
from tests.approvals.stack import SERVICES, Run, Stack

pytestmark = pytest.mark.slow

TERMINATION = {
    "runbook": "offboard",
    "subject": "dana.sole@acme.com",
    "requester": "hr.bot@acme.com",
    "reason": "termination",
    "subject_manager": "sofia.lead@acme.com",
}


@contextmanager
def after_the_pause_is_committed(
    monkeypatch: pytest.MonkeyPatch, then: Callable[[httpx.Request], None]
) -> Iterator[list[str]]:
    """Call ``then`` once, right after the server has answered the first proposal of a Paused
    state (it is committed), in place of handing the answer back; yields the paths it hit."""
    real = httpx.HTTPTransport.handle_request
    hit: list[str] = []
    lock = threading.Lock()

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = real(self, request)
        if request.method == "POST" and request.url.path.endswith("/set_state"):
            proposed = json.loads(request.content)["state"]["type"]
            with lock:
                first = proposed == "PAUSED" and not hit
                if first:
                    hit.append(request.url.path)
            if first:
                response.read()
                then(request)
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    yield hit


def _run_state(appr_flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        state = c.read_flow_run(UUID(appr_flow_run_id)).state
    return state.type.value if state else ""


def _resume(request: httpx.Request) -> str:
    """Resume the run a request is about, as the watchdog or a click would; what happened."""
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(UUID(request.url.path.split("/")[-2]), run_input={"kind": "decision"})
    except RuntimeError as exc:
        return str(exc)
    return "resumed"


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("woken_before_the_resend", [False, True])
def test_a_lost_answer_to_the_pause_leaves_the_run_waiting_at_its_gate(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, woken_before_the_resend: bool
) -> None:
    done: list[str] = []

    def lose_the_answer(request: httpx.Request) -> None:
        if woken_before_the_resend:  # the resend then finds the run Running again
            done.append(_resume(request))
        done.append("lost")
        # Prefect's client retries a read timeout with the very same body (same transition id).
        raise httpx.ReadTimeout("the answer to the pause was lost", request=request)

    with after_the_pause_is_committed(monkeypatch, lose_the_answer):
        run = stack.start(**TERMINATION)
        _wait_for("the lost answer", lambda: "lost" in done)
        appr = stack.paused("dana.sole@acme.com")
    assert done == (["resumed", "lost"] if woken_before_the_resend else ["lost"])
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    assert run.wait() == "approved"


def test_a_resume_the_moment_the_run_is_paused_is_accepted(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome: list[str] = []
    with after_the_pause_is_committed(monkeypatch, lambda r: outcome.append(_resume(r))):
        run = stack.start(**TERMINATION)
        _wait_for("the resume", lambda: outcome)
        assert outcome == ["resumed"]
        # Woken with nothing decided, the flow tallies and pauses again: a click still decides.
        appr = stack.paused("dana.sole@acme.com")
    assert stack.click(appr, "hr.partner@acme.com", deny=True).json()["recorded"] is True
    assert run.wait() == "denied"


def test_a_lost_answer_to_storing_the_input_schema_is_not_a_failure(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = httpx.HTTPTransport.handle_request
    lost: list[str] = []

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = real(self, request)
        if (
            not lost
            and request.method == "POST"
            and request.url.path.endswith("/input")
            and json.loads(request.content)["key"].endswith("-schema")
        ):
            lost.append(request.url.path)
            response.read()
            # The schema is stored; the resend is answered 409 (the key exists).
            raise httpx.ReadTimeout("the answer to the store was lost", request=request)
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    assert lost
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    assert run.wait() == "approved"


class Interrupted(Exception):
    """The first entry of the gate left without deciding (a fault after a wake-up)."""


@flow(name="gate-entered-twice", persist_result=False)
def gate_entered_twice(key: str, ctx: dict[str, Any], plan_hash: str) -> list[str]:
    """Enter the gate, leave it after its first wake-up, enter it again; each entry's state."""
    svc = SERVICES[key]
    summary = PlanSummary({"remove_member": 1})
    appr, req = open_approval(
        svc,
        ApprovalContext(**ctx),
        plan_hash=plan_hash,
        summary=summary,
        flow_run_id=str(flow_run.id),
    )
    seen: list[str] = []

    def pause_then_fail(**kw: Any) -> Any:
        wake = pause_run(**kw)
        seen.append(getattr(wake, "kind", ""))
        raise Interrupted

    with suppress(Interrupted):
        await_decision(svc, appr, req, summary=summary, pause=pause_then_fail)
    second = await_decision(svc, appr, req, summary=summary)
    return [*seen, second.state.value]


def test_the_gate_entered_again_in_the_same_run_waits_for_a_new_wake_up(stack: Stack) -> None:
    from prefect.flow_runs import resume_flow_run

    result: list[Any] = []

    def target() -> None:
        try:
            result.append(gate_entered_twice(stack.key, TERMINATION, "c" * 64))
        except BaseException as exc:  # surfaced by Run.wait
            print("flow raised", repr(exc))

    run = Run(threading.Thread(target=target, daemon=True), result)
    run.thread.start()
    appr = stack.paused("dana.sole@acme.com")
    # The first entry is woken by a cancel and leaves without acting on it.
    resume_flow_run(UUID(appr.flow_run_id), run_input={"kind": "cancel"})
    stack.paused("dana.sole@acme.com")  # the second entry waits: the old cancel is not replayed
    assert get_approval(stack.svc.ledger, appr.id).state is ApprovalState.PENDING
    assert _run_state(appr.flow_run_id) == "PAUSED"
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    run.thread.join(60)
    assert result == [["cancel", "approved"]]


def test_two_wake_ups_at_once_are_no_failure(stack: Stack) -> None:
    """A click's resume and the run's own recheck (or two clicks) both find the run paused;
    the first stores its input under the pause's response key and resumes it; the second's
    store is refused by that key (409 "Data integrity conflict", seen on PostgreSQL under
    load): it is "not paused", not an error that reaches the person who clicked."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from approvals.handler import resume_run

    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    run_id = UUID(appr.flow_run_id)
    with get_client(sync_client=True) as c:
        state = c.read_flow_run(run_id).state
        assert state is not None and state.state_details.run_input_keyset
        response_key = state.state_details.run_input_keyset["response"]
        # The other wake-up, halfway: its input is stored, the run not yet Running.
        c.create_flow_run_input(run_id, key=response_key, value=json.dumps({"kind": "decision"}))
        wake = resume_run(appr.flow_run_id)
        assert (wake.result, wake.why) == (
            "not paused",
            "resumed by another wake-up at the same moment",
        )
        c.set_flow_run_state(run_id, Running(), force=True)  # …and the other one resumes it
    # The run read the other's input, tallied nothing new and waits again: a click decides.
    appr = stack.paused("dana.sole@acme.com")
    assert stack.click(appr, "sofia.lead@acme.com").json()["recorded"] is True
    assert run.wait() == "approved"
