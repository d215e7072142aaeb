"""Approval policy as data, evaluated by pure functions (STYLE.md point 9).

A policy is a list of rules; every rule that matches a request adds its *seats*. Each seat is
filled by one distinct person from its candidates; a request is approved when every seat is
filled by a valid approval, and denied by any valid deny. A decision counts only when its
author is a candidate of some seat, is neither the requester nor the subject, and names the
current plan hash (ARCHITECTURE.md, security model). After ``escalate_after`` the fallback group
may fill any seat but a separation-of-duty one (the policy marks them: security, the project
admin of a production grant), whose own candidates are asked again instead; after ``timeout``
the request is auto-denied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.models import Email
from domain.records import ApprovalState, Decision

# Candidate references a seat may use besides literal emails and groups.
DYNAMIC = {"manager_of_subject", "project_admin"}

# The safety valves (domain.valves): each makes an offboarding wait for the policy's quorum rule
# (a rule whose ``match.valves`` names it), however the offboarding was started.
VALVES = ("protected_account", "emergency_limit", "termination_burst")
QUORUM = 2  # a valve's rule has at least this many seats: never one person alone


class Seat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    any_of: list[str] = Field(min_length=1)  # emails, "group:<name>", or a DYNAMIC reference
    # Never filled by the fallback group, however long the request waits.
    separation_of_duty: bool = False

    @field_validator("any_of")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            if not (ref in DYNAMIC or ref.startswith("group:") or "@" in ref):
                raise ValueError(
                    f"unknown approver reference {ref!r}: use an email, "
                    f"group:<name> or one of {sorted(DYNAMIC)}"
                )
        return v


class Match(BaseModel):
    """Which requests a rule applies to; an empty match applies to every request."""

    model_config = ConfigDict(extra="forbid")

    runbook: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    emergency: bool | None = None
    production_roles: list[str] = Field(default_factory=list)  # roles granted in production
    org_roles: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)
    valves: list[str] = Field(default_factory=list)  # applies when one of these valves holds

    @field_validator("valves")
    @classmethod
    def _known_valves(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(VALVES))
        if unknown:
            raise ValueError(f"unknown valves {unknown}: use {list(VALVES)}")
        return v


class EmergencyLimit(BaseModel):
    """HR emergencies (``security_risk: true``) per HR source and rolling hour that lock out at
    once; beyond it they wait for the quorum (``per_hour: 0``: every one waits)."""

    model_config = ConfigDict(extra="forbid")

    per_hour: int = Field(ge=0, le=10_000)


class TerminationBurst(BaseModel):
    """More leavers from HR within a rolling hour than ``max_people``, or than ``max_percent``
    of the org's members: the further ones wait for the quorum."""

    model_config = ConfigDict(extra="forbid")

    max_people: int | None = Field(None, ge=0)
    max_percent: float | None = Field(None, gt=0, le=100)

    @model_validator(mode="after")
    def _some_limit(self) -> TerminationBurst:
        if self.max_people is None and self.max_percent is None:
            raise ValueError("termination_burst needs max_people, max_percent or both")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    match: Match = Field(default_factory=Match)
    seats: list[Seat] = Field(default_factory=list)
    pre_approval: bool = True
    post_hoc_review: str | None = None  # a group that reviews afterwards (emergency)
    fallthrough: bool = False  # a default rule: applies only when no other rule matched


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: dict[str, list[Email]]
    rules: list[Rule] = Field(min_length=1)
    fallback_group: str
    timeout_hours: float = Field(24, gt=0)
    escalate_after_hours: float = Field(12, gt=0)
    reminder_days: list[int] = Field(default_factory=lambda: [3, 1])
    task_group: str | None = None  # who does human tasks; default the fallback group
    # How long an access review's approval of an item stands for its offboarding.
    review_approval_max_days: int = Field(14, gt=0, le=90)
    # Safety valves (domain.valves); each configured one needs a quorum rule (_valves_quorum).
    emergency_limit: EmergencyLimit | None = None
    termination_burst: TerminationBurst | None = None
    protected_accounts: list[Email] = Field(default_factory=list)
    # Who may declare an emergency offboarding themselves (``handover offboard --emergency``):
    # emails or group:<name>. Empty: nobody (an emergency then comes only from HR's signed event).
    emergency_declarers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.fallback_group not in self.groups:
            raise ValueError(f"fallback_group {self.fallback_group!r} is not a defined group")
        if self.task_group is not None and self.task_group not in self.groups:
            raise ValueError(f"task_group {self.task_group!r} is not a defined group")
        if self.escalate_after_hours >= self.timeout_hours:
            raise ValueError("escalate_after_hours must be shorter than timeout_hours")
        for rule in self.rules:
            for seat in rule.seats:
                for ref in seat.any_of:
                    if ref.startswith("group:") and ref[6:] not in self.groups:
                        raise ValueError(f"rule {rule.name!r}: unknown group {ref[6:]!r}")
                if seat.separation_of_duty and f"group:{self.fallback_group}" in seat.any_of:
                    raise ValueError(
                        f"rule {rule.name!r}: seat {seat.name!r} is separation_of_duty but "
                        f"lists the fallback group {self.fallback_group!r} as its approvers"
                    )
            if rule.pre_approval and not rule.seats:
                raise ValueError(f"rule {rule.name!r} needs seats (or pre_approval: false)")
        return self

    @model_validator(mode="after")
    def _valves_quorum(self) -> Policy:
        # A valve that no rule answers, or that one person could answer, would be no valve.
        for ref in self.emergency_declarers:
            if ref.startswith("group:") and ref[6:] not in self.groups:
                raise ValueError(f"emergency_declarers: unknown group {ref[6:]!r}")
            if not ref.startswith("group:") and "@" not in ref:
                raise ValueError(f"emergency_declarers: {ref!r} is not an email or group:<name>")
        for valve in self.valves_on():
            rules = [r for r in self.rules if valve in r.match.valves]
            if not any(r.pre_approval and len(r.seats) >= QUORUM for r in rules):
                raise ValueError(
                    f"{valve} is configured but no rule with match.valves [{valve}] asks a "
                    f"quorum (pre-approval by at least {QUORUM} seats)"
                )
        return self

    def valves_on(self) -> list[str]:
        """The safety valves this policy configures."""
        on = {
            "protected_account": bool(self.protected_accounts),
            "emergency_limit": self.emergency_limit is not None,
            "termination_burst": self.termination_burst is not None,
        }
        return [v for v in VALVES if on[v]]

    def declarers(self) -> list[str]:
        """Everyone who may declare an emergency offboarding themselves (lower-case emails)."""
        out: list[str] = []
        for ref in self.emergency_declarers:
            people = self.groups[ref[6:]] if ref.startswith("group:") else [ref.lower()]
            out += [p for p in people if p not in out]
        return out


def task_assignees(policy: Policy) -> list[str]:
    """Who is asked to do a human task: the policy's ``task_group`` (default its fallback
    group, the IT admins)."""
    return list(policy.groups[policy.task_group or policy.fallback_group])


@dataclass(frozen=True)
class ApprovalContext:
    """What the policy needs to know about one request."""

    runbook: str  # offboard | onboard | change | review | extend
    subject: str
    requester: str
    reason: str = ""
    emergency: bool = False
    subject_manager: str | None = None
    production_roles: tuple[str, ...] = ()
    org_role: str | None = None
    modules: tuple[str, ...] = ()
    project_admins: tuple[str, ...] = ()  # admins of the projects concerned
    # The org cannot say who administers its projects (SCIM only): the fallback group (IT
    # admins) sits in the project-admin seat, rather than a seat nobody can fill.
    project_admins_unknown: bool = False
    # Every other address the IdP knows the requester and the subject by (their aliases): an
    # approval from any of them is still theirs, never counted.
    aliases: tuple[str, ...] = ()
    # The safety valves that hold for this request (domain.valves): the policy's quorum rule
    # applies, and no rule's ``pre_approval: false`` lets it pass without it.
    valves: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedSeat:
    name: str
    candidates: tuple[str, ...]
    separation_of_duty: bool = False


@dataclass(frozen=True)
class Requirement:
    """What approving this request takes."""

    rules: tuple[str, ...]
    seats: tuple[ResolvedSeat, ...]
    pre_approval: bool
    post_hoc_review: tuple[str, ...]  # who reviews afterwards (emergency)
    fallback: tuple[str, ...]
    timeout: timedelta
    escalate_after: timedelta
    excluded: tuple[str, ...]  # requester and subject: never approvers

    @property
    def quorum(self) -> int:
        return len(self.seats)

    @property
    def fallback_may_fill(self) -> bool:
        """Whether escalation can help: some seat is not separation-of-duty."""
        return any(not s.separation_of_duty for s in self.seats)

    @property
    def reasked_on_escalation(self) -> list[str]:
        """Whom escalation asks again rather than replace: the separation-of-duty seats'
        candidates."""
        return list(
            dict.fromkeys(c for s in self.seats if s.separation_of_duty for c in s.candidates)
        )

    def approvers(self, *, escalated: bool = False) -> list[str]:
        """Everyone who may decide, in a stable order (whom the gate asks)."""
        out: list[str] = []
        for seat in self.seats:
            out += [c for c in seat.candidates if c not in out]
        if escalated and self.fallback_may_fill:
            out += [c for c in self.fallback if c not in out]
        return out


def _matches(m: Match, ctx: ApprovalContext) -> bool:
    if m.runbook and ctx.runbook not in m.runbook:
        return False
    if m.reasons and ctx.reason not in m.reasons:
        return False
    if m.emergency is not None and m.emergency != ctx.emergency:
        return False
    if m.production_roles and not set(m.production_roles) & set(ctx.production_roles):
        return False
    if m.org_roles and ctx.org_role not in m.org_roles:
        return False
    if m.valves and not set(m.valves) & set(ctx.valves):
        return False
    return not (m.modules and not set(m.modules) & set(ctx.modules))


def _resolve(ref: str, policy: Policy, ctx: ApprovalContext) -> list[str]:
    if ref == "manager_of_subject":
        return [ctx.subject_manager] if ctx.subject_manager else []
    if ref == "project_admin":
        if ctx.project_admins_unknown and not ctx.project_admins:
            return list(policy.groups[policy.fallback_group])
        return list(ctx.project_admins)
    if ref.startswith("group:"):
        return list(policy.groups[ref[6:]])
    return [ref.lower()]


def _check_quorum(matched: Sequence[Rule], ctx: ApprovalContext) -> None:
    """A request a safety valve holds is answered by a quorum rule, or by nothing at all.

    Raises:
        ValueError: no matched rule names one of ``ctx.valves`` with a quorum of seats.
    """
    if not ctx.valves:
        return
    valves = set(ctx.valves)
    if not any(
        valves & set(r.match.valves) and r.pre_approval and len(r.seats) >= QUORUM for r in matched
    ):
        raise ValueError(
            f"{', '.join(ctx.valves)}: the policy has no quorum rule for this request "
            "(a rule with match.valves and at least two seats); nothing is done without it"
        )


def requirement(policy: Policy, ctx: ApprovalContext) -> Requirement:
    """The seats to fill (and who may fill them) for ``ctx``: a pure function of the policy."""
    matched = [r for r in policy.rules if not r.fallthrough and _matches(r.match, ctx)]
    if not matched:
        matched = [r for r in policy.rules if r.fallthrough and _matches(r.match, ctx)]
    _check_quorum(matched, ctx)
    excluded = {ctx.requester.lower(), ctx.subject.lower(), *(a.lower() for a in ctx.aliases)}
    seats: list[ResolvedSeat] = []
    for rule in matched:
        if not rule.pre_approval:
            continue
        for seat in rule.seats:
            cands: list[str] = []
            for ref in seat.any_of:
                cands += [
                    c for c in _resolve(ref, policy, ctx) if c not in excluded and c not in cands
                ]
            seats.append(
                ResolvedSeat(f"{rule.name}:{seat.name}", tuple(cands), seat.separation_of_duty)
            )
    post_hoc = [
        c for r in matched if r.post_hoc_review for c in policy.groups.get(r.post_hoc_review, [])
    ]
    return Requirement(
        rules=tuple(r.name for r in matched),
        seats=tuple(seats),
        pre_approval=any(r.pre_approval for r in matched) if matched else True,
        post_hoc_review=tuple(dict.fromkeys(post_hoc)),
        fallback=tuple(c for c in policy.groups[policy.fallback_group] if c not in excluded),
        timeout=timedelta(hours=policy.timeout_hours),
        escalate_after=timedelta(hours=policy.escalate_after_hours),
        excluded=tuple(sorted(excluded)),
    )


@dataclass
class Tally:
    state: ApprovalState
    verdicts: list[tuple[bool, str]] = field(default_factory=list)  # per decision: counted, why
    filled: dict[str, str] = field(default_factory=dict)  # seat → approver
    waiting_for: list[str] = field(default_factory=list)


def _assign(
    seats: Sequence[ResolvedSeat], people: Sequence[str], fallback: Sequence[str]
) -> dict[str, str]:
    """Fill as many seats as possible with distinct people (tiny bipartite matching); the
    ``fallback`` people fill no separation-of-duty seat."""
    best: dict[str, str] = {}

    def go(i: int, used: dict[str, str]) -> None:
        nonlocal best
        if len(used) > len(best):
            best = dict(used)
        if i == len(seats) or len(best) == len(seats):
            return
        seat = seats[i]
        for p in people:
            may = p in seat.candidates or (p in fallback and not seat.separation_of_duty)
            if may and p not in used.values():
                used[seat.name] = p
                go(i + 1, used)
                del used[seat.name]
        go(i + 1, used)

    go(0, {})
    return best


def stored_seats(
    policy: Policy, rules: str, required: Sequence[Sequence[str]]
) -> list[ResolvedSeat]:
    """The seats of a stored approval (its ``rule`` names, comma-separated, and its candidate
    lists, one per seat), named as the policy names them (``rule:seat``) when the policy still
    has those rules with as many seats; else ``seat 1``, ``seat 2``… (the policy changed since).
    """
    named = [
        (f"{r.name}:{s.name}", s.separation_of_duty)
        for name in rules.split(",")
        for r in policy.rules
        if r.name == name and r.pre_approval
        for s in r.seats
    ]
    if len(named) != len(required):
        named = [(f"seat {i + 1}", False) for i in range(len(required))]
    return [
        ResolvedSeat(name, tuple(cands), sod)
        for (name, sod), cands in zip(named, required, strict=True)
    ]


def fill_seats(
    seats: Sequence[ResolvedSeat], approvers: Sequence[str], fallback: Sequence[str] = ()
) -> dict[str, str]:
    """Which seat each of ``approvers`` (approvals that counted) fills: seat name → approver,
    as the tally fills them (``fallback``: the fallback group, once the request escalated)."""
    return _assign(seats, [a.lower() for a in approvers], fallback)


UNAUTHENTICATED = "decision without an authenticated audit record: ignored"


def _verdict(
    d: Decision, req: Requirement, eligible: set[str], *, plan_hash: str, counted: list[str]
) -> tuple[bool, str]:
    """Whether one decision counts, and why not (``counted``: the approvals counted so far)."""
    who = d.approver.lower()
    if not d.authenticated:
        return False, UNAUTHENTICATED
    if who in req.excluded:
        return False, "the requester or the subject cannot approve"
    if who not in eligible:
        return False, "not an approver for this request"
    if d.plan_hash != plan_hash:
        return False, "decided an older plan"
    if d.decision == "deny":
        return True, ""
    if d.decision == "approve":
        return (False, "already counted") if who in counted else (True, "")
    return False, f"unknown decision {d.decision!r}"


def tally(
    req: Requirement,
    decisions: Sequence[Decision],
    *,
    plan_hash: str,
    now: datetime,
    created_at: datetime,
    escalated: bool = False,
) -> Tally:
    """Which decisions count, and the state they lead to (pure; the flow calls it on wake-up)."""
    eligible = set(req.approvers(escalated=escalated))
    verdicts: list[tuple[bool, str]] = []
    approvers: list[str] = []
    denied_by = None
    for d in decisions:
        who = d.approver.lower()
        verdict = _verdict(d, req, eligible, plan_hash=plan_hash, counted=approvers)
        verdicts.append(verdict)
        if verdict[0] and d.decision == "deny":
            denied_by = denied_by or who
        elif verdict[0]:
            approvers.append(who)
    fallback = req.fallback if escalated else ()
    filled = _assign(req.seats, approvers, fallback)
    if denied_by:
        state = ApprovalState.DENIED
    elif len(filled) == len(req.seats):
        state = ApprovalState.APPROVED
    elif now >= created_at + req.timeout:
        state = ApprovalState.EXPIRED
    else:
        state = ApprovalState.PENDING
    waiting = [c for s in req.seats if s.name not in filled for c in s.candidates]
    if escalated and any(not s.separation_of_duty for s in req.seats if s.name not in filled):
        waiting += list(fallback)
    return Tally(
        state=state,
        verdicts=verdicts,
        filled=filled,
        waiting_for=list(dict.fromkeys(w for w in waiting if w not in approvers)),
    )
