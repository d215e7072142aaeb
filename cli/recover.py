"""Crash recovery for runs on workers: find the runs whose process died, and start them again.

A flow run whose process is SIGKILLed (a node lost, an OOM kill, a container evicted) stays
*Running* forever on a self-hosted Prefect server (PREFECT_NOTES.md). Two pieces fix that:

1. :func:`ensure_crash_detection` creates the server automation Prefect documents for "zombie"
   runs: a run that sent a heartbeat and then neither another heartbeat nor a final state within
   ``within`` seconds is set to **Crashed**. The worker's runs send heartbeats every
   ``HEARTBEAT_SECONDS`` (``start_worker`` sets ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``).
2. :func:`resume_crashed` starts every recently Crashed run of our deployments again — same
   deployment, same parameters; a run a warm worker ran (flows/warm.py) as a run of the
   deployment of its flow — with the idempotency key ``resume-<crashed run id>``, so two
   sweeps (or two supervisors) never start it twice. The runbooks make that safe: a re-run finds
   its case in the ledger, skips the steps already done, and finds its approval again.

``handover up`` runs both; ``handover recover`` runs the second once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("handover.recover")

AUTOMATION = "handover: crash runs that stopped sending heartbeats"
HEARTBEAT_SECONDS = 30  # Prefect's minimum for heartbeat events
CRASH_AFTER_SECONDS = 90  # three missed heartbeats
MAX_RESUMES = 3


def ensure_crash_detection(within: int = CRASH_AFTER_SECONDS) -> bool:
    """Create the zombie-run automation on the server at ``PREFECT_API_URL`` unless it exists;
    True when created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    automation = AutomationCore(
        name=AUTOMATION,
        description="A flow run that stopped sending heartbeats (its process died) is Crashed;"
        " handover's recovery sweep then starts it again.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
                # Not Paused: a run waiting at an approval gate keeps its process, which keeps
                # sending heartbeats; a paused run whose process died is crashed like any other,
                # and its re-run finds the same approval (the gate keys it by case).
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within} s: the run's process died",
            )
        ],
    )
    # The sync client, as resume_crashed uses: Automation.create() would hand back an
    # un-awaited coroutine (and create nothing) if this were ever called from async code.
    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(name=AUTOMATION):
            return False
        client.create_automation(automation=automation)
    return True


@dataclass(frozen=True)
class Resumed:
    crashed: str  # the crashed flow run's id
    deployment: str
    run: str  # the new flow run's id


def resume_crashed(*, since: timedelta = timedelta(hours=24)) -> list[Resumed]:
    """Start again each run of a deployment that Crashed within ``since`` (see the module
    docstring); what this sweep started (a run an earlier sweep started is not started twice)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    out: list[Resumed] = []
    with get_client(sync_client=True) as client:
        crashed = _crashed_runs(client, since, of_deployments=True)
        crashed += _crashed_warm_runs(client, since)
        for run in crashed:
            assert run.deployment_id is not None
            # A run that keeps crashing (it kills its own worker?) is not started forever.
            n = 1 + max(
                (int(t[7:]) for t in run.tags if t[7:].isdigit() and t[:7] == "resume-"), default=0
            )
            if n > MAX_RESUMES:
                log.error("run %s crashed %d times: not started again", run.id, n)
                continue
            key = f"resume-{run.id}"
            if client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])
                ),
                limit=1,
            ):
                continue  # started again by an earlier sweep
            kept = [t for t in run.tags if not t.startswith("resume-")]
            new = client.create_flow_run_from_deployment(
                run.deployment_id,
                parameters=run.parameters,
                # Should two sweeps race past the check above, the server still makes one run.
                idempotency_key=key,
                tags=[*kept, f"resume-{n}"],
            )
            out.append(Resumed(str(run.id), str(run.deployment_id), str(new.id)))
            log.info("crashed run %s started again as %s", run.id, new.id)
    return out


def _crashed_runs(client: Any, since: timedelta, *, of_deployments: bool) -> list[Any]:
    """The runs that Crashed within ``since``: of a deployment, or else those without one."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterName,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from flows.warm import RUN_PREFIX

    return client.read_flow_runs(  # type: ignore[no-any-return]
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
            deployment_id=FlowRunFilterDeploymentId(is_null_=not of_deployments),
            # like_ matches anywhere in the name: the caller checks the prefix.
            name=None if of_deployments else FlowRunFilterName(like_=RUN_PREFIX),
            start_time=FlowRunFilterStartTime(after_=datetime.now(UTC) - since),
        ),
        limit=200,
    )


def _crashed_warm_runs(client: Any, since: timedelta) -> list[Any]:
    """The Crashed runs a warm worker ran (flows/warm.py: no deployment, named
    ``handover-warm-<task run id>``), each given the deployment it is started again as (the
    cold path: a process worker's run)."""
    from flows.warm import COLD_DEPLOYMENTS, RUN_PREFIX

    deployments: dict[Any, Any] = {}  # by flow id: read once per sweep
    out = []
    for run in _crashed_runs(client, since, of_deployments=False):
        if not run.name.startswith(RUN_PREFIX):
            continue
        if run.flow_id not in deployments:
            name = COLD_DEPLOYMENTS.get(client.read_flow(run.flow_id).name)
            deployments[run.flow_id] = name and client.read_deployment_by_name(name).id
        if deployments[run.flow_id] is not None:
            out.append(run.model_copy(update={"deployment_id": deployments[run.flow_id]}))
    return out
