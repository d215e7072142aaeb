"""The one skeleton of the scheduled sweeps (temporary-access expiry, invitation hygiene):
read → decide → apply → record.

A sweep's flow reads its world (a task), decides its actions (pure, ``domain``) and hands what
it found here: :func:`unapplied` ends a blocked sweep or a dry run, writing nothing;
:func:`apply_sweep` applies each action once through the sweep's task (one failing action never
stops the others: it is tried again by the next sweep), publishes the table artifact and ends
the run in the Prefect state of its outcome (failed or blocked: *Failed*); both take the run's
runtime (``rt``, from the sweep's flow) and hand it to the sweep's task. What earlier sweeps
did is remembered by the sweep's long-lived case (``tasks.sweeps``), so a second sweep at the
same time does nothing.

The scheduled runbooks' own approvals (an extension of a grant, an access review's removals)
go through ``flows.runbook.ask``, the same gate as every runbook's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, field_validator

from approvals.holds import hold_on_rejection
from flows.runbook import Outcome, finish, run_id
from tasks.cases import audit_seq
from tasks.runtime import Runtime
from tasks.sweeps import Applied


class SweepAction(Protocol):
    """What the skeleton reads of an action (``domain.expiry.ExpiryAction``,
    ``domain.invitations.Action``)."""

    @property
    def kind(self) -> StrEnum: ...

    @property
    def id(self) -> str:
        """The step id, ``kind:target``: the key of the outcome's effects."""
        ...

    @property
    def reason(self) -> str: ...


A = TypeVar("A", bound=SweepAction)


def parse_now(value: str | None) -> datetime | None:
    """An ISO 8601 time (a time without a zone is UTC); None stays None.

    Raises:
        ValueError: not an ISO 8601 time.
    """
    if value is None or not value.strip():
        return None
    t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class SweepRequest(BaseModel):
    """What starting a sweep takes.

    ``now``: the org's time (ISO 8601; a time without a zone is UTC); default the runtime's
    clock. Pass the org's clock when it is not the orchestrator's (the sandbox's clock can be
    moved). ``dry_run``: decide only; nothing is written anywhere (not even the ledger).
    """

    model_config = ConfigDict(extra="forbid")

    now: datetime | None = None
    dry_run: bool = False

    @field_validator("now", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        return parse_now(v) if isinstance(v, str) or v is None else v


@dataclass(frozen=True)
class Sweeper(Generic[A]):
    """What makes a sweep of actions ``A`` its own: its name (logs), how an action shows as a
    plan step and in the table artifact, what of it the plan hash covers, and the task that
    applies it (``(rt, action, case_id=, flow_run_id=) → Applied``)."""

    name: str
    artifact: str  # the table artifact's key
    description: str
    target: Callable[[A], str]
    facts: Callable[[A], list[Any]]  # what the plan hash covers of an action
    columns: Callable[[A], dict[str, Any]]  # the table's columns between "action" and "effect"
    apply: Callable[..., Applied]
    reported: str = ""  # the warnings listed in the table under this label (none when empty)


@dataclass(frozen=True)
class Found(Generic[A]):
    """What a sweep found at ``at``: its actions (each with ``kind``, ``id`` and ``reason``),
    its warnings (reported, never acted on), and why it cannot decide (``blocker``)."""

    at: datetime
    actions: list[A]
    warnings: list[str]
    blocker: str = ""


def _plan(sweeper: Sweeper[A], found: Found[A]) -> dict[str, Any]:
    steps = [
        {"kind": a.kind.value, "target": sweeper.target(a), "reason": a.reason}
        for a in found.actions
    ]
    facts = [sweeper.facts(a) for a in found.actions]
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return {"hash": digest, "steps": steps, "blockers": [found.blocker] if found.blocker else []}


def _outcome(
    rt: Runtime,
    sweeper: Sweeper[A],
    found: Found[A],
    status: str,
    effects: dict[str, str] | None = None,
    verification: dict[str, str] | None = None,
    **extra: Any,
) -> Outcome:
    """The sweep's outcome as ``--json`` shows it: ``run_id``, ``status`` (done | planned |
    nothing_to_do | waiting_for_task | failed | blocked), ``now``, ``plan`` (``hash``, ``steps`` of
    kind/target/reason, ``blockers``), ``effects`` (action id → effect), ``verification``,
    ``warnings``, ``audit_seq`` and, once applied, ``notes`` and ``failures``."""
    return {
        "run_id": run_id(),
        "status": status,
        "now": found.at.isoformat(),
        "plan": _plan(sweeper, found),
        "effects": effects or {},
        "verification": verification or {},
        "warnings": found.warnings,
        "audit_seq": audit_seq(rt),
        **extra,
    }


def end(out: Outcome, *, failures: Sequence[str] = ()) -> Outcome:
    """:func:`flows.runbook.finish`, naming the ``failures`` (the actions or items that
    failed) in the Failed state's message."""
    return finish(out, why="; ".join(failures))


def unapplied(rt: Runtime, sweeper: Sweeper[A], found: Found[A], *, dry_run: bool) -> Outcome:
    """A blocked sweep, or a dry run's decision: nothing is written anywhere."""
    if found.blocker:
        return end(_outcome(rt, sweeper, found, "blocked"))
    assert dry_run, "only a blocked sweep or a dry run ends unapplied"
    return end(_outcome(rt, sweeper, found, "planned" if found.actions else "nothing_to_do"))


def apply_sweep(
    rt: Runtime, sweeper: Sweeper[A], found: Found[A], *, case_id: int | None
) -> Outcome:
    """Apply each action once on the sweep's case, publish the table, end the run: the
    outcome (:func:`_outcome`) in its Prefect state (failed: *Failed*, naming the failures;
    ``RunbookFailed`` carries the outcome to a caller)."""
    log = get_run_logger()
    effects: dict[str, str] = {}
    notes: dict[str, str] = {}
    verification: dict[str, str] = {}
    failures: list[str] = []
    for a in found.actions:
        assert case_id is not None
        try:
            did = sweeper.apply(rt, a, case_id=case_id, flow_run_id=run_id())
        except Exception as exc:  # one action must not stop the others
            hold_on_rejection(rt, exc, flow_run_id=run_id())  # the org's key: hold new runs
            failures.append(f"{a.id}: {exc}")
            log.error("%s: %s failed: %s", sweeper.name, a.id, exc)
            continue
        effects[a.id] = did.effect
        notes[a.id] = "; ".join(did.notes)
        if did.verification:
            verification[a.id] = did.verification
    _table(sweeper, found, effects, notes)
    # A person's task still open: that action is not done, nor is the sweep.
    waiting = [k for k, e in effects.items() if e.startswith("waiting(")]
    status = (
        "failed"
        if failures
        else "waiting_for_task"
        if waiting
        else ("done" if found.actions else "nothing_to_do")
    )
    out = _outcome(
        rt, sweeper, found, status, effects, verification, notes=notes, failures=failures
    )
    return end(out, failures=failures)


def _table(
    sweeper: Sweeper[A], found: Found[A], effects: dict[str, str], notes: dict[str, str]
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "#": i + 1,
            "action": a.kind.value,
            **sweeper.columns(a),
            "effect": effects.get(a.id, "not done"),
            "notes": notes.get(a.id, ""),
            "reason": a.reason,
        }
        for i, a in enumerate(found.actions)
    ]
    if sweeper.reported:
        rows += [{"#": "", "action": sweeper.reported, "reason": w} for w in found.warnings]
    create_table_artifact(
        rows or [{"#": 0, "action": "none", "reason": "nothing to do"}],
        key=sweeper.artifact,
        description=sweeper.description,
    )
