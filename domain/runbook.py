"""What every runbook shares, as data: the plan and its steps, the effect of an applied step, the
case a run belongs to, and the outcome a run ends with.

Each runbook's plan (``domain.plan.Plan`` for leavers, ``domain.onboard.OnboardPlan``,
``domain.change.ChangePlan``) is a :class:`RunbookPlan` of its own step type: one stable hash,
one count by kind, one notion of "nothing to do", so the machinery that approves, applies,
verifies and records a plan (``flows.runbook``) is written once.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Self, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.models import Effect, WriteResult
from domain.steps import StepParams, in_words


class PlanStep(BaseModel):
    """One thing to do, with its reason; ``id`` is stable across re-plans of the same world.

    Runbooks narrow ``kind`` to their own enum of step kinds and ``params`` to their own union
    of typed parameters (``domain.steps``), whose ``kind`` is the step's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: StrEnum
    target: str
    reason: str
    params: StepParams

    @classmethod
    def of(cls, params: StepParams, target: str, *, reason: str, **extra: Any) -> Self:
        """The step that does ``params`` to ``target``: its kind is the parameters' kind, its id
        ``kind:target``."""
        return cls(
            id=f"{params.kind}:{target}",
            kind=params.kind,
            target=target,
            reason=reason,
            params=params,
            **extra,
        )

    @model_validator(mode="before")
    @classmethod
    def _params_of_kind(cls, data: Any) -> Any:
        """Parameters given as a dict (a plan read back, a test) are those of the step's kind:
        the kind picks their model."""
        if isinstance(data, dict) and "kind" in data:
            params = data.get("params", {})
            if isinstance(params, dict) and "kind" not in params:
                kind = data["kind"]
                data = {**data, "params": {**params, "kind": getattr(kind, "value", kind)}}
        return data

    @model_validator(mode="after")
    def _params_match_kind(self) -> Self:
        if self.params.kind != self.kind.value:
            raise ValueError(f"{self.kind.value} step with {self.params.kind} parameters")
        return self

    @property
    def label(self) -> str:
        """``kind target``: how logs, failures and "not done" lists name the step."""
        return f"{self.kind.value} {self.target}"


S = TypeVar("S", bound=PlanStep)


class RunbookPlan(BaseModel, Generic[S]):
    """A runbook's plan: typed steps, warnings for the approvers, blockers that stop it."""

    model_config = ConfigDict(extra="forbid")

    runbook: str
    subject: str
    steps: list[S] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)  # a person must choose or act first

    def hash_facts(self) -> dict[str, Any]:
        """What else than the steps and blockers the approvers approve (a runbook adds its own:
        the reason of an offboarding, the outcome of an onboarding)."""
        return {}

    @property
    def hash(self) -> str:
        """SHA-256 of what the plan does (not of its wording): what approvers approve."""
        core = {
            "runbook": self.runbook,
            "subject": self.subject,
            "steps": [[s.kind.value, s.target, s.params.as_dict()] for s in self.steps],
            "blockers": self.blockers,
            **self.hash_facts(),
        }
        return hashlib.sha256(
            json.dumps(core, sort_keys=True, separators=(",", ":"), default=str).encode()
        ).hexdigest()

    def counts_by_kind(self) -> dict[str, int]:
        return dict(Counter(s.kind.value for s in self.steps))

    @property
    def is_noop(self) -> bool:
        return not self.steps and not self.blockers

    def in_words(self) -> list[str]:
        """Each step as approvers read it (``domain.steps.in_words``), in plan order."""
        return [in_words(s.params, s.target, self.subject) for s in self.steps]

    def plan_line(self) -> str:
        """``Plan 0123456789ab: remove_member 1, transfer_assets 2``."""
        return f"Plan {self.hash[:12]}: " + ", ".join(
            f"{k} {n}" for k, n in sorted(self.counts_by_kind().items())
        )

    @staticmethod
    def verification_line(failed: list[str]) -> str:
        return "Verification: " + (
            "all checks passed" if not failed else "FAILED " + ", ".join(failed)
        )

    def record_text(self, status: str, failed: list[str]) -> str:
        """What the ticket and the requester are told when the run ends (``failed``: the
        verification checks that did not pass)."""
        return "\n".join(
            [
                f"{self.runbook} of {self.subject}: {status}.",
                self.plan_line(),
                self.verification_line(failed),
            ]
        )

    def notices(self, status: str, ticket: str) -> list[tuple[str, str]]:
        """Who else is told what, when the run ends (``(email, text)``)."""
        return []

    def record_facts(self) -> dict[str, Any]:
        """What the audit event of the end of the run adds to the verification."""
        return {}

    def title(self) -> str:
        """How artifacts and summaries name the run (``Offboarding a@b.com``)."""
        return f"{self.runbook.replace('_', ' ').capitalize()} {self.subject}"

    def headline(self) -> str:
        """One line under the title: what the run is about."""
        return f"{self.counts_by_kind() or 'nothing to do'}"

    def approved(self, approvers: list[str], **standing: str) -> ApprovedPlan:
        """What the case keeps of this plan once it is approved (``standing``: the approval
        that stood for the gate, as ``review_approval``, ``batch_approval`` or
        ``expired_grant``)."""
        return ApprovedPlan(
            hash=self.hash, steps=sorted(s.id for s in self.steps), approvers=approvers, **standing
        )

    def resumed_from(self, approved: ApprovedPlan) -> Self:
        """This plan, continued from an interrupted run whose ``approved`` plan covers it."""
        return self

    def outcome_steps(self) -> list[dict[str, Any]]:
        return self.step_rows()

    def outcome_blockers(self) -> list[str]:
        return list(self.blockers)

    def outcome_facts(self) -> dict[str, Any]:
        """What the runbook adds to the ``--json`` outcome."""
        return {}

    def step_rows(self, *extra: str) -> list[dict[str, Any]]:
        """The steps as ``kind``/``target``/``reason`` (plus the ``extra`` attributes named),
        as the ``--json`` outcome shows them."""
        return [
            {
                "kind": s.kind.value,
                "target": s.target,
                "reason": s.reason,
                **{k: getattr(s, k) for k in extra},
            }
            for s in self.steps
        ]


def batch_hash(
    runbook: str,
    entries: Iterable[tuple[int, str, RunbookPlan[Any] | None, str]],
    *,
    key: str,
    **facts: str,
) -> str:
    """What the one approval of a batch approves: each entry's position, email, plan hash and
    error (``key`` names the list: rows of a file, members of a list)."""
    core = [
        [pos, email, plan.hash if plan is not None else "", err]
        for pos, email, plan, err in entries
    ]
    return hashlib.sha256(
        json.dumps({"runbook": runbook, **facts, key: core}, separators=(",", ":")).encode()
    ).hexdigest()


def batch_counts(plans: Iterable[RunbookPlan[Any] | None]) -> dict[str, int]:
    """The steps of every plan of a batch, counted by kind."""
    c: Counter[str] = Counter()
    for plan in plans:
        if plan is not None:
            c.update(plan.counts_by_kind())
    return dict(c)


def effect_counts(effects: dict[str, WriteResult]) -> dict[str, int]:
    """How many steps were created, updated, deleted or noop."""
    return dict(Counter(e.effect.value for e in effects.values()))


DONE_EARLIER = "done earlier in this case"


def done_earlier(detail: dict[str, Any] | None = None) -> WriteResult:
    """The effect of a step a case already did (in an earlier, interrupted run)."""
    return WriteResult(effect=Effect.NOOP, reason=DONE_EARLIER, detail=detail or {})


class ApprovedPlan(BaseModel):
    """What a case's approval covered, kept on the case: a run resumed after its worker died
    applies what is left of it without asking again."""

    model_config = ConfigDict(extra="ignore")

    hash: str
    steps: list[str] = Field(default_factory=list)  # step ids; empty: compare the hash
    approvers: list[str] = Field(default_factory=list)
    receivers: dict[str, list[str]] = Field(default_factory=dict)  # offboarding: who got what
    review_approval: str = ""  # an access review's approval stood for this one
    batch_approval: str = ""  # a bulk run's one approval stood for this one
    expired_grant: str = ""  # the end of temporary access stood for this one (grant ids)
    requester: str = ""  # who asked for the batch
    # What the approving run read to make the plan (a bulk run's leaver: the Inventory, as
    # JSON): the run that applies it soon after uses it instead of reading it all again.
    read: dict[str, Any] = Field(default_factory=dict)

    def covers(self, plan: RunbookPlan[Any]) -> bool:
        """Whether what ``plan`` still has to do was approved already."""
        if not self.steps:
            return self.hash == plan.hash
        return {s.id for s in plan.steps} <= set(self.steps)


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Case(BaseModel):
    """One runbook run for one person, across the flow runs it takes (a killed run's successor
    finds it): its ticket, what was approved, how it ended."""

    model_config = ConfigDict(extra="forbid")

    id: int
    runbook: str
    subject: str
    status: CaseStatus = CaseStatus.OPEN
    reason: str = ""
    ticket: str = ""
    requester: str = ""
    approved_plan: ApprovedPlan | None = None
    opened_at: datetime
    closed_at: datetime | None = None
    outcome: str = ""
    resumed: bool = False  # an earlier run of this case had opened it

    @property
    def key(self) -> str:
        """What the case's approval belongs to across runs."""
        return f"case-{self.id}"

    @property
    def once_label(self) -> str:
        """Names this case for "do it once" lookups (a ticket filed for it): id and opening
        time, unique even if a ledger starts over."""
        return f"handover-case-{self.id}-{self.opened_at:%Y%m%d%H%M%S}"


class RunbookFailed(Exception):
    """A runbook run that ended failed or blocked: the flow run ends Failed (so Prefect's
    automations see it) and whoever called the flow gets the outcome from here."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        super().__init__(
            outcome.get("failure") or "; ".join(outcome.get("plan", {}).get("blockers", []))
        )
        self.outcome = outcome


# The outcomes of the runs that ended under a call_runbook, innermost call first. A list, so
# the threads a flow fans out to (each in a copy of its context) hand over to the same call.
_handed_over: ContextVar[list[dict[str, Any]] | None] = ContextVar("outcomes", default=None)


def hand_over(outcome: dict[str, Any]) -> None:
    """Give a run's outcome to the :func:`call_runbook` it runs under (the runbook machinery
    calls this as the run ends)."""
    if (box := _handed_over.get()) is not None:
        box.append(outcome)


def call_runbook(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a runbook (a flow: a subflow when called inside a flow run) and return its outcome,
    whichever state it ended in.

    The outcome is handed over in-process (:func:`hand_over`), not read back from the run's
    final Prefect state: a state proposal the client sends again (after the server answered
    "database is locked") is rejected as already final, and Prefect then gives the caller the
    server's copy of the state, which has no data (a bare ``FailedRun`` for a blocked run,
    ``None`` for a denied one). A run that raised before it ended raises here."""
    box: list[dict[str, Any]] = []
    token = _handed_over.set(box)
    try:
        try:
            returned = fn(*args, **kwargs)
        except RunbookFailed as exc:
            returned = exc.outcome
        except Exception:
            if not box:
                raise
            returned = None
    finally:
        _handed_over.reset(token)
    # The run's own outcome is handed over last: its subflows end before it does.
    return box[-1] if box else cast(dict[str, Any], returned)
