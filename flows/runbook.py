"""The machinery every runbook hands its plan to: approve → apply → verify → record.

A runbook flow resolves its request, takes the inventory, makes the plan (pure) and opens its
case; :func:`run_plan` does the rest the same way for all of them:

- **approve**: a resumed case whose approved plan covers what is left goes on without asking
  again; a standing approval (an access review's) stands for the gate when it covers the
  person; otherwise the gate (``approvals.gate``) asks the policy's approvers for this plan's
  hash. A refusal is recorded, the case closed, and the run ends *Denied*.
- **apply**: each step once per case through the one step runner (``tasks.steps``), with
  progress; a step that keeps failing stops the run at that safe point (a re-run continues).
- **verify** (the runbook's own checks), **record** (ticket, Slack, audit), **publish** (table
  and summary artifacts), close the case when done.

The runbook flow takes its runtime once (``rt = begin()``, at its top, once its parameters
are valid: while the org rejects Handover's key, new runs wait there — ``approvals.holds``) and
passes it here; every function of this module that reads or writes hands the same
``rt`` on to its tasks and to the gate (a Runtime is the gate's Services).

:func:`finish` ends the flow run in the Prefect state of its outcome: failed or blocked runs
are *Failed* (named ``Blocked`` when a person must act), denied ones *Completed* named
``Denied``; Prefect's automations and notifications act on those. Whoever starts a runbook
and needs its outcome (the CLI, the intake, a batch or a review running one per person) calls
it through ``domain.runbook.call_runbook``, which hands the outcome over in-process, whatever
the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.flows import Flow, FlowStateHook
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from approvals.gate import Ask, GateResult, PlanSummary, gate, gate_all
from approvals.holds import hold_on_rejection, wait_while_held
from domain.models import WriteResult
from domain.policy import ApprovalContext
from domain.records import ApprovalRequest
from domain.runbook import Case, PlanStep, RunbookFailed, RunbookPlan, hand_over
from domain.tasks import TaskRefused, is_ok
from tasks.cases import approve_case, audit_seq, close_case, record_outcome
from tasks.progress import report
from tasks.runtime import Runtime, this_runs_runtime
from tasks.steps import StepScope, apply_step

P = TypeVar("P", bound=RunbookPlan[Any])
Outcome = dict[str, Any]


@dataclass(frozen=True)
class Standing:
    """An approval given elsewhere that stands for the gate (an access review's): ``approvers``
    says who gave it for this case, or raises ``ValueError`` when it does not cover it."""

    approval_id: str
    approvers: Callable[[Case], list[str]]
    kind: Literal["review_approval", "batch_approval"] = "review_approval"


def run_id() -> str:
    return str(flow_run.id or "")


def begin() -> Runtime:
    """This run's runtime, once new runs are not held (``approvals.holds``: the org rejected
    Handover's key; the run pauses until a person has replaced it). A runbook flow's first
    call, after its parameters were validated."""
    rt = this_runs_runtime()
    wait_while_held(rt)
    return rt


def _hold_if_key_rejected(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A run that raised because the org rejected the key holds new runs (``on_failure``)."""
    try:
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, BaseException):
            hold_on_rejection(this_runs_runtime(), exc, flow_run_id=str(flow_run.id))
    except Exception as e:  # a hook must not hide the run's own failure
        get_run_logger().warning("could not check the failure for a rejected key: %s", e)


# Every runbook flow's on_failure hooks.
ON_FAILURE: list[FlowStateHook[..., Any]] = [_hold_if_key_rejected]


def outcome(
    rt: Runtime,
    plan: RunbookPlan[Any] | None,
    *,
    status: str,
    effects: Mapping[str, WriteResult] | None = None,
    verification: Mapping[str, str] | None = None,
    **extra: Any,
) -> Outcome:
    """The run's outcome as ``--json`` shows it: ``run_id``, ``status``, ``plan`` (hash,
    steps, blockers), ``effects``, ``verification``, ``warnings``, ``audit_seq``, and what the
    runbook adds."""
    return {
        "run_id": run_id(),
        "status": status,
        "plan": {
            "hash": plan.hash if plan else "",
            "steps": plan.outcome_steps() if plan else [],
            "blockers": plan.outcome_blockers() if plan else [],
        },
        "effects": {k: str(v) for k, v in (effects or {}).items()},
        "verification": dict(verification or {}),
        "warnings": list(plan.warnings) if plan else [],
        "audit_seq": audit_seq(rt),
        **(plan.outcome_facts() if plan else {}),
        **extra,
    }


def as_outcome(state: State[Any]) -> Outcome:
    """A state a flow returns, as its callers see it: Prefect makes it the run's final state
    and gives the caller its data (an Outcome), or raises its exception (RunbookFailed)."""
    return cast(Outcome, state)


def finish(out: Outcome, *, why: str = "") -> Outcome:
    """The flow's return value: the outcome, in the Prefect state that says what happened
    (``why`` replaces the reason in a failed or partial state's message); handed over to the
    ``domain.runbook.call_runbook`` that started the run, if any."""
    hand_over(out)
    status = out["status"]
    if status == "failed":
        why = why or out.get("failure") or "verification failed"
        return as_outcome(Failed(message=f"failed: {why}"[:500], data=RunbookFailed(out)))
    if status == "blocked":
        why = "; ".join(out["plan"]["blockers"]) or out.get("failure") or "a person must act first"
        failed: State[Any] = Failed(
            name="Blocked", message=f"blocked: {why}"[:500], data=RunbookFailed(out)
        )
        return as_outcome(failed)
    if status == "partial":
        return as_outcome(Completed(name="Partial", message=f"partial: {why}"[:500], data=out))
    if status == "denied":
        return as_outcome(Completed(name="Denied", message=out.get("reason") or "denied", data=out))
    return out


def block(rt: Runtime, plan: P, case: Case, *, requester: str) -> Outcome:
    """A plan a person must complete first (e.g. choose a receiver): recorded, case kept."""
    record_outcome(
        rt,
        plan,
        case=case,
        requester=requester,
        status="blocked",
        effects={},
        verification={},
        flow_run_id=run_id(),
    )
    return finish(outcome(rt, plan, status="blocked", ticket=case.ticket))


def _approve(
    rt: Runtime,
    plan: P,
    case: Case,
    approval: ApprovalContext | None,
    standing: Standing | None,
) -> tuple[P, list[str], Callable[[], None]] | Outcome:
    """Who approved this plan (and the post-hoc notice an emergency sends after its urgent
    steps), or the finished Denied state."""
    log = get_run_logger()
    approved = case.approved_plan
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    if case.resumed and approved is not None and approved.covers(plan):
        log.info("continuing the approved plan %s", approved.hash[:12])
        plan = plan.resumed_from(approved)
        notice = nothing
        if approval is not None and approval.emergency:  # died before telling security?
            notice = _gate(rt, plan, case, approval).send_notice
        return plan, approved.approvers, notice
    if not plan.steps:
        return plan, [], nothing
    if standing is not None:
        approvers = standing.approvers(case)
        approve_case(rt, case, plan.approved(approvers, **{standing.kind: standing.approval_id}))
        return plan, approvers, nothing
    if approval is None:
        return plan, [], nothing
    res = _gate(rt, plan, case, approval)
    if not res.approved:
        _end(rt, plan, case, requester=approval.requester, status=res.state.value)
        close_case(rt, case, res.state.value)
        out = outcome(
            rt,
            plan,
            status="denied",
            ticket=case.ticket,
            approval=res.approval.id,
            reason=res.reason,
        )
        return finish(out)
    approve_case(rt, case, plan.approved(res.approved_by))
    return plan, res.approved_by, res.send_notice


def ask(
    rt: Runtime,
    ctx: ApprovalContext,
    *,
    plan_hash: str,
    summary: PlanSummary,
    ticket: str = "",
    run_key: str | None = None,
    defer_notice: bool = False,
) -> GateResult:
    """The approval gate (``approvals.gate``) over this run's runtime (a Runtime *is* the
    gate's Services: the same ledger, policy, Slack, Jira and clock), for ``plan_hash``."""
    return gate(
        rt,
        ctx,
        plan_hash=plan_hash,
        summary=summary,
        flow_run_id=run_id(),
        ticket=ticket,
        run_key=run_key,
        defer_notice=defer_notice,
    )


def ask_all(
    rt: Runtime,
    asks: list[Ask],
    *,
    opened: Callable[[list[ApprovalRequest]], None] | None = None,
) -> list[GateResult]:
    """Several approvals over this run's runtime, all asked before any is awaited
    (``approvals.gate.gate_all``); ``opened`` is called with them before the first wait."""
    return gate_all(rt, asks, flow_run_id=run_id(), opened=opened)


def _gate(rt: Runtime, plan: RunbookPlan[Any], case: Case, approval: ApprovalContext) -> GateResult:
    return ask(
        rt,
        approval,
        plan_hash=plan.hash,
        summary=PlanSummary(
            plan.counts_by_kind(), plan.warnings, plan.in_words(), org=rt.settings.org_name
        ),
        ticket=case.ticket,
        run_key=case.key,
        # An emergency tells security after the lockout, never before it.
        defer_notice=True,
    )


def _end(
    rt: Runtime,
    plan: RunbookPlan[Any],
    case: Case,
    *,
    requester: str,
    status: str,
    effects: dict[str, WriteResult] | None = None,
    verification: dict[str, str] | None = None,
) -> None:
    record_outcome(
        rt,
        plan,
        case=case,
        requester=requester,
        status=status,
        effects=effects or {},
        verification=verification or {},
        flow_run_id=run_id(),
    )


def apply_steps(
    rt: Runtime,
    plan: RunbookPlan[Any],
    case: Case,
    *,
    approvers: list[str],
    todo: list[PlanStep],
) -> tuple[dict[str, WriteResult], str, bool]:
    """Each step once per case, in order, with progress; stops at the first that keeps
    failing, or at a human task a person answered Can't do. Returns the effects by step id,
    the failure (empty when none) and whether it is a person's refusal (the run is blocked)."""
    log = get_run_logger()
    scope = StepScope(plan.runbook, plan.subject, case.id, case.ticket)
    effects: dict[str, WriteResult] = {}
    progress = create_progress_artifact(
        0.0,
        key=f"{plan.runbook.replace('_', '-')}-progress",
        description=f"{plan.runbook} {plan.subject}",
    )
    for i, step in enumerate(todo):
        report(i, len(todo), step.label)
        try:
            effects[step.id] = apply_step(
                rt,
                step,
                scope=scope,
                plan_hash=plan.hash,
                flow_run_id=run_id(),
                approvers=approvers,
            )
        except TaskRefused as exc:  # a person can't do it: blocked on their reason
            log.warning("blocked at step %d/%d: %s", i + 1, len(todo), exc)
            return effects, f"{step.label}: {exc}", True
        except Exception as exc:  # stop at this safe point; a re-run continues from here
            hold_on_rejection(rt, exc, flow_run_id=run_id())  # the org's key: hold new runs
            failure = f"{step.label}: {exc}"
            log.error("stopped at step %d/%d: %s", i + 1, len(todo), failure)
            return effects, failure, False
        # Prefect's artifact functions are sync-compatible: called from sync code, a UUID.
        update_progress_artifact(cast(UUID, progress), 100.0 * (i + 1) / len(todo))
    report(len(todo), len(todo), "done")
    return effects, "", False


def run_plan(
    rt: Runtime,
    plan: P,
    *,
    case: Case,
    requester: str,
    approval: ApprovalContext | None,
    verify: Callable[[P], dict[str, str]],
    standing: Standing | None = None,
    now: Callable[[Any], bool] | None = None,
    close: bool = True,
) -> Outcome:
    """Approve, apply, verify and record ``plan`` on its ``case`` (see the module docstring).

    ``approval``: the gate's context (``None``: the plan needs no approval). ``now``: which
    steps to apply in this run (default all; the rest waits for a later run). ``close``: the
    case ends here (an email change waiting for the new address to join stays open).
    """
    got = _approve(rt, plan, case, approval, standing)
    if not isinstance(got, tuple):  # denied
        return got
    plan, approvers, notice = got
    todo = [s for s in plan.steps if now is None or now(s)]
    effects, failure, refused = apply_steps(rt, plan, case, approvers=approvers, todo=todo)
    notice()  # an emergency's post-hoc review notice, now that the lockout is done (or stopped)
    verification = verify(plan) if not failure and close else {}
    if refused:
        status = "blocked"
    elif failure or not all(is_ok(v) for v in verification.values()):
        status = "failed"
    elif not close:
        status = "waiting_for_acceptance"
    else:
        status = "done" if plan.steps or case.resumed else "nothing_to_do"
    _end(
        rt,
        plan,
        case,
        requester=requester,
        status=status,
        effects=effects,
        verification=verification,
    )
    publish(plan, status, effects, verification)
    if status in ("done", "nothing_to_do"):
        close_case(rt, case, status)
    not_done = [s.label for s in plan.steps if s.id not in effects]
    out = outcome(
        rt,
        plan,
        status=status,
        effects=effects,
        verification=verification,
        ticket=case.ticket,
        failure=failure,
        not_done=not_done,
    )
    return finish(out)


def publish(
    plan: RunbookPlan[Any],
    status: str,
    effects: Mapping[str, WriteResult],
    verification: Mapping[str, str],
) -> None:
    """A table artifact of the steps (``<runbook>-steps``) and a markdown summary
    (``<runbook>-summary``) with the verification and the warnings."""
    slug, title = plan.runbook.replace("_", "-"), plan.title()
    rows = [
        {
            "#": i + 1,
            "step": s.kind.value,
            "target": s.target,
            "effect": str(effects[s.id]) if s.id in effects else "not done",
            "reason": s.reason,
        }
        for i, s in enumerate(plan.steps)
    ]
    create_table_artifact(rows, key=f"{slug}-steps", description=f"{title}: steps")
    checks = "\n".join(f"| {k} | {v} |" for k, v in verification.items())
    warn = "\n".join(f"- {w}" for w in plan.warnings) or "- none"
    create_markdown_artifact(
        f"# {title}: {status}\n\n{plan.headline()} · plan `{plan.hash[:12]}`\n\n"
        f"## Verification\n\n| check | result |\n|---|---|\n{checks}\n\n## Warnings\n\n{warn}\n",
        key=f"{slug}-summary",
        description=title,
    )
