"""Bulk onboarding (issue 6, ``handover onboard --csv FILE``) as a Prefect flow:
parse → one inventory → plan every row → ONE approval for the batch → apply the rows
concurrently → verify and record each row.

The rules are the single-person runbook's (:func:`domain.onboard.make_onboarding_plan`, the
tasks of :mod:`tasks.onboard`); what is bulk is here and in :mod:`domain.bulk`:

- a bad row (the CSV: bad email, unknown role, duplicate…; the org: unknown project, an expired
  invitation, an existing member) is reported with its line and does not stop the good rows;
- the org is read once for the batch (:func:`tasks.onboard_bulk.take_bulk_inventory`);
- one approval through :func:`approvals.gate.gate` for the whole batch: the policy sees the union
  of what the rows ask (production roles, the highest org role, modules; the admins of the
  production projects asked for), approvers see the step counts and every bad row, and approve
  the batch hash (the rows' plan hashes and errors);
- rows are applied by a bounded :class:`~concurrent.futures.ThreadPoolExecutor` (each row that
  waits on nobody on a warm worker when one serves: :func:`onboard_row_warm`); every thread
  goes through the connectors' token buckets (:mod:`connectors.rate`), so the
  batch stays under the backend's rate limit whatever ``max_workers`` is;
- each row is its own ledger case (a re-run skips what it did); no ticket: the result lists the
  rows, and a requester with an email gets one DM for the batch (not one per row);
- a re-run of the same file: a pending invitation that grants exactly the row, sent less than
  48 h ago, is ``nothing_to_do`` (:func:`domain.bulk.settle_pending`), never a second invite.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from approvals.gate import PlanSummary
from domain.bulk import BatchPlan, BatchRow, parse_bulk_csv, settle_pending
from domain.onboard import OnboardPlan, OnboardState, approving_admins, make_onboarding_plan
from domain.policy import ApprovalContext
from domain.runbook import call_runbook
from domain.steps import HumanTask
from domain.tasks import is_ok
from flows.batch import (
    GOOD,
    batch_outcome,
    batch_status,
    finish_batch,
    run_all,
    tell_requester,
)
from flows.runbook import ON_FAILURE, Standing, ask, begin, run_plan
from flows.warm import WARM_TASK, run_maybe_warm, run_warm_flow, warm_workers
from tasks.cases import open_run_case
from tasks.onboard import RUNBOOK, idp_managed_default, today, verify_onboarding
from tasks.onboard_bulk import take_bulk_inventory
from tasks.runtime import Runtime


def _row_result(r: BatchRow, status: str = "", message: str = "", **kw: Any) -> dict[str, Any]:
    return {
        "row": r.line,
        "email": r.email,
        "status": status or r.status,
        "message": message or r.message,
        "effects": {},
        **kw,
    }


def _run_row(
    rt: Runtime, plan: OnboardPlan, *, standing: Standing, requester: str
) -> dict[str, Any]:
    """Apply, verify and record one row's plan on its own case (the batch's approval
    standing for the row's); its outcome."""
    case = open_run_case(
        rt, runbook=RUNBOOK, subject=plan.subject, reason="bulk", requester=requester
    )
    return run_plan(
        rt,
        plan,
        case=case,
        requester="",  # one DM for the batch, not one per row
        approval=None,
        standing=standing,
        verify=lambda p: verify_onboarding(rt, p, case_id=case.id),
    )


@flow(name="onboard-row", log_prints=False, on_failure=ON_FAILURE)
def onboard_row(
    plan: dict[str, Any], approval: str, approvers: list[str], requester: str
) -> dict[str, Any]:
    """One row of a bulk onboarding as a flow run of its own, for a row that waits on a
    person (a SCIM-only org's set_access task): its pause is its own, so the other rows go on
    and nobody waits in line. The plan was approved with the batch (``approval``)."""
    rt = begin()
    row = OnboardPlan.model_validate(plan)
    standing = Standing(approval, lambda _case: approvers, kind="batch_approval")
    return _run_row(rt, row, standing=standing, requester=requester)


@task(name="onboard-row-warm", **WARM_TASK)
def onboard_row_warm(params: dict[str, Any]) -> dict[str, Any]:
    """One row of a bulk onboarding (``params``: :func:`onboard_row`'s) on a warm worker
    (``flows.warm``), as a flow run of its own; its outcome."""
    get_run_logger().info("onboarding %s", params.get("plan", {}).get("subject"))
    return run_warm_flow(onboard_row, params)


def _apply_row(
    rt: Runtime,
    r: BatchRow,
    *,
    batch_hash: str,
    approval: str,
    approvers: list[str],
    requester: str,
    warm: bool = False,
) -> dict[str, Any]:
    """Apply, verify and record one row (in a worker thread) on its own case, the batch's
    approval standing for the row's; never raises. A row with a human task runs as its own
    flow run (:func:`onboard_row`), since a flow run pauses as a whole: each row waits on its
    own task, every row's task open at once. With ``warm``, a row without one runs on a warm
    worker (:func:`onboard_row_warm`), as a flow run of its own there."""
    plan = r.plan
    assert plan is not None
    effects: dict[str, str] = {}
    approval = approval or f"batch-{batch_hash[:12]}"
    params = {
        "plan": plan.model_dump(mode="json"),
        "approval": approval,
        "approvers": approvers,
        "requester": requester,
    }
    try:
        if any(isinstance(s.params, HumanTask) for s in plan.steps):
            out = call_runbook(onboard_row, **params)
        elif warm:
            out = run_maybe_warm(onboard_row_warm, onboard_row, params, warm=True)
        else:
            standing = Standing(approval, lambda _case: approvers, kind="batch_approval")
            out = call_runbook(_run_row, rt, plan, standing=standing, requester=requester)
    except Exception as exc:  # the ledger or a read failed: this row only
        return _row_result(r, "failed", f"{type(exc).__name__}: {exc}", effects=effects)
    effects = out.get("effects", {})
    failed = [f"{k} {v}" for k, v in out.get("verification", {}).items() if not is_ok(v)]
    message = out.get("failure") or ("; ".join(failed) if failed else plan.granted_text())
    return _row_result(r, out.get("status", "failed"), message, effects=effects)


def _result(
    rt: Runtime, batch: BatchPlan, rows: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return batch_outcome(
        rt,
        entries=("rows", rows),
        order="row",
        plan_hash=batch.hash,
        ready=[({"row": r.line, "email": r.email}, r.plan) for r in batch.ready],
        warnings=batch.warnings(),
        subject=f"onboard-batch-{batch.hash[:12]}",
        **extra,
    )


def _plan_all(
    rt: Runtime, csv_text: str, *, requester: str
) -> tuple[BatchPlan, dict[str, OnboardState]]:
    """Every row parsed and planned with the single onboarding's planner, from one read of
    the org (a bad row is kept with its line and why)."""
    use_idp = idp_managed_default(rt)
    parsed = parse_bulk_csv(csv_text, today=today(rt), requester=requester)
    good = [p.email for p in parsed if p.ok]
    states = take_bulk_inventory(rt, good, idp_managed=use_idp) if good else {}
    batch = BatchPlan()
    for p in parsed:
        if not p.ok or p.request is None:
            batch.rows.append(BatchRow(p.line, p.email, error=p.message))
            continue
        state = states[p.email]
        now = state.taken_at
        plan = make_onboarding_plan(p.request, state, idp_managed=use_idp, now=now)
        batch.rows.append(BatchRow(p.line, p.email, plan=settle_pending(plan, state, now=now)))
    return batch, states


def _approval(batch: BatchPlan, states: dict[str, OnboardState], requester: str) -> ApprovalContext:
    """What the policy decides the batch on: the union of what the rows ask (production roles,
    the highest org role, modules; the admins of the production projects asked for)."""
    first = next(iter(states.values()))
    admins = approving_admins(
        first.projects,
        batch.project_names(production=True),
        batch.project_names(production=False),
    )
    return ApprovalContext(
        runbook=RUNBOOK,
        subject=f"onboard-batch-{batch.hash[:12]}",
        requester=requester,
        reason="access_request",
        production_roles=batch.production_roles(),
        org_role=batch.org_role(),
        modules=batch.modules(),
        project_admins=admins,
        project_admins_unknown=not first.roles_by_api,
    )


def _report(
    rt: Runtime,
    batch: BatchPlan,
    rows: list[dict[str, Any]],
    *,
    requester: str,
    approval: str,
    t0: float,
) -> dict[str, Any]:
    """The table of rows, one DM to the requester, and the batch's outcome."""
    status = batch_status(rows)
    create_table_artifact(
        [
            {k: r[k] for k in ("row", "email", "status", "message")}
            | {"effects": ", ".join(r["effects"].values())}
            for r in sorted(rows, key=lambda x: x["row"])
        ],
        key="onboard-bulk-rows",
        description=f"Bulk onboarding {batch.hash[:12]}: {status}",
    )
    done = sum(r["status"] == "done" for r in rows)
    bad = [f"line {r['row']} {r['email']}: {r['status']}" for r in rows if r["status"] not in GOOD]
    tell_requester(
        rt,
        requester,
        f"Bulk onboarding {batch.hash[:12]}: {status} ({done} onboarded, {len(bad)} not)",
        bad,
    )
    elapsed = round(time.monotonic() - t0, 1)
    get_run_logger().info("batch %s: %s in %.1fs", batch.hash[:12], status, elapsed)
    return _result(rt, batch, rows, status=status, approval=approval, elapsed_s=elapsed)


@flow(name="onboard-bulk", log_prints=False, on_failure=ON_FAILURE)
def onboard_bulk(
    csv_text: str, requester: str = "operator", dry_run: bool = False, max_workers: int = 4
) -> dict[str, Any]:
    """Onboard every row of a CSV (see the module docstring and :mod:`domain.bulk`).

    Args:
        csv_text: the file's text (header ``email,projects,org_role,modules,until,…``).
        requester: who asks; never an approver of the batch.
        dry_run: plan only; nothing is written anywhere.
        max_workers: rows applied at once (1 to 32); the rate limit holds whatever it is.

    Returns:
        status (done | partial | planned | denied | failed), rows ``[{row, email, status,
        message, effects}]`` (``row`` is the line in the file; a row's status is done |
        nothing_to_do | invalid | change_needed | blocked | failed, or ready when planned),
        plan ``{hash, steps}`` (flattened over the rows), warnings, counts, audit_seq,
        elapsed_s.

    Raises:
        domain.bulk.BulkFileError: the file is empty or its header is wrong (nothing was read).
    """
    t0 = time.monotonic()
    rt = begin()
    batch, states = _plan_all(rt, csv_text, requester=requester)
    planned = [_row_result(r) for r in batch.rows]
    get_run_logger().info("batch %s: %s", batch.hash[:12], batch.summary())
    if dry_run or not batch.ready:
        return finish_batch(
            _result(rt, batch, planned, status="planned" if dry_run else batch_status(planned))
        )
    approvers: list[str] = []
    approval = ""
    if batch.needs_approval():  # anything beyond resends, which grant nothing new
        res = ask(
            rt,
            _approval(batch, states, requester),
            plan_hash=batch.hash,
            summary=PlanSummary(
                batch.counts_by_kind(),
                batch.warnings(),
                [line for r in batch.ready if r.plan for line in r.plan.in_words()],
                org=rt.settings.org_name,
            ),
        )
        approval, approvers = res.approval.id, res.approved_by
        if not res.approved:
            return finish_batch(_result(rt, batch, planned, status="denied", approval=approval))
    rows = [_row_result(r) for r in batch.rows if r.status != "ready"]
    warm = warm_workers(onboard_row_warm)
    get_run_logger().info(
        "batch %s: %d rows on %s",
        batch.hash[:12],
        len(batch.ready),
        f"{warm} warm worker(s)" if warm else "this run's process",
    )
    rows += run_all(
        batch.ready,
        lambda r: _apply_row(
            rt,
            r,
            batch_hash=batch.hash,
            approval=approval,
            approvers=approvers,
            requester=requester,
            warm=warm > 0,
        ),
        workers=max(1, min(int(max_workers), 32)),
        name="onboard-row",
        said=lambda row: f"onboarded {row['email']}",
    )
    return finish_batch(_report(rt, batch, rows, requester=requester, approval=approval, t0=t0))
