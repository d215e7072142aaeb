"""The approval policy as a table of cases (pure functions, no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from approvals.policy import PolicyError, load_policy
from domain.policy import ApprovalContext, Policy, requirement, tally
from domain.records import ApprovalState, Decision

POLICY = load_policy()
T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
H = "h" * 64


def ctx(**kw: object) -> ApprovalContext:
    base: dict[str, object] = {
        "runbook": "offboard",
        "subject": "dana.sole@acme.com",
        "requester": "hr.bot@acme.com",
        "reason": "termination",
        "subject_manager": "sofia.lead@acme.com",
    }
    return ApprovalContext(**{**base, **kw})  # type: ignore[arg-type]


def d(who: str, what: str = "approve", plan: str = H, minutes: int = 1) -> Decision:
    return Decision(approver=who, decision=what, plan_hash=plan, at=T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("context", "rules", "seats"),
    [
        (ctx(), ("termination",), [("sofia.lead@acme.com", "hr.partner@acme.com")]),
        (
            ctx(reason="role_change"),
            ("offboarding",),
            [("sofia.lead@acme.com", "alice.admin@acme.com", "raj.admin@acme.com")],
        ),
        (ctx(emergency=True, reason="security_incident"), ("emergency",), []),
        (
            ctx(
                runbook="onboard",
                subject="v@vendor.com",
                requester="sofia.lead@acme.com",
                production_roles=("admin",),
                project_admins=("alice.admin@acme.com",),
            ),
            ("production-access",),
            [("alice.admin@acme.com",), ("sec.lead@acme.com", "sec.oncall@acme.com")],
        ),
        (
            ctx(
                runbook="onboard",
                subject="v@vendor.com",
                requester="sofia.lead@acme.com",
                modules=("data_tables",),
            ),
            ("governance-modules",),
            [("gov.lead@acme.com",)],
        ),
        (
            ctx(
                runbook="onboard",
                subject="v@vendor.com",
                requester="sofia.lead@acme.com",
                production_roles=("viewer",),
                project_admins=("alice.admin@acme.com",),
                subject_manager=None,
            ),
            # Seed 003: "Require additional approvals for production access grants" — a
            # Viewer too: the production rule's project admin and security.
            ("production-access",),
            [("alice.admin@acme.com",), ("sec.lead@acme.com", "sec.oncall@acme.com")],
        ),
        (
            ctx(runbook="review", reason="inactivity"),
            ("access-review-removal",),
            [("sec.lead@acme.com", "sec.oncall@acme.com")],
        ),
    ],
)
def test_who_must_approve(
    context: ApprovalContext, rules: tuple[str, ...], seats: list[tuple[str, ...]]
) -> None:
    req = requirement(POLICY, context)
    assert req.rules == rules
    assert [s.candidates for s in req.seats] == seats


def test_emergency_needs_no_pre_approval_and_opens_a_security_review() -> None:
    req = requirement(POLICY, ctx(emergency=True, reason="security_incident"))
    assert not req.pre_approval and req.quorum == 0
    assert req.post_hoc_review == ("sec.lead@acme.com", "sec.oncall@acme.com")


def test_requester_and_subject_are_never_candidates() -> None:
    req = requirement(
        POLICY,
        ctx(
            runbook="onboard",
            subject="alice.admin@acme.com",
            requester="raj.admin@acme.com",
            production_roles=("admin",),
            project_admins=("alice.admin@acme.com", "raj.admin@acme.com"),
        ),
    )
    assert req.seats[0].candidates == ()
    assert "raj.admin@acme.com" not in req.approvers(escalated=True)


PROD = ctx(
    runbook="onboard",
    subject="v@vendor.com",
    requester="sofia.lead@acme.com",
    production_roles=("manager",),
    project_admins=("alice.admin@acme.com",),
)


@pytest.mark.parametrize(
    ("decisions", "state", "counted"),
    [
        ([], ApprovalState.PENDING, []),
        ([d("alice.admin@acme.com")], ApprovalState.PENDING, [True]),
        ([d("alice.admin@acme.com"), d("sec.lead@acme.com")], ApprovalState.APPROVED, [True, True]),
        # two distinct people: the same person twice fills one seat only
        (
            [d("sec.lead@acme.com"), d("sec.lead@acme.com", minutes=2)],
            ApprovalState.PENDING,
            [True, False],
        ),
        # two security people cannot fill the project-admin seat
        ([d("sec.lead@acme.com"), d("sec.oncall@acme.com")], ApprovalState.PENDING, [True, True]),
        # self-approval by the requester is recorded and ignored
        ([d("sofia.lead@acme.com"), d("sec.lead@acme.com")], ApprovalState.PENDING, [False, True]),
        # an outsider's approval does not count
        ([d("mallory@evil.com"), d("alice.admin@acme.com")], ApprovalState.PENDING, [False, True]),
        # a decision for an old plan hash is ignored
        (
            [d("alice.admin@acme.com", plan="old"), d("sec.lead@acme.com")],
            ApprovalState.PENDING,
            [False, True],
        ),
        # any valid deny denies
        (
            [d("alice.admin@acme.com"), d("sec.lead@acme.com", "deny")],
            ApprovalState.DENIED,
            [True, True],
        ),
        # an invalid deny is ignored
        ([d("mallory@evil.com", "deny")], ApprovalState.PENDING, [False]),
    ],
)
def test_tally(decisions: list[Decision], state: ApprovalState, counted: list[bool]) -> None:
    req = requirement(POLICY, PROD)
    t = tally(req, decisions, plan_hash=H, now=T0 + timedelta(hours=1), created_at=T0)
    assert t.state == state
    assert [c for c, _ in t.verdicts] == counted


def test_escalation_never_fills_a_separation_of_duty_seat_then_timeout_expires() -> None:
    req = requirement(
        POLICY,
        ctx(
            runbook="onboard",
            subject="v@vendor.com",
            requester="sofia.lead@acme.com",
            production_roles=("admin",),
            project_admins=(),
        ),
    )
    assert not req.fallback_may_fill
    assert req.reasked_on_escalation == list(POLICY.groups["security"])
    assert "raj.admin@acme.com" not in req.approvers(escalated=True)
    # nobody can fill the project-admin seat, and escalation changes nothing for it (issue 14:
    # two IT admins approved a production Admin grant after 12 hours, security never asked)
    ds = [d("sec.lead@acme.com"), d("raj.admin@acme.com"), d("alice.admin@acme.com")]
    t = tally(req, ds, plan_hash=H, now=T0 + timedelta(hours=13), created_at=T0, escalated=True)
    assert t.state == ApprovalState.PENDING
    assert t.verdicts[1] == (False, "not an approver for this request")
    assert "raj.admin@acme.com" not in t.waiting_for
    t = tally(req, ds[:1], plan_hash=H, now=T0 + timedelta(hours=25), created_at=T0, escalated=True)
    assert t.state == ApprovalState.EXPIRED


def test_escalation_lets_the_fallback_fill_an_ordinary_seat() -> None:
    req = requirement(
        POLICY,
        ctx(
            runbook="offboard",
            subject="x@acme.com",
            requester="hr.bot@acme.com",
            reason="termination",
        ),
    )
    assert req.fallback_may_fill and req.reasked_on_escalation == []
    ds = [d("raj.admin@acme.com")]
    t = tally(req, ds, plan_hash=H, now=T0 + timedelta(hours=1), created_at=T0)
    assert t.state == ApprovalState.PENDING
    t = tally(req, ds, plan_hash=H, now=T0 + timedelta(hours=13), created_at=T0, escalated=True)
    assert t.state == ApprovalState.APPROVED


def test_where_the_org_cannot_name_project_admins_it_admins_sit_in_that_seat() -> None:
    asked = {
        "runbook": "onboard",
        "subject": "v@vendor.com",
        "requester": "sofia.lead@acme.com",
        "production_roles": ("manager",),
    }
    unknown = requirement(POLICY, ctx(**asked, project_admins_unknown=True))
    known_none = requirement(POLICY, ctx(**asked))
    seat = "production-access:project-admin"
    [got] = [s.candidates for s in unknown.seats if s.name == seat]
    assert set(got) == set(POLICY.groups[POLICY.fallback_group]) and got
    # An org that can say, and says nobody: the seat waits for escalation, as before.
    assert [s.candidates for s in known_none.seats if s.name == seat] == [()]
    # Named admins are never replaced.
    named = requirement(
        POLICY, ctx(**asked, project_admins=("sofia.lead@acme.com",), project_admins_unknown=True)
    )
    assert [s.candidates for s in named.seats if s.name == seat] == [()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fallback_group": "nobody"}, "fallback_group"),
        ({"escalate_after_hours": 48}, "escalate_after_hours"),
        (
            {"rules": [{"name": "x", "seats": [{"name": "s", "any_of": ["group:ghosts"]}]}]},
            "unknown group",
        ),
        (
            {"rules": [{"name": "x", "seats": [{"name": "s", "any_of": ["the boss"]}]}]},
            "unknown approver reference",
        ),
        ({"rules": [{"name": "x"}]}, "needs seats"),
        ({"groups": {"it_admins": ["not-an-email"]}}, "valid email"),
        (
            {
                "rules": [
                    {
                        "name": "x",
                        "seats": [
                            {
                                "name": "security",
                                "any_of": ["group:it_admins"],
                                "separation_of_duty": True,
                            }
                        ],
                    }
                ]
            },
            "is separation_of_duty but lists the fallback group",
        ),
        (
            {"rules": [{"name": "x", "seats": [{"name": "s", "any_of": ["a@b.c"], "sod": 1}]}]},
            "Extra inputs are not permitted",
        ),
    ],
)
def test_an_invalid_policy_is_refused_with_the_reason(
    change: dict[str, object], message: str
) -> None:
    data = POLICY.model_dump()
    data.update(change)
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate(data)


def test_policy_file_errors_name_the_file(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "policy.yaml"
    p.write_text("rules: []\ngroups: {}\nfallback_group: x\n")
    with pytest.raises(PolicyError, match=r"policy\.yaml"):
        load_policy(p)
