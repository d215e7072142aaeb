"""What the sweeps' tasks share (``tasks.sweeps``): the long-lived case, a step marked done
once, audit events at the runtime's time. Only the ledger is real here: no connector is used
(the runtime passed to each function is ``tests.tasks.fakes.fake_runtime``'s).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.audit import records
from tasks.runtime import Runtime
from tasks.sweeps import About, OnCase, audit, clock, open_sweep_case
from tests.tasks.fakes import fake_runtime

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return fake_runtime(tmp_path, now=NOW)


def test_the_clock_is_the_runtimes(rt: Runtime) -> None:
    # (The policy the expiry sweep reads is the runtime's too: ``rt.policy``, no longer a file
    # name looked up here.)
    assert clock(rt) == NOW


def test_a_sweep_case_is_opened_only_when_asked_and_then_kept(rt: Runtime) -> None:
    assert open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=False) is None
    case_id = open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=True)
    assert case_id is not None
    assert open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=False) == case_id
    assert open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=True) == case_id
    # Another sweep keeps its own case.
    other = open_sweep_case(rt, "invitations", "invitation-hygiene", "hygiene", create=True)
    assert other not in (None, case_id)


def test_a_step_is_marked_done_once(rt: Runtime) -> None:
    case_id = open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=True)
    assert case_id is not None
    c = OnCase.load(rt, case_id, flow_run_id="run-1")
    assert c.done == {}
    assert c.mark("revoke:1@t", "deleted", {"verification": "pass"}) is True
    assert c.mark("revoke:1@t", "deleted") is False
    assert c.done == {}  # what was loaded, until reloaded
    done = c.reload().done
    assert done["revoke:1@t"]["effect"] == "deleted"
    assert done["revoke:1@t"]["detail"] == {"verification": "pass"}


def test_an_actions_audit_event_names_it_and_its_reason(rt: Runtime) -> None:
    case_id = open_sweep_case(rt, "expiry", "expiry-sweep", "expiry", create=True)
    assert case_id is not None
    c = OnCase.load(rt, case_id, flow_run_id="run-1")
    about = About("carla@agency.io", "grant 7: Staging manager", "expired", ticket="ACC-7")
    c.audit(about, "grant.expired", "deleted", late_by="2 days")
    c.audit(about, "ticket.commented", "created", ticket="ACC-8", on_behalf_of="sec@acme.com")
    first, second = list(records(rt.ledger, subject="carla@agency.io"))
    assert (first.action, first.target, first.effect) == (
        "grant.expired",
        "grant 7: Staging manager",
        "deleted",
    )
    assert first.after == {"reason": "expired", "late_by": "2 days"}
    assert (first.ticket, first.flow_run_id, first.at) == ("ACC-7", "run-1", NOW)
    assert (second.ticket, second.on_behalf_of) == ("ACC-8", "sec@acme.com")


def test_audit_appends_one_event_at_the_runtimes_time(rt: Runtime) -> None:
    audit(
        rt,
        "grant.extended",
        subject="carla@agency.io",
        target="grant 7",
        effect="updated",
        flow_run_id="run-2",
        before={"end": "a"},
        after={"end": "b"},
        plan_hash="h" * 64,
    )
    (rec,) = records(rt.ledger, subject="carla@agency.io")
    assert (rec.action, rec.effect, rec.at) == ("grant.extended", "updated", NOW)
    assert (rec.before, rec.after, rec.plan_hash) == ({"end": "a"}, {"end": "b"}, "h" * 64)
