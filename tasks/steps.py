"""The one step runner: apply a planned step once per case, through the executor of its kind,
and leave an audit event whatever happens.

Every runbook's step type registers its executor here (``tasks.offboard``, ``tasks.onboard``,
``tasks.change``): ``(rt, step, scope)``, given the run's runtime by :func:`apply_step`, which
the runbook machinery (``flows.runbook``) calls with it. A new step kind is a model in
``domain/``, a branch of its runbook's executor and, where it can be re-read, a check in that
runbook's verification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import task

from connectors.errors import ConnectorError
from domain.models import WriteResult
from domain.records import AuditEvent
from domain.runbook import PlanStep, done_earlier
from ledger.audit import append
from ledger.cases import done_steps, mark_done
from tasks.runtime import UNCACHED, Runtime


@dataclass(frozen=True)
class StepScope:
    """What a step is applied within: the runbook, its subject, the case and its ticket."""

    runbook: str
    subject: str
    case_id: int
    ticket: str = ""


S = TypeVar("S", bound=PlanStep)
Executor = Callable[[Runtime, Any, StepScope], tuple[WriteResult, dict[str, Any]]]
# Filled once, at import, by the ``@executor`` decorators of the runbooks' task modules: a
# registry of code, never swapped (a test calls an executor directly, with a fake runtime).
_executors: dict[type[PlanStep], Executor] = {}


def executor(
    step_type: type[S],
) -> Callable[[Callable[[Runtime, S, StepScope], Any]], Executor]:
    """Register the function that does ``step_type``'s steps: ``(rt, step, scope) → (result,
    detail)``; the detail is audited and kept with the case, so it never holds a secret."""

    def register(
        fn: Callable[[Runtime, S, StepScope], tuple[WriteResult, dict[str, Any]]],
    ) -> Executor:
        _executors[step_type] = fn
        return fn

    return register


def _audit_view(step: PlanStep) -> dict[str, Any]:
    """The step as the audit log keeps it: its reason and parameters (a transfer's asset ids
    are counted, not listed)."""
    return {"reason": step.reason, **{k: v for k, v in step.params.items() if k != "asset_ids"}}


@task(name="apply_step", cache_policy=UNCACHED)
def apply_step(
    rt: Runtime,
    step: PlanStep,
    *,
    scope: StepScope,
    plan_hash: str,
    flow_run_id: str,
    approvers: Sequence[str],
) -> WriteResult:
    """Apply one step once per case; its effect, with the executor's detail.

    Raises:
        ConnectorError: the step failed after the connector's retries (the run stops here).
    """
    done = done_steps(rt.ledger, scope.case_id)
    if step.id in done:
        return done_earlier(done[step.id]["detail"])
    do = _executors.get(type(step))
    if do is None:
        raise TypeError(f"no executor for {type(step).__name__} steps")

    def audit(effect: str, after: dict[str, Any] | None) -> None:
        append(
            rt.ledger,
            AuditEvent(
                action=f"{scope.runbook}.{step.kind.value}",
                subject=scope.subject,
                target=step.target,
                on_behalf_of=",".join(approvers),
                effect=effect[:300],
                before=_audit_view(step),
                after=after,
                flow_run_id=flow_run_id,
                ticket=scope.ticket,
                plan_hash=plan_hash,
            ),
            now=rt.clock(),
        )

    try:
        result, detail = do(rt, step, scope)
    except ConnectorError as exc:
        audit(f"failed({exc})", None)
        raise
    mark_done(rt.ledger, scope.case_id, step.id, str(result), detail, rt.clock())
    audit(str(result), detail)
    return result.model_copy(update={"detail": detail})
