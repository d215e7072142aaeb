"""Pausing the current flow run until something wakes it, without the races of Prefect's own
``pause_flow_run`` (prefect/flow_runs.py, 3.8.8), which the chaos test met under load:

1. It proposes the Paused state, then stores the input schema. Between the two, the run is
   Paused without a schema, and a resume is refused ("Run input schema not found"); if the
   process dies there, the run stays so for good.
2. When the answer to the proposal is lost after the server committed it (a read timeout, a
   reset connection), Prefect's HTTP client sends the same request again, with the same
   ``transition_id``. The server refuses the duplicate ("This run has already made this state
   transition", ``PreventDuplicateTransitions``) and answers with the Paused state it already
   holds; ``propose_state_sync`` turns that answer into ``prefect.exceptions.Pause``, which
   ``pause_flow_run`` lets through: the run crashes at its gate although it *is* paused — and,
   by 1., its schema was never stored, so no resume can ever reach it.

:func:`pause_run` pauses the same way (same states, keys and stored input, so
``resume_flow_run`` and the UI work unchanged) in the other order, and asks the server what
happened instead of trusting one answer:

- the schema is stored first: whenever the run is Paused, a resume is accepted (a 409 on a
  resent store means it is already there);
- the Paused state is proposed, and the outcome read from the run's state on the server:
  Paused under this key is paused (whether this answer or a lost one did it); Running after
  using this key (the server keeps the keys a run paused with) is already woken. Anything else
  cannot pause, as before (``RuntimeError``);
- the key must be new in the run: the server refuses a used one ("This pause has already
  fired") and the run would seem woken by the old pause's input. The gate makes one per pause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("handover.approvals")


def pause_run(
    wait_for_input: type[M],
    *,
    timeout: int,
    poll_interval: int = 10,
    key: str,
    recheck: Callable[[], bool] | None = None,
    recheck_kind: str = "task",
) -> Any:
    """Pause the current flow run under ``key`` until it is resumed; the input it was resumed
    with, as ``wait_for_input`` (its defaults when the resume carried none).

    ``recheck``: asked at each poll while paused; True resumes the run from here. What it
    checks (a human task answered, in the ledger) may have happened between the caller's last
    look and the pause, when a resume finds the run not paused yet and is lost. ``recheck_kind``:
    the ``kind`` the run then resumes itself with (a value ``wait_for_input`` accepts).

    Raises:
        RuntimeError: outside a flow run, or the server will not let the run pause (it is not
            running: cancelled, crashed…).
        prefect.exceptions.FlowPauseTimeout: not resumed within ``timeout`` seconds (the server
            then fails the run).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.input.run_input import keyset_from_paused_state, run_input_subclass_from_type
    from prefect.states import Paused

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("Flow runs can only be paused from within a flow run.")
    run_id: UUID = context.flow_run.id
    proposed: State[Any] = Paused(timeout_seconds=timeout, reschedule=False, pause_key=key)
    keyset = keyset_from_paused_state(proposed)
    stored = {str(k): v for k, v in keyset.items()}
    proposed.state_details.run_input_keyset = stored
    model = run_input_subclass_from_type(wait_for_input)

    try:
        model.save(keyset, flow_run_id=run_id)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 409:  # 409: a resent store; the schema is there
            raise

    with get_client(sync_client=True) as client:
        answer = client.set_flow_run_state(run_id, proposed)
        while answer.status is SetStateStatus.WAIT:
            time.sleep(getattr(answer.details, "delay_seconds", 1) or 1)
            answer = client.set_flow_run_state(run_id, proposed)
        if answer.status is SetStateStatus.ABORT:
            raise RuntimeError(f"Flow run cannot be paused: {answer.details}")
        if answer.status is SetStateStatus.REJECT:
            # Rejected, perhaps as a resend of our own accepted proposal: the server knows.
            run = client.read_flow_run(run_id)
            state = run.state
            paused_here = (
                state is not None
                and state.type is StateType.PAUSED
                and state.state_details.pause_key == key
            )
            woken = (
                state is not None
                and state.type is StateType.RUNNING
                and key in (run.empirical_policy.pause_keys or set())
            )
            reason = getattr(answer.details, "reason", "")
            if woken:
                log.info("pause %s of run %s: already paused and woken (%s)", key, run_id, reason)
                return model.load(keyset, flow_run_id=run_id)
            if not paused_here:
                raise RuntimeError(
                    f"Flow run cannot be paused: {reason} (state: {state.type if state else None})"
                )
            log.info("pause %s of run %s: already paused (%s)", key, run_id, reason)

        deadline = time.monotonic() + timeout
        time.sleep(min(timeout / 2, poll_interval))
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and state.type is StateType.RUNNING:
                return model.load(keyset, flow_run_id=run_id)
            if state is not None and state.type is StateType.PAUSED and recheck and recheck():
                _resume_self(run_id, recheck_kind)
                continue
            if time.monotonic() >= deadline:
                raise FlowPauseTimeout("Flow run was paused and never resumed.")
            time.sleep(poll_interval)


def _resume_self(run_id: UUID, kind: str = "task") -> None:
    """Resume this paused run (what it waits for has happened). A resume that races another
    one is no failure: either wakes it (``approvals.handler.resume_run`` says "not paused");
    a refusal still ends the run, as Prefect's own error did."""
    from approvals.handler import resume_run

    wake = resume_run(str(run_id), kind)
    if wake.result == "refused":
        raise RuntimeError(f"Cannot resume this run: {wake.why}")
