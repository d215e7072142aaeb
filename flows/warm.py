"""The warm executor: runbooks run in a long-lived process, not in a new interpreter each.

A process worker starts a new Python process per flow run: 2 to 3 s of imports and start-up
before the first step, 10 to 13 s from an HR webhook to the member removed (issue 18). An
emergency must not wait for that, and a batch of 200 leavers should not pay it 200 times. So
``handover warm-worker`` (``cli/warm_cmd.py``; ``handover up`` starts one) serves
:data:`offboard_warm` and ``flows.onboard_bulk.onboard_row_warm`` as Prefect *background
tasks* (``prefect.task_worker.serve``): the process has imported everything once and holds a
websocket to the server, which pushes each submitted run to one of the serving processes at
once.

Each background task runs a runbook flow itself (:func:`run_warm_flow`), a flow run of its
own (named :data:`RUN_PREFIX` + the task run's id): the same case, plan, gate, steps,
verification and audit trail as a run anywhere else. Who submits:

- the intake, for an emergency (``intake.launch.WarmLauncher``): an HR ``security_risk``
  event, when a warm worker serves this task; otherwise the ``offboard/offboard`` deployment,
  as before;
- a bulk offboarding (:func:`run_offboard`): each leaver is one background task, so several
  warm workers, on this machine or others, share a batch; without a warm worker each leaver
  runs in the bulk run's own process as before;
- a bulk onboarding: each approved row that needs no person (``onboard_row``) is one
  background task the same way (a row waiting on a human task stays a subflow of the batch:
  its pause may last days, and would hold a warm worker's slot).

The submitter stores the parameters (and Prefect its context) in the task-scheduling storage,
the worker reads them from there: both must see the same storage (one machine: the same
``PREFECT_LOCAL_STORAGE_PATH``, which ``handover up`` sets; several machines: a shared storage
block, ``PREFECT_TASKS_SCHEDULING_DEFAULT_STORAGE_BLOCK``). A warm worker killed mid-run
leaves its flow run without heartbeats: the crash automation marks it Crashed and the recovery
sweep starts an offboarding again as a run of the ``offboard/offboard`` deployment
(``cli.recover``); an onboarding row has no deployment: its batch reports it failed, and a
re-run of the batch finishes it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.settings import get_current_settings
from prefect.states import Cancelled

from domain.runbook import call_runbook
from flows.offboard import offboard

# The name of the flow run a background task ran: RUN_PREFIX + the task run's id. A name, not
# a tag: a flow run's tags are its tasks' too, and Prefect keeps one concurrency-slot service
# per distinct set of task tags for the life of the process, holding on to the context (and
# so every object) of the run that started it — a tag per run leaked ~1.7 MB per run.
RUN_PREFIX = "handover-warm-"
# The deployment a crashed warm run of each flow is started again as (cli.recover).
COLD_DEPLOYMENTS = {"offboard": "offboard/offboard"}
# How long an emergency handed to a warm worker waits for one to take it (seconds) before it
# is withdrawn and sent to the offboard deployment instead (taken_or_withdrawn): a serving
# worker with a free slot takes it within a second; one that died after saying it serves, or
# one busy with a batch, would otherwise hold it for as long as that lasts.
PICKUP_SECONDS = 5.0


# The options of every warm task: each submission is a run of its own (two emergencies with the
# same parameters, a person re-hired and leaving again, must both run; the runbook's case makes
# a repeat a no-op); the outcome is read back by a bulk run (future.result()) from the
# scheduling storage; no retries: the runbook converges when run again, and retrying is the
# recovery sweep's job.
WARM_TASK: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": True, "retries": 0}


def run_warm_flow(flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The body of a warm task: run ``flow`` with ``params`` in this warm process, as a flow
    run of its own named after the task run; its outcome, whichever state it ended in."""
    ctx = TaskRunContext.get()
    states = _states(ctx.task_run.id) if ctx is not None else []
    try:
        if withdrawn_first(states) is True:
            # Its submitter gave up waiting for a worker and ran it elsewhere
            # (taken_or_withdrawn, wait_warm); Prefect still delivers a cancelled background
            # task to a worker that subscribes later, and would let it run.
            get_run_logger().warning("withdrawn before a warm worker took it: not run here")
            return {"status": "withdrawn", "run_id": ""}
        # The name finds this task's flow run again (wait_warm: did the worker die?) and tells
        # the recovery sweep to start a crashed one as a deployment run.
        name = f"{RUN_PREFIX}{ctx.task_run.id if ctx is not None else uuid4()}"

        def run() -> dict[str, Any]:
            return call_runbook(flow.with_options(flow_run_name=name), **params)

        # In a context of its own: under this task's run context, the flow and every task in it
        # would take this task's persist_result, and each step's result (a rotation's among
        # them) would be written to the scheduling storage.
        return contextvars.Context().run(run)
    finally:
        forget_parameters(states)


def forget_parameters(states: Sequence[State[Any]]) -> Path | None:
    """Delete the stored parameters of the background task whose ``states`` these are, once
    it ran: Prefect writes them (with the submitter's settings, the Prefect API credential
    among them) to the task-scheduling storage and never deletes them. Only on the local
    storage (``PREFECT_LOCAL_STORAGE_PATH``, what ``handover up`` uses); a storage block's files
    are its owner's to expire. The file deleted, if any."""
    settings = get_current_settings()
    ids = [s.state_details.task_parameters_id for s in states]
    found = next((i for i in ids if i is not None), None)
    if found is None or settings.tasks.scheduling.default_storage_block is not None:
        return None
    path = Path(settings.results.local_storage_path) / "parameters" / str(found)
    try:
        path.unlink()
    except OSError:  # gone already, or not ours to delete: nothing worse than before
        return None
    return path


def _states(task_run_id: UUID) -> list[State[Any]]:
    """The states of a task run (none when Prefect cannot be asked: the flow run needs it
    anyway, and says so)."""
    try:
        with get_client(sync_client=True) as client:
            return list(client.read_task_run_states(task_run_id))
    except Exception:
        return []


@task(name="offboard-warm", **WARM_TASK)
def offboard_warm(params: dict[str, Any]) -> dict[str, Any]:
    """Run one offboarding (``params``: the ``offboard`` flow's parameters) in this warm
    process, as a flow run of its own; its outcome."""
    # Which worker took whom: the worker's log says (the server does not keep it).
    get_run_logger().info("offboarding %s", params.get("email"))
    return run_warm_flow(offboard, params)


def warm_workers(fn: Any = offboard_warm) -> int:
    """How many warm workers serve background task ``fn`` now (the server tracks each worker's
    websocket subscription); 0 when none does or the server cannot be asked."""
    try:
        with get_client(sync_client=True) as client:
            r = client.request(
                "POST",
                "/task_workers/filter",
                json={"task_worker_filter": {"task_keys": [fn.task_key]}},
            )
            r.raise_for_status()
            return len(r.json())
    except Exception:  # unknown is "none": the caller then runs the offboarding itself
        return 0


POLL_SECONDS = 30.0


def run_offboard(
    params: dict[str, Any], *, warm: bool, poll: float = POLL_SECONDS
) -> dict[str, Any]:
    """One offboarding's outcome: on a warm worker when ``warm`` (a background task, waited
    for: :func:`wait_warm`), else here, as a subflow of the calling flow."""
    return run_maybe_warm(offboard_warm, offboard, params, warm=warm, poll=poll)


def run_maybe_warm(
    warm_task: Any, flow: Any, params: dict[str, Any], *, warm: bool, poll: float = POLL_SECONDS
) -> dict[str, Any]:
    """``flow``'s outcome with ``params``: on a warm worker when ``warm`` (``warm_task``, a
    background task running ``flow``: :func:`run_warm_flow`; waited for: :func:`wait_warm`),
    else here, as a subflow of the calling flow."""

    def here() -> dict[str, Any]:
        return dict(call_runbook(flow, **params))

    if not warm:
        return here()
    # Submitted from an empty context: Prefect would otherwise hand the calling flow's run
    # context to the worker, and the run would become a subflow of this bulk run there (its
    # tracking task keyed by counters of a copy of this context).
    future = contextvars.Context().run(warm_task.delay, params)
    return wait_warm(future, here, poll=poll, fn=warm_task)


def wait_warm(
    future: Any, here: Callable[[], dict[str, Any]], *, poll: float, fn: Any = offboard_warm
) -> dict[str, Any]:
    """The outcome of the background task ``future`` (a run of warm task ``fn``). Every
    ``poll`` seconds without it, whether it can still come: a task no warm worker is left to
    take is withdrawn and run ``here`` instead; one whose worker died is a failed outcome
    saying so."""
    while True:
        try:
            return dict(future.result(timeout=poll))
        except TimeoutError:
            pass
        lost = _lost(future.task_run_id, fn)
        if lost == "unclaimed":
            return here()  # withdrawn first: no worker runs it now
        if lost:
            return {"status": "failed", "failure": lost, "run_id": ""}


def taken_or_withdrawn(
    task_run_id: UUID, *, within: float = PICKUP_SECONDS, poll: float = 0.1
) -> bool:
    """Whether a warm worker took background task ``task_run_id`` within ``within`` seconds
    (True); if none did, it is withdrawn (False: the caller runs it elsewhere, and no worker
    runs it later). True as well when Prefect cannot be asked: running it twice at once is
    worse than waiting for it."""
    deadline = time.monotonic() + within
    try:
        with get_client(sync_client=True) as client:
            while True:
                state = client.read_task_run(task_run_id).state
                if state is None or not state.is_scheduled():
                    return True
                if time.monotonic() >= deadline:
                    # Its flow run (created through the API) shows a worker's taking it even
                    # before the server has recorded the task's state from the worker's events.
                    if _flow_run_of(client, task_run_id) is not None:
                        return True
                    why = f"no warm worker took it within {within:g} s: run elsewhere"
                    return not _withdraw(client, task_run_id, why)
                time.sleep(poll)
    except Exception:  # the server's answer is the only way to know; without it, keep waiting
        return True


def withdrawn_first(states: Sequence[State[Any]]) -> bool | None:
    """From a background task's states, oldest first: True when it was cancelled before a
    worker took it (a Pending or Running state), False when a worker took it first, None when
    neither happened yet. The submitter and the worker both decide by this, so exactly one of
    them runs it, provided the server has recorded the worker's taking it (Prefect records a
    task's states from the worker's events, within a second or so) by the time the submitter
    decides: :data:`PICKUP_SECONDS` after handing it over, or a bulk run's poll."""
    for state in sorted(states, key=lambda s: s.timestamp):
        if state.is_cancelled():
            return True
        if state.is_pending() or state.is_running():
            return False
    return None


def _withdraw(client: Any, task_run_id: UUID, why: str) -> bool:
    """Cancel a background task no worker took; whether it was (False: a worker took it in
    the meantime, and runs it)."""
    answer = client.set_task_run_state(task_run_id, Cancelled(message=why))
    if answer.status.value != "ACCEPT":
        return False
    return withdrawn_first(client.read_task_run_states(task_run_id)) is True


def _lost(task_run_id: UUID, fn: Any) -> str:
    """Why a background task still not final after a wait will not end by itself: "unclaimed"
    when no warm worker is left to take it (and it is now cancelled, so none takes it later),
    a failure when the worker running it died (its flow run Crashed), else ""."""
    with get_client(sync_client=True) as client:
        state = client.read_task_run(task_run_id).state
        run = _flow_run_of(client, task_run_id)
        waiting = run is None and state is not None and state.is_scheduled()
        if waiting and not warm_workers(fn):
            why = "no warm worker left: run by the batch itself"
            return "unclaimed" if _withdraw(client, task_run_id, why) else ""
        if run is None or run.state is None or not run.state.is_crashed():
            return ""
        cold = COLD_DEPLOYMENTS.get(client.read_flow(run.flow_id).name)
        then = (
            f"the recovery sweep starts it again as a run of {cold}"
            if cold
            else "running the batch again finishes it"
        )
    return f"the warm worker running it died (flow run {run.id} crashed); {then}"


def _flow_run_of(client: Any, task_run_id: UUID) -> Any:
    """The flow run a warm worker started for background task ``task_run_id``, if any."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"{RUN_PREFIX}{task_run_id}"])),
        limit=1,
    )
    return runs[0] if runs else None
