"""The chaos test's worker process (``python -m tests.flows.chaos_worker JOBS GENERATION``).

It stands for a Handover worker: it runs every job of ``JOBS`` (offboardings and ticket-driven
onboardings) as flow runs on the Prefect server of ``PREFECT_API_URL``, a few at a time, with the
connectors configured from ``HANDOVER_*``. The test kills it with SIGKILL at random points and
starts it again; each start

1. marks the flow runs a dead worker left behind (still Running, Paused or Pending, tagged
   ``chaos``) as **Crashed** — in production the heartbeat automation does this
   (PREFECT_NOTES.md: a SIGKILLed run otherwise stays Running forever);
2. **resumes** every job whose request has no outcome in the ledger yet (no closed case for its
   person and ticket): the runbooks find their open case and continue it, skipping what is done.

A job whose run ends ``failed`` (a step failed after the connector's retries) is run again a few
times, as an operator would.
"""

from __future__ import annotations

import functools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.runbook import call_runbook

if TYPE_CHECKING:
    from tasks.runtime import Runtime

TAG = "chaos"
FINAL = ("done", "denied", "expired", "rejected")


def reap() -> int:
    """Mark the runs of dead workers Crashed; how many."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    alive = [StateType.RUNNING, StateType.PAUSED, StateType.PENDING, StateType.SCHEDULED]
    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[TAG]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=alive)),
            ),
            limit=200,
        )
        for r in runs:
            c.set_flow_run_state(
                r.id,
                Crashed(message="worker killed (SIGKILL); the case resumes in a new run"),
                force=True,
            )
    return len(runs)


def finished(rt: Runtime, job: dict[str, Any]) -> bool:
    """The request has an outcome in the ledger (its case was closed)."""
    from ledger.cases import find_closed_case

    return (
        find_closed_case(
            rt.ledger,
            runbook=job["runbook"],
            subject=job["email"],
            ticket=job["ticket"],
            outcomes=FINAL,
        )
        is not None
    )


def run_job(rt: Runtime, job: dict[str, Any]) -> str:
    """Run one job to an outcome (retrying failed runs) on ``rt``; its last status."""
    from prefect import tags
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.offboard import offboard
    from flows.onboard import onboard
    from tasks.runtime import use_runtime

    status = "not run"
    for _attempt in range(6):
        try:
            # A sync flow joins its heartbeat thread at the end (~1 s each): off here.
            with (
                temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
                tags(TAG),
                use_runtime(rt),  # a pool thread: the binding is made in it
            ):
                if job["runbook"] == "offboard":
                    out = call_runbook(
                        offboard,
                        email=job["email"],
                        reason="termination",
                        ticket=job["ticket"],
                        requester="it.ops@acme.com",
                    )
                else:
                    out = call_runbook(onboard, ticket=job["ticket"])
            status = str(out["status"])
        except Exception as exc:  # the run failed: an operator would start it again
            status = f"error: {exc}"
        if status in FINAL or status == "nothing_to_do":
            break
    return status


def main() -> None:
    from connectors.settings import load_settings
    from tasks.runtime import Runtime

    jobs: list[dict[str, Any]] = json.loads(Path(sys.argv[1]).read_text())
    rt = Runtime.from_settings(load_settings())
    crashed = reap()
    todo = [j for j in jobs if not finished(rt, j)]
    print(f"worker {sys.argv[2]}: {crashed} crashed runs marked, {len(todo)} jobs to run")
    sys.stdout.flush()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="chaos-job") as pool:
        statuses = list(pool.map(functools.partial(run_job, rt), todo))
    print(json.dumps({"statuses": statuses}), flush=True)


if __name__ == "__main__":
    main()
