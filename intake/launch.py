"""Starting runs from the intake, without the intake knowing the flows.

The front door may not import ``flows`` (import-linter: it only records and resumes), so
whoever builds the intake (the CLI, a test) injects a ``Launcher``: a callable that takes the
flow's parameters and returns a reference to the run it started. Two kinds:

- ``thread_launcher(offboard)``: runs the flow function in a daemon thread of this process
  (``handover demo``, the sandbox stack), in a copy of the context the launcher was made in (so
  a runtime its maker bound with ``tasks.runtime.use_runtime`` is the run's); the reference is
  a fresh uuid, also used as the Prefect flow-run name so the run can be found.
- ``deployment_launcher("offboard/offboard")``: ``run_deployment(..., timeout=0)`` on the Prefect
  server (``handover up``); a worker runs the flow. The requester carries the event id
  (``hr-system:<event_id>``), used as the idempotency key, so even a re-launch after a crash
  yields the same flow run. It imports only prefect, never the flows.

- ``WarmLauncher(task, serving, fallback)``: an emergency (``emergency=True``) goes to a warm
  worker (``task.delay(params)``: a Prefect background task, flows/warm.py) when one serves it
  now, so the lockout does not wait for a new interpreter; anything else, or with no warm
  worker, goes to ``fallback`` (the deployment launcher). Its references are ``warm:<task run
  id>``.

Whether a run has ended is asked of the launcher that started it (``run_ended``): a thread
launcher knows its threads, a deployment launcher asks Prefect for the flow run's state. The
front door uses it to keep one run at a time per ticket and per grant (intake/keyed.py).

``launch_due`` is the sweep that starts scheduled events (effective dates that have come) and
claims stranded by a crash; each event is taken by a compare-and-set, so it starts once. The
watchdog process runs it after each approval sweep (``handover watchdog``, with deployment
launchers: cli/watchdog_cmd.py).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from approvals.services import Services
from domain.runbook import call_runbook
from ledger.db import LedgerDB
from ledger.events import due_events, mark_started, release_event, set_event_run

Launcher = Callable[[dict[str, Any]], str]
"""Takes a flow's parameters, starts the run (without waiting for it) and returns its reference."""

log = logging.getLogger("handover.intake")


@dataclass
class ThreadLauncher:
    """A ``Launcher`` running ``flow_fn(**params)`` in a daemon thread of this process.

    ``runs`` keeps each run's thread and ``results`` its return value (or the exception it
    raised), by reference, for the demo and tests to wait on. Each run starts in a copy of
    ``context``, the context the launcher was made in: a request handler's thread has none of
    its maker's bindings (the runtime its runs must use).
    """

    flow_fn: Callable[..., Any]
    runs: dict[str, threading.Thread] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def __call__(self, params: dict[str, Any]) -> str:
        ref = str(uuid.uuid4())
        fn = self.flow_fn
        # A Prefect flow takes a run name: the reference then finds the run in the UI.
        with_options = getattr(fn, "with_options", None)
        if callable(with_options):
            fn = with_options(flow_run_name=f"hr-{ref}")

        def target() -> None:
            try:
                self.results[ref] = call_runbook(fn, **params)
            except BaseException as exc:  # a failed run must not take the intake down
                self.results[ref] = exc
                log.error("run %s (%s) raised %s", ref, params.get("requester", ""), exc)

        ctx = self.context.copy()  # one copy per run: a context is entered by one thread at once
        thread = threading.Thread(
            target=ctx.run, args=(target,), name=f"handover-run-{ref[:8]}", daemon=True
        )
        self.runs[ref] = thread
        thread.start()
        return ref

    def ended(self, ref: str) -> bool:
        """True once run ``ref`` has returned (or raised); a reference this process never
        started is no run of its own, and not running here either."""
        thread = self.runs.get(ref)
        return thread is None or not thread.is_alive()

    def wait(self, ref: str, timeout: float | None = None) -> Any:
        """Wait for run ``ref`` to end; its return value (or the exception it raised)."""
        self.runs[ref].join(timeout)
        if self.runs[ref].is_alive():
            raise TimeoutError(f"run {ref} still running after {timeout} s")
        return self.results.get(ref)


def thread_launcher(flow_fn: Callable[..., Any]) -> ThreadLauncher:
    """A launcher that runs ``flow_fn`` (e.g. ``flows.offboard.offboard``) in a daemon thread,
    in a copy of the caller's context."""
    return ThreadLauncher(flow_fn)


def start_event(
    db: LedgerDB,
    launcher: Launcher,
    source: str,
    event_id: str,
    params: dict[str, Any],
    *,
    forget_on_failure: bool = False,
) -> str:
    """Launch the run of a claimed event and remember its reference.

    Raises:
        Exception: whatever the launcher raised; the claim is released first
            (``ledger.events.release_event``, forgotten with ``forget_on_failure``), so the
            event can be started again by the sender's retry or the next sweep.
    """
    try:
        ref = launcher(params)
    except Exception:
        release_event(db, source, event_id, forget=forget_on_failure)
        raise
    set_event_run(db, source, event_id, ref)
    return ref


def launch_due(
    svc: Services, launcher: Launcher | dict[str, Launcher], now: datetime | None = None
) -> list[tuple[str, str]]:
    """Start every event due by ``now`` (default: the services' clock), each once.

    ``launcher`` is one launcher for every source, or one per source (``{"hr": …,
    "jira": …}``): a stranded Jira event must start an onboarding, never an offboarding.

    Returns:
        ``(event_id, run reference)`` of the runs started by this call. An event another sweep
        took first, or whose launch failed (it stays due for the next sweep), is not listed.
    """
    now = now or svc.clock()
    started: list[tuple[str, str]] = []
    for ev in due_events(svc.ledger, now):
        chosen = launcher.get(ev.source) if isinstance(launcher, dict) else launcher
        if chosen is None:
            continue  # no launcher for this source in this process
        if not mark_started(svc.ledger, ev.source, ev.event_id, now=now):
            continue  # another sweep took it
        try:
            ref = start_event(svc.ledger, chosen, ev.source, ev.event_id, ev.params)
        except Exception as exc:
            log.warning("could not start %s event %s: %s", ev.source, ev.event_id, exc)
            continue
        started.append((ev.event_id, ref))
    return started


def run_ended(launcher: Launcher, ref: str) -> bool | None:
    """Whether run ``ref``, started by ``launcher``, has ended: True, False, or None when the
    launcher cannot tell (it has no ``ended``, or asking failed)."""
    ended = getattr(launcher, "ended", None)
    if not callable(ended):
        return None
    try:
        answer = ended(ref)
    except Exception as exc:  # an unreachable orchestrator: unknown, never "ended"
        log.warning("could not tell whether run %s has ended: %s", ref, exc)
        return None
    return answer if isinstance(answer, bool) else None


def event_key(params: dict[str, Any]) -> str | None:
    """The idempotency key of a run started for an inbound event, or None.

    A system requester carries the event (``hr-system:<event_id>``; a Jira ticket's run
    ``jira:<KEY>#<n>``, its n-th run: intake/keyed.py): the same event then maps to the same
    flow run however often it is launched (a retried delivery, a re-launch after a
    crash between "launched" and "remembered"). A person (an email, ``operator``) is not an
    event: two requests of theirs are two runs.
    """
    requester = str(params.get("requester") or "")
    system, sep, event_id = requester.partition(":")
    if sep and system and event_id and "@" not in requester:
        return requester
    return None


@dataclass
class DeploymentLauncher:
    """A ``Launcher`` that creates a flow run of a Prefect deployment and returns its id.

    ``run_deployment(name, parameters=…, timeout=0, idempotency_key=…)``: the run is created
    (Scheduled) and a worker of the deployment's pool starts it; we do not wait. The key is
    ``<deployment>|<key_fn(params)>`` (by default the event carried by the requester,
    ``event_key``): the server answers the same flow run for the same key.
    """

    deployment_name: str
    key_fn: Callable[[dict[str, Any]], str | None] = event_key

    def __call__(self, params: dict[str, Any]) -> str:
        from prefect.deployments import run_deployment  # only prefect: never the flows

        key = self.key_fn(params)
        flow_run = run_deployment(
            self.deployment_name,
            parameters=params,
            timeout=0,
            idempotency_key=f"{self.deployment_name}|{key}" if key else None,
            as_subflow=False,
        )
        # run_deployment is sync-compatible: called from sync code, it returns the FlowRun.
        assert not isinstance(flow_run, Coroutine)
        return str(flow_run.id)

    def ended(self, ref: str) -> bool | None:
        """True when flow run ``ref`` is in a final state (completed, failed, crashed,
        cancelled); False while it is scheduled, running or paused; None when Prefect cannot
        be asked or does not know the run."""
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(uuid.UUID(ref)).state
        except Exception as exc:  # unknown is answered as unknown: the caller starts nothing
            log.warning("could not read the state of flow run %s: %s", ref, exc)
            return None
        return state is not None and state.is_final()


def deployment_launcher(
    deployment_name: str, key_fn: Callable[[dict[str, Any]], str | None] = event_key
) -> DeploymentLauncher:
    """A launcher that starts runs of the deployment ``flow-name/deployment-name`` (e.g.
    ``offboard/offboard``, ``onboard/onboard``: prefect.yaml) on the server at
    ``PREFECT_API_URL``; the reference is the Prefect flow-run id."""
    return DeploymentLauncher(deployment_name, key_fn)


WARM = "warm:"  # a WarmLauncher's reference: WARM + the background task run's id


@dataclass
class WarmLauncher:
    """A ``Launcher`` sending emergencies to a warm worker, the rest to ``fallback``.

    ``task`` is the background task a warm worker serves (``flows.warm.offboard_warm``: it has
    ``delay``), ``serving()`` says whether one serves it now (the server tracks their
    websockets); both are given by whoever builds the intake, which never imports the flows.
    No warm worker serving when asked (or an answer that cannot be had) means the cold path.
    ``taken(task_run_id)`` waits for a worker to take the task and withdraws it when none does
    in time (``flows.warm.taken_or_withdrawn``): a worker that died after the answer, or one
    busy with a batch, sends the emergency down the cold path too, late but not lost.
    """

    task: Any
    serving: Callable[[], bool]
    fallback: Launcher
    takes: Callable[[dict[str, Any]], bool] = field(
        default=lambda params: bool(params.get("emergency"))
    )
    taken: Callable[[Any], bool] = field(default=lambda _task_run_id: True)

    def __call__(self, params: dict[str, Any]) -> str:
        if self.takes(params) and self.serving():
            future = self.task.delay(params)
            if self.taken(future.task_run_id):
                return f"{WARM}{future.task_run_id}"
            log.warning(
                "no warm worker took task run %s in time: withdrawn, sent to the deployment",
                future.task_run_id,
            )
        return self.fallback(params)

    def ended(self, ref: str) -> bool | None:
        """For a warm run: True when its background task is in a final state, None when
        Prefect cannot be asked; any other reference is the fallback's."""
        if not ref.startswith(WARM):
            return run_ended(self.fallback, ref)
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                state = client.read_task_run(uuid.UUID(ref.removeprefix(WARM))).state
        except Exception as exc:
            log.warning("could not read the state of task run %s: %s", ref, exc)
            return None
        return state is not None and state.is_final()
