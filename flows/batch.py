"""What the bulk runbooks share (``flows.onboard_bulk``, ``flows.offboard_bulk``): entries
worked on concurrently in the flow run's context with progress, one approval for the batch,
one DM to the requester, and the batch's outcome in the Prefect state it deserves.

Each entry itself goes through the single-person machinery (``flows.runbook``); only the
fan-out, the one approval and the summary are bulk.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from domain.runbook import RunbookPlan
from flows.runbook import finish, run_id
from tasks.cases import audit_seq
from tasks.onboard_bulk import notify_requester
from tasks.progress import report
from tasks.runtime import Runtime

T = TypeVar("T")
R = TypeVar("R")
GOOD = ("done", "nothing_to_do")


def run_all(
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    workers: int,
    name: str,
    said: Callable[[R], str],
    progress: str = "",
) -> list[R]:
    """``fn`` over ``items`` in a bounded pool of threads, in this flow run's context (its
    Prefect run, and the runtime bound with ``tasks.runtime.use_runtime``; the connectors'
    token buckets keep every backend under its rate limit whatever ``workers`` is), in
    completion order, with the terminal's progress (``said`` names what was done)
    and, when ``progress`` names it, a Prefect progress artifact."""
    artifact = create_progress_artifact(0.0, key=progress, description=name) if progress else None
    out: list[R] = []
    with ThreadPoolExecutor(workers, thread_name_prefix=name.replace(" ", "-")) as pool:
        # Each in a copy of this flow run's context, taken here (a worker thread has none of
        # its own): a task or flow called there is linked to this run (a flow: a subflow).
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        for i, fut in enumerate(as_completed(futures), 1):
            out.append(fut.result())
            report(i, len(items), said(out[-1]))
            if artifact is not None:
                update_progress_artifact(cast(UUID, artifact), 100.0 * i / len(items))
    return out


def batch_status(rows: Iterable[dict[str, Any]], *, all_noop: str = "done") -> str:
    """done (``all_noop`` when nothing was needed anywhere), partial or failed."""
    statuses = [r["status"] for r in rows]
    good = sum(s in GOOD for s in statuses)
    if good == len(statuses):
        return all_noop if all(s == "nothing_to_do" for s in statuses) else "done"
    return "partial" if good else "failed"


def tell_requester(rt: Runtime, requester: str, headline: str, bad: list[str]) -> None:
    """One DM for the batch (never one per entry): the headline and what did not go well."""
    if "@" in requester:
        notify_requester(rt, requester, "\n".join([headline, *bad[:50]]))


def batch_outcome(
    rt: Runtime,
    *,
    status: str,
    subject: str,
    entries: tuple[str, list[dict[str, Any]]],
    order: str,
    plan_hash: str,
    ready: Iterable[tuple[dict[str, Any], RunbookPlan[Any] | None]],
    warnings: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """The batch's outcome: its status, the entries (``entries``: the key and the rows, sorted
    by ``order``) with their counts by status, the plan flattened over the ``ready`` entries
    (each step under the fields that name its entry), warnings and audit_seq."""
    key, rows = entries
    steps = [
        {**who, "kind": s.kind.value, "target": s.target, "reason": s.reason}
        for who, plan in ready
        for s in (plan.steps if plan else [])
    ]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "run_id": run_id(),
        "status": status,
        "subject": subject,
        key: sorted(rows, key=lambda x: x[order]),
        "counts": counts,
        "plan": {"hash": plan_hash, "steps": steps, "blockers": []},
        "warnings": warnings,
        "audit_seq": audit_seq(rt),
        **extra,
    }


def finish_batch(out: dict[str, Any]) -> dict[str, Any]:
    """A batch ends like a single run (failed: Failed, denied: Denied); one where some entries
    failed is a Completed run named ``Partial``; both messages give the counts."""
    return finish(out, why=str(out["counts"]))
