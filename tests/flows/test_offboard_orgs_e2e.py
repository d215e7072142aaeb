"""Offboarding across orgs (seed 003: "the production org and any sandbox environments you share
for QA"; seed 004: "deleted but can still log in: check if they have access to multiple
Amplitude organizations"), end to end on the demo sandbox and its second org (``/orgs/qa``):
after the main org, every other org the person is in gets an offboarding of its own (its own
case, plan, approval and verification), and the outcome says each org's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.cases import find_closed_case
from sandbox.app import create_app
from tests.conftest import serve
from tests.flows.offboard_stack import ADMIN, OffboardStack, make_stack

pytestmark = pytest.mark.slow

GINA, HR = "gina.groups@acme.com", "hr.partner@acme.com"


@pytest.fixture
def stack(tmp_path: Path, prefect_server: str) -> Iterator[OffboardStack]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        yield make_stack(sb, tmp_path, qa_org=True)
    finally:
        sb.stop()


def qa(st: OffboardStack, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{st.url}/orgs/qa/admin/v1{path}", params=params, headers=ADMIN, timeout=10)


def test_a_leaver_is_offboarded_from_every_org_they_are_in(stack: OffboardStack) -> None:
    st = stack
    owned = qa(st, "/assets", owner=GINA).json()["total"]
    assert owned > 0 and qa(st, f"/members/{GINA}").status_code == 200

    dry = st.start(email=GINA, reason="termination", requester=HR, dry_run=True).wait()
    assert dry["status"] == "planned" and dry["orgs"]["qa"]["status"] == "planned", dry

    run = st.start(email=GINA, reason="termination", requester=HR)
    main = st.paused(GINA)
    st.approve_every_seat(main)
    theirs = st.paused(GINA)  # the QA org's own plan, asked for on its own
    assert theirs.id != main.id and theirs.plan_hash != main.plan_hash
    st.approve_every_seat(theirs)
    out = run.wait()
    assert out["status"] == "done", out
    assert out["orgs"]["qa"]["status"] == "done", out["orgs"]

    assert st.member(GINA) is None
    assert qa(st, f"/members/{GINA}").status_code == 404  # gone from the QA org too
    assert qa(st, "/assets", owner=GINA).json()["total"] == 0  # its content transferred first
    case = find_closed_case(
        st.rt.ledger, runbook="offboard@qa", subject=GINA, ticket=out["ticket"], outcomes=("done",)
    )
    assert case is not None

    # Again: nothing anywhere.
    again = st.start(email=GINA, reason="termination", requester=HR).wait()
    assert again["status"] == "nothing_to_do", again


def test_an_unknown_org_is_bad_input(stack: OffboardStack) -> None:
    from connectors.settings import SettingsError

    run = stack.start(email=GINA, reason="termination", requester=HR, org="staging")
    run.thread.join(60)
    assert run.error and isinstance(run.error[0], SettingsError)
    assert "unknown org 'staging'" in str(run.error[0])


def test_the_cli_names_the_orgs_and_refuses_an_unknown_one(stack: OffboardStack) -> None:
    seq = stack.seq()
    p = stack.handover("offboard", GINA, "--reason", "termination", "--org", "staging")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "unknown org 'staging': the orgs are production, qa" in err, err
    p = stack.handover("offboard", GINA, "--reason", "termination", "--dry-run")
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0 and "org qa: planned" in out, (out, err)
    assert stack.writes(seq) == []


def test_the_review_covers_every_org(stack: OffboardStack) -> None:
    """Each org's members against the roster: dana.sole, terminated, is still in the QA org
    too (a finding of its own there), and the QA org's Admins are counted apart."""
    from flows.review import access_review

    out = stack.start(
        access_review, roster=str(stack.roster), dry_run=True, report_dir=str(stack.tmp)
    ).wait()
    qa_found = {(f["kind"], f["subject"]) for f in out["findings"] if f["org"] == "qa"}
    assert qa_found == {("terminated_still_in_org", "dana.sole@acme.com"), ("admins", "org")}
    steps = {(s["kind"], s["target"]) for s in out["plan"]["steps"]}
    assert ("remove", "dana.sole@acme.com (qa)") in steps and (
        "remove",
        "dana.sole@acme.com",
    ) in steps
    ids = [f["id"] for f in out["findings"]]
    assert len(ids) == len(set(ids))  # the same fact in two orgs: two findings


def test_onboarding_into_another_org_invites_there_only(stack: OffboardStack) -> None:
    from flows.onboard import onboard

    who = "nina.qa@acme.com"
    run = stack.start(onboard, email=who, projects={"QA": "viewer"}, org="qa", requester=HR)
    appr = stack.paused(who)
    stack.approve_every_seat(appr)
    out = run.wait()
    assert out["status"] == "done", out
    assert out["warnings"][0] == "in the qa org"
    m = qa(stack, f"/members/{who}").json()
    assert m["status"] == "pending" and {p["project"]: p["role"] for p in m["projects"]} == {
        "QA": "viewer"
    }
    assert stack.member(who) is None  # nothing in the main org
    # The same request again: the pending invitation is resent, as in the main org, never
    # a second invitation.
    again = stack.start(onboard, email=who, projects={"QA": "viewer"}, org="qa").wait()
    assert list(again["effects"]) == [f"resend_invitation:{who}"], again


def test_onboarding_into_another_org_refuses_what_only_the_main_org_has(
    stack: OffboardStack,
) -> None:
    seq = stack.seq()
    for extra, says in (
        (["--until", "2031-01-01"], "temporary access is for the main org only"),
        (["--idp"], "the IdP provisions the main org only"),
    ):
        p = stack.handover(
            "onboard", "--email", "x@acme.com", "--project", "QA=viewer", "--org", "qa", *extra
        )
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and says in err, err
    assert stack.writes(seq) == []


def test_an_access_request_ticket_names_the_org_to_join(stack: OffboardStack) -> None:
    from flows.onboard import onboard

    def ticket(description: str) -> str:
        """Filed by sofia (a requester must be a person the IdP knows, not Handover's own
        Jira account)."""
        r = httpx.post(
            f"{stack.url}/jira/rest/api/2/issue",
            auth=("handover", "sandbox-jira-token"),
            json={
                "fields": {
                    "project": {"key": "ACC"},
                    "issuetype": {"name": "Access Request"},
                    "summary": "QA access",
                    "description": description,
                    "reporter": {"name": "sofia.lead@acme.com"},
                }
            },
            timeout=10,
        )
        r.raise_for_status()
        return str(r.json()["key"])

    who = "omar.qa@acme.com"
    good = ticket(f"email: {who}\nprojects: QA=viewer\norg: qa")
    run = stack.start(onboard, ticket=good)
    stack.approve_every_seat(stack.paused(who))
    out = run.wait()
    assert out["status"] == "done" and out["warnings"][0] == "in the qa org", out
    assert qa(stack, f"/members/{who}").json()["status"] == "pending"
    assert stack.member(who) is None

    bad = ticket("email: x.qa@acme.com\nprojects: QA=viewer\norg: staging")
    res = stack.start(onboard, ticket=bad).wait()
    assert res["status"] == "rejected" and "unknown org 'staging'" in res["problems"], res
    comments = stack.get(f"/_sandbox/jira/issues/{bad}")["comments"]
    assert any("unknown org 'staging'" in c for c in comments), comments


def test_an_emergency_locks_out_of_every_org(stack: OffboardStack) -> None:
    """An emergency waits for nobody before the lockout, in each org: the person is gone from
    the main org and from the QA org, each run with its own post-hoc review."""
    out = stack.start(**stack.emergency(GINA)).wait()
    assert out["status"] == "done", out
    assert out["orgs"]["qa"]["status"] == "done", out["orgs"]
    assert stack.member(GINA) is None
    assert qa(stack, f"/members/{GINA}").status_code == 404
