"""What every runbook shares: the gate's services built from its runtime, its outcome as one
dict (INTERFACES.md ``--json``) and the Prefect artifacts a person reads instead of logs (a table
of steps, a markdown summary)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from approvals.policy import load_policy
from approvals.services import Services
from ledger import LedgerDB
from ledger.audit import last_seq
from tasks.runtime import Runtime


def gate_services(rt: Runtime) -> Services:
    """What the approval gate needs, from the runbook's runtime (one ledger, one clock)."""
    return Services(
        settings=rt.settings,
        ledger=rt.ledger,
        policy=load_policy(rt.settings.policy),
        messenger=rt.messenger,
        tickets=rt.tickets,
        clock=rt.clock,
        ticket_base_url=rt.ticket_base_url,
    )


class StepLike(Protocol):
    """A planned step of any runbook (offboard, onboard, change …)."""

    id: str
    target: str
    reason: str

    @property
    def kind(self) -> Any: ...


def step_dicts(steps: Iterable[StepLike], *extra: str) -> list[dict[str, Any]]:
    """Steps as ``kind``/``target``/``reason`` (plus the ``extra`` attributes named)."""
    return [
        {
            "kind": s.kind.value,
            "target": s.target,
            "reason": s.reason,
            **{k: getattr(s, k) for k in extra},
        }
        for s in steps
    ]


def run_result(
    *,
    status: str,
    plan_hash: str,
    steps: list[dict[str, Any]],
    blockers: Sequence[str],
    effects: Mapping[str, str],
    verification: Mapping[str, str],
    warnings: Sequence[str],
    ledger: LedgerDB,
    **extra: Any,
) -> dict[str, Any]:
    """The run's outcome: ``run_id``, ``status``, ``plan``, ``effects``, ``verification``,
    ``warnings``, ``audit_seq`` (and whatever else the runbook adds)."""
    return {
        "run_id": str(flow_run.id or ""),
        "status": status,
        "plan": {"hash": plan_hash, "steps": steps, "blockers": list(blockers)},
        "effects": dict(effects),
        "verification": dict(verification),
        "warnings": list(warnings),
        "audit_seq": last_seq(ledger),
        **extra,
    }


def publish(
    *,
    slug: str,
    title: str,
    status: str,
    headline: str,
    steps: Iterable[StepLike],
    effects: Mapping[str, str],
    verification: Mapping[str, str],
    warnings: Sequence[str],
) -> None:
    """A table artifact of the steps (``<slug>-steps``) and a markdown summary
    (``<slug>-summary``) with the verification and the warnings."""
    rows = [
        {
            "#": i + 1,
            "step": s.kind.value,
            "target": s.target,
            "effect": effects.get(s.id, "not done"),
            "reason": s.reason,
        }
        for i, s in enumerate(steps)
    ]
    create_table_artifact(rows, key=f"{slug}-steps", description=f"{title}: steps")
    checks = "\n".join(f"| {k} | {v} |" for k, v in verification.items())
    warn = "\n".join(f"- {w}" for w in warnings) or "- none"
    create_markdown_artifact(
        f"# {title}: {status}\n\n{headline}\n\n## Verification\n\n| check | result |\n"
        f"|---|---|\n{checks}\n\n## Warnings\n\n{warn}\n",
        key=f"{slug}-summary",
        description=title,
    )
