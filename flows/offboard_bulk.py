"""Bulk offboarding (issue 8, ``handover offboard --csv FILE``) as a Prefect flow:
validate → plan every leaver → ONE approval for the batch → each leaver an ``offboard`` subflow,
concurrently under the rate limit → a table of outcomes.

The rules are the single-person runbook's: this flow plans each leaver with the same inventory
and planner, and each removal *is* :func:`flows.offboard.offboard`, run as a subflow (its own
case, ticket, transfers before removal, verification and audit trail; a killed run resumes it).
What is bulk is here, in :mod:`domain.offboard_bulk` and in :mod:`tasks.offboard_bulk`:

- a bad entry (not an email, a duplicate), an address with nothing to remove, or a plan that
  needs a choice (the sole admin of a project, nobody to receive the content, a receiver who
  leaves in the same batch) is reported on its entry and does not stop the others; only the
  *ready* leavers are approved and applied;
- one approval through :func:`approvals.gate.gate` (runbook ``offboard``, the batch as subject,
  so the policy's rule for the reason applies: HR for a termination): approvers see the step
  counts, who leaves, every entry left out and the plans' warnings, and approve the batch hash
  (each leaver's plan hash). A person in the batch who approved it is not offboarded by it;
- the leavers are planned from one read of what they share (:mod:`tasks.offboard_bulk`: the
  member list, projects, keys and receivers once, then each leaver's own reads);
- the approval reaches each subflow through the leaver's ledger case: before a subflow starts,
  its case records the approved plan (hash, steps, approvers, receivers, the batch approval)
  and the inventory it was made of. A subflow started within ``flows.offboard.FRESH_READ`` of
  that inventory applies the plan from it (a leaver's systems are read once per batch, not
  twice); later, it re-reads the systems and continues only if its steps are still among the
  approved ones; if the world changed in between, it asks for its own approval, as a single
  offboarding would. Either way its verification re-reads what the plan touched;
- the leavers' offboardings run ``max_workers`` at once: each on a warm worker when any serves
  (:mod:`flows.warm`: a background task per leaver, so several worker processes, on one machine
  or many, share the batch and the bulk run waits for each), else as a subflow in this run's
  own thread pool. Every process goes through the connectors' token buckets, shared by every
  process of the stack through the ledger (:mod:`connectors.rate`, ``HANDOVER_RATE_LIMITS``), so
  the batch stays under the backends' rate limits whatever ``max_workers`` and the number of
  workers are;
- each leaver gets a ticket of their own (from their subflow); the requester gets one Slack DM
  for the batch, not one per leaver (the subflows run with the batch as requester);
- run again, the same list does nothing twice: a leaver already offboarded plans nothing
  (``nothing_to_do``), and one whose subflow was interrupted continues its case.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from approvals.gate import GateResult, PlanSummary
from domain.models import Email
from domain.offboard_bulk import MAX_LEAVERS, BatchMember, OffboardBatch
from domain.plan import Options, Reason, make_offboarding_plan
from domain.policy import ApprovalContext
from domain.tasks import is_ok
from flows.batch import (
    GOOD,
    batch_outcome,
    batch_status,
    finish_batch,
    run_all,
    tell_requester,
)
from flows.offboard import OffboardRequest, preapprove
from flows.runbook import ON_FAILURE, ask, begin
from flows.warm import run_offboard, warm_workers
from tasks.offboard_bulk import BatchReader, take_batch_inventory
from tasks.runtime import Runtime

RUNBOOK = "offboard"


class BulkOffboardRequest(BaseModel):
    """What starting a bulk offboarding takes (the entries are checked one by one later)."""

    model_config = ConfigDict(extra="forbid")

    emails: list[str] = Field(min_length=1, max_length=MAX_LEAVERS)
    reason: Reason = Reason.TERMINATION
    receiver: Email | None = None
    requester: str = Field("operator", max_length=320)
    dry_run: bool = False
    max_workers: int = Field(8, ge=1, le=32)

    @field_validator("reason")
    @classmethod
    def _not_emergency(cls, v: Reason) -> Reason:
        # An emergency locks one person out before anything else and skips the approval:
        # never a batch.
        if v is Reason.SECURITY_INCIDENT:
            raise ValueError("security_incident is one person at a time (handover offboard)")
        return v


def _validate(req: BulkOffboardRequest) -> list[BatchMember]:
    """One member per entry; an invalid or repeated address is an ``invalid`` member."""
    out: list[BatchMember] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(req.emails, 1):
        try:
            one = OffboardRequest(
                email=raw, reason=req.reason, receiver=req.receiver, requester=req.requester
            )
        except ValidationError as e:
            why = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
            out.append(BatchMember(i, str(raw)[:320], error=why, invalid=True))
            continue
        if one.email in seen:
            out.append(BatchMember(i, one.email, error=f"already #{seen[one.email]}", invalid=True))
            continue
        seen[one.email] = i
        out.append(BatchMember(i, one.email))
    return out


def _plan_one(rt: Runtime, m: BatchMember, opts: Options, reader: BatchReader) -> BatchMember:
    """Inventory and plan one leaver (in a worker thread); never raises."""
    try:
        inv = take_batch_inventory(rt, m.email, reader=reader, receiver=opts.receiver)
    except Exception as exc:  # this leaver cannot be read now; the others go on
        m.error = f"inventory failed: {exc}"
        return m
    m.plan = make_offboarding_plan(inv, opts)
    m.inventory = inv
    m.manager = inv.roster.manager if inv.roster else None
    return m


def _member_row(m: BatchMember, **kw: Any) -> dict[str, Any]:
    return {
        "index": m.index,
        "email": m.email,
        "status": kw.pop("status", m.status),
        "message": kw.pop("message", m.message),
        "ticket": kw.pop("ticket", ""),
        "seconds": kw.pop("seconds", 0.0),
        **kw,
    }


def _offboard_one(
    rt: Runtime,
    m: BatchMember,
    *,
    opts: Options,
    batch: str,
    approval: str,
    approvers: list[str],
    warm: bool,
) -> dict[str, Any]:
    """Mark the leaver's plan approved, then run their offboarding (on a warm worker when
    ``warm``, else as a subflow here); never raises."""
    assert m.plan is not None
    t0 = time.monotonic()
    try:
        preapprove(
            rt,
            m.plan,
            reason=opts.reason.value,
            requester=opts.requester,
            approvers=approvers,
            inventory=m.inventory,
            batch_approval=approval,
        )
        # The batch is the subflow's requester: the person who asked hears once, for the batch.
        params = {
            "email": m.email,
            "reason": opts.reason.value,
            "receiver": opts.receiver,
            "requester": batch,
        }
        out = run_offboard(params, warm=warm)
    except Exception as exc:  # a subflow that raises is this leaver's failure only
        return _member_row(
            m, status="failed", message=f"{type(exc).__name__}: {exc}"[:500], seconds=0.0
        )
    failed = [f"{k}: {v}" for k, v in out.get("verification", {}).items() if not is_ok(v)]
    message = (
        out.get("failure")
        or "; ".join(out.get("plan", {}).get("blockers", []))
        or "; ".join(failed)
        or ", ".join(f"{k} {v}" for k, v in sorted(_effect_counts(out).items()))
    )
    status = out.get("status", "failed")
    if status == "done" and failed:
        status = "failed"
    return _member_row(
        m,
        status=status,
        message=message,
        ticket=out.get("ticket", ""),
        seconds=round(time.monotonic() - t0, 2),
        subflow_run=out.get("run_id", ""),
    )


def _effect_counts(out: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for effect in out.get("effects", {}).values():
        key = str(effect).split("(", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _table(rows: list[dict[str, Any]], *, key: str, description: str) -> None:
    create_table_artifact(
        [
            {k: r[k] for k in ("index", "email", "status", "message", "ticket", "seconds")}
            for r in sorted(rows, key=lambda x: x["index"])
        ],
        key=key,
        description=description,
    )


def _result(
    rt: Runtime, batch: OffboardBatch, rows: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return batch_outcome(
        rt,
        entries=("members", rows),
        order="index",
        plan_hash=batch.hash,
        ready=[({"index": m.index, "email": m.email}, m.plan) for m in batch.ready],
        warnings=batch.warnings(),
        **extra,
    )


def _plan_all(rt: Runtime, req: BulkOffboardRequest) -> tuple[OffboardBatch, Options]:
    """Every leaver planned with the same inventory and planner as one offboarding, from one
    read of what they share (the member list, projects, keys, receivers)."""
    members = _validate(req)
    opts = Options(reason=req.reason, receiver=req.receiver, requester=req.requester)
    reader = BatchReader(rt.org)
    todo = [m for m in members if not m.error]
    run_all(
        todo,
        lambda m: _plan_one(rt, m, opts, reader),
        workers=req.max_workers,
        name="offboard-bulk-plan",
        said=lambda _: "planning",
    )
    batch = OffboardBatch(req.reason.value, members)
    batch.hold_back_leaving_receivers()
    return batch, opts


def _denied(rt: Runtime, batch: OffboardBatch, subject: str, res: GateResult) -> dict[str, Any]:
    """The batch was not approved: every ready leaver is ``denied``, nothing was changed."""
    rows = [
        _member_row(m, status="denied", message=f"batch {res.state.value}")
        if m.status == "ready"
        else _member_row(m)
        for m in batch.members
    ]
    return _result(rt, batch, rows, status="denied", subject=subject, approval=res.approval.id)


def _report(
    rt: Runtime,
    batch: OffboardBatch,
    rows: list[dict[str, Any]],
    subject: str,
    approval: str,
    requester: str,
    t0: float,
) -> dict[str, Any]:
    """The table of outcomes, one DM to the requester, and the batch's outcome."""
    status = batch_status(rows, all_noop="nothing_to_do")
    _table(rows, key="offboard-bulk-members", description=f"Bulk offboarding {subject}: {status}")
    done = sum(r["status"] == "done" for r in rows)
    bad = [f"#{r['index']} {r['email']}: {r['status']}" for r in rows if r["status"] not in GOOD]
    tell_requester(
        rt,
        requester,
        f"Bulk offboarding {subject}: {status} ({done} offboarded, {len(bad)} not)",
        bad,
    )
    elapsed = round(time.monotonic() - t0, 1)
    get_run_logger().info("%s: %s in %.1fs", subject, status, elapsed)
    return _result(
        rt, batch, rows, status=status, subject=subject, approval=approval, elapsed_s=elapsed
    )


def _split_approvers(
    batch: OffboardBatch, approvers: list[str]
) -> tuple[list[BatchMember], list[dict[str, Any]]]:
    """The ready leavers to offboard, and the rows of those who approved their own removal
    (nobody approves their own removal)."""
    go = [m for m in batch.ready if m.email not in approvers]
    own = [
        _member_row(
            m,
            status="blocked",
            message="approved the batch that removes them: offboard them on their own",
        )
        for m in batch.ready
        if m.email in approvers
    ]
    return go, own


@flow(name="offboard-bulk", log_prints=False, on_failure=ON_FAILURE)
def offboard_bulk(
    emails: list[str],
    reason: str = "termination",
    receiver: str | None = None,
    requester: str = "operator",
    dry_run: bool = False,
    max_workers: int = 8,
) -> dict[str, Any]:
    """Offboard every leaver of a list (see the module docstring; the parameters are
    :class:`BulkOffboardRequest`'s: one reason for the batch, never security_incident; one
    ``receiver`` for everyone's content, else each leaver's default; ``max_workers`` leavers
    at once, the rate limits hold whatever it is).

    Returns:
        status (done | partial | failed | planned | denied | nothing_to_do), members
        ``[{index, email, status, message, ticket, seconds}]``, plan ``{hash, steps}``
        (flattened over the leavers), warnings, counts, approval, audit_seq, elapsed_s.

    Raises:
        pydantic.ValidationError: no entries, an unknown reason, security_incident, or a bad
            receiver (nothing was read).
    """
    req = BulkOffboardRequest.model_validate(locals())  # exactly the parameters above
    t0 = time.monotonic()
    rt = begin()
    batch, opts = _plan_all(rt, req)
    subject = f"offboard-batch-{batch.hash[:12]}"
    planned = [_member_row(m) for m in batch.members]
    _table(planned, key="offboard-bulk-plan", description=f"Bulk offboarding {subject}: plan")
    get_run_logger().info("%s: %s", subject, batch.summary())
    if req.dry_run or not batch.ready:
        status = "planned" if req.dry_run else batch_status(planned, all_noop="nothing_to_do")
        return finish_batch(_result(rt, batch, planned, status=status, subject=subject))
    res = ask(
        rt,
        ApprovalContext(
            runbook=RUNBOOK,
            subject=subject,
            requester=req.requester,
            reason=req.reason.value,
            subject_manager=batch.common_manager(),
        ),
        plan_hash=batch.hash,
        summary=PlanSummary(
            batch.counts_by_kind(),
            batch.summary_lines(),
            [line for m in batch.ready if m.plan for line in m.plan.in_words()],
            org=rt.settings.org_name,
        ),
    )
    if not res.approved:
        return finish_batch(_denied(rt, batch, subject, res))
    go, rows = _split_approvers(batch, res.approved_by)
    rows += [_member_row(m) for m in batch.members if m.status != "ready"]
    workers = warm_workers()
    get_run_logger().info(
        "%s: %d leavers on %s",
        subject,
        len(go),
        f"{workers} warm worker(s)" if workers else "this run's process",
    )
    rows += run_all(
        go,
        lambda m: _offboard_one(
            rt,
            m,
            opts=opts,
            batch=subject,
            approval=res.approval.id,
            approvers=res.approved_by,
            warm=workers > 0,
        ),
        workers=req.max_workers,
        name=f"Bulk offboarding {subject}",
        said=lambda row: f"offboarded {row['email']} ({row['status']})",
        progress="offboard-bulk-progress",
    )
    return finish_batch(_report(rt, batch, rows, subject, res.approval.id, req.requester, t0))
