"""The Tickets contract of :class:`connectors.tickets.JiraTickets`, through the real ``jira``
client against the sandbox's Jira over loopback, and reading access requests off tickets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from jira import JIRA

from connectors.capabilities import Tickets, has
from connectors.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    TransientError,
)
from connectors.tickets import JiraTickets
from domain.access_request import AccessRequestError
from domain.models import Effect, Module, Role
from domain.request_kind import NotAnAccessRequest
from sandbox import jira as fake
from tests.conftest import LiveSandbox, free_port
from tests.connectors.people_fixtures import (
    jira_projects,
    jira_view,
    request_log,
    set_faults,
    settings_for,
)

TODAY = date(2026, 3, 2)


@pytest.fixture
def jira(live: LiveSandbox) -> Iterator[tuple[JiraTickets, LiveSandbox]]:
    jira_projects(live)
    yield JiraTickets(settings_for(live)), live


def seed_ticket(
    live: LiveSandbox,
    description: str,
    *,
    issuetype: str = "Access Request",
    labels: tuple[str, ...] = (),
) -> str:
    """A ticket as the demo seed writes them: created inside Jira, by someone else."""
    with live.world.db.session() as s:
        return fake.create_issue(
            s,
            live.world.clock.now(),
            project="ACC" if issuetype == "Access Request" else "IT",
            issuetype=issuetype,
            summary="Amplitude access",
            description=description,
            labels=labels,
            reporter="sofia.lead@acme.com",
        )


@pytest.mark.slow
def test_tickets_contract(jira: tuple[JiraTickets, LiveSandbox]) -> None:
    t, live = jira
    assert has(t, Tickets)

    made = t.create(
        project="ACC",
        issue_type="Access Request",
        summary="Access for New Hire",
        description="email: new.hire@example.com\nprojects: Production=viewer",
        labels=["temporary"],
    )
    assert (made.key, made.status, made.issue_type) == ("ACC-1", "Open", "Access Request")
    assert made.labels == ("temporary",) and made.url == f"{live.url}/jira/browse/ACC-1"
    assert made.reporter == "handover@sandbox.invalid"  # the sandbox's address for its user
    assert t.get("acc-1") == made
    t.create(project="IT", issue_type="Task", summary="Laptop")

    result = t.comment("ACC-1", "Approved by manager")
    assert result.effect is Effect.CREATED and result.detail["id"]
    assert jira_view(live, "ACC-1")["comments"] == ["Approved by manager"]

    assert [x.key for x in t.search("project = ACC")] == ["ACC-1"]
    assert [x.key for x in t.search("ORDER BY key ASC", limit=1)] == ["ACC-1"]
    assert [x.key for x in t.search("labels = temporary AND status = Open")] == ["ACC-1"]

    # Open → Done goes through "Resolve": the transition is chosen by where it leads
    moved = t.transition_to("ACC-1", "done")
    assert moved.effect is Effect.UPDATED
    assert moved.detail == {"from": "Open", "to": "Done", "transition": "Resolve"}
    assert t.get("ACC-1").status == "Done"
    again = t.transition_to("ACC-1", "Done")
    assert again.effect is Effect.NOOP and again.reason == "already Done"
    assert [h["to"] for h in jira_view(live, "ACC-1")["transitions"]] == ["Done"]

    with pytest.raises(ConflictError) as err:
        t.transition_to("ACC-1", "In Progress")  # from Done only "Reopen" (→ Open) exists
    assert "no transition from Done leads to In Progress" in str(err.value)
    assert "Reopen → Open" in str(err.value)
    with pytest.raises(ConflictError, match="available: Start Progress → In Progress"):
        t.transition_to("IT-1", "Closed")
    assert t.transition_to("IT-1", "In Progress").detail["transition"] == "Start Progress"
    assert t.transition_to("IT-1", "Done").detail["transition"] == "To Done"


@pytest.mark.slow
def test_errors_are_mapped(jira: tuple[JiraTickets, LiveSandbox]) -> None:
    t, live = jira
    with pytest.raises(NotFoundError, match="Issue does not exist") as err:
        t.get("ACC-404")
    assert (err.value.system, err.value.operation, err.value.status_code) == (
        "jira",
        "get_issue",
        404,
    )
    with pytest.raises(NotFoundError):
        t.comment("ACC-404", "x")
    with pytest.raises(NotFoundError):
        t.transition_to("ACC-404", "Done")
    with pytest.raises(InvalidRequestError, match="does not exist for the field 'project'"):
        t.search("project = NOPE")
    with pytest.raises(InvalidRequestError, match="summary"):
        t.create(project="ACC", issue_type="Task", summary="")

    bad = JiraTickets(settings_for(live, jira_token="wrong-token"))
    with pytest.raises(AuthError) as auth:
        bad.get("ACC-1")
    assert auth.value.status_code == 401
    assert "wrong-token" not in str(auth.value) and "wrong-token" not in repr(bad)


@pytest.mark.slow
def test_server_errors_are_retried_until_they_pass(
    jira: tuple[JiraTickets, LiveSandbox],
) -> None:
    _, live = jira
    # At a 50% fault rate six attempts fail one call in 64, and the world's seeded rng starts
    # with a run of six faults: allow a few more attempts than the default.
    t = JiraTickets(settings_for(live), attempts=10)
    set_faults(live, fault_rate=0.5)  # the world's rng is seeded: the same faults every run
    made = t.create(project="ACC", issue_type="Task", summary="Despite faults")
    assert t.comment(made.key, "still here").effect is Effect.CREATED
    assert t.transition_to(made.key, "Rejected").effect is Effect.UPDATED
    assert t.get(made.key).status == "Rejected"
    statuses = [r["status"] for r in request_log(live, "jira")]
    assert sum(s >= 500 for s in statuses) >= 2
    set_faults(live)
    view = jira_view(live, made.key)
    assert view["comments"] == ["still here"] and len(view["transitions"]) == 1


def test_no_server_is_transient() -> None:
    t = JiraTickets(settings_for(f"http://127.0.0.1:{free_port()}"), attempts=2)
    with pytest.raises(TransientError, match="connection failed"):
        t.get("ACC-1")


@pytest.mark.slow
def test_read_access_request(jira: tuple[JiraTickets, LiveSandbox]) -> None:
    t, live = jira
    until = (TODAY + timedelta(days=30)).isoformat()
    key = seed_ticket(
        live,
        "email: analytics-vendor-max.roe@vendorco.com\n"
        "projects: Staging=manager, Production=viewer\norg_role: member\n"
        f"modules: govern\nuntil: {until}\n"
        "justification: Tracking plan clean-up for the mobile app\nsow: SOW-2230",
        labels=("temporary",),
    )
    req = t.read_access_request(key, today=TODAY)
    assert req.ticket == key and req.requester == "sofia.lead@acme.com"
    assert req.email == "analytics-vendor-max.roe@vendorco.com"
    assert req.projects == {"Staging": Role.MANAGER, "Production": Role.VIEWER}
    assert (req.org_role, req.modules) == (Role.MEMBER, (Module.GOVERN,))
    assert req.until == TODAY + timedelta(days=30) and req.temporary
    assert req.sow == "SOW-2230" and req.justification.startswith("Tracking plan")

    bad = seed_ticket(live, "email: not-an-email\nprojects: Prodution=owner\nuntil: 2020-01-01")
    with pytest.raises(AccessRequestError) as err:
        t.read_access_request(bad, today=TODAY)
    assert [e.line_no for e in err.value.errors] == [1, 2, 3]
    # what is wrong goes back on the ticket, as it is
    assert t.comment(bad, str(err.value)).effect is Effect.CREATED
    [comment] = jira_view(live, bad)["comments"]
    assert "line 2" in comment and "unknown role 'owner'" in comment

    other = seed_ticket(live, "email: dana.sole@acme.com\nreason: termination", issuetype="Task")
    with pytest.raises(
        NotAnAccessRequest, match=r'IT-1 is not an access request \(its type is "Task"'
    ):
        t.read_access_request(other, today=TODAY)


@pytest.mark.slow
def test_a_ready_client_can_be_given(jira: tuple[JiraTickets, LiveSandbox]) -> None:
    _, live = jira
    client = JIRA(
        server=f"{live.url}/jira/", basic_auth=("handover", "sandbox-jira-token"), max_retries=0
    )
    t = JiraTickets(client=client)
    made = t.create(project="IT", issue_type="Task", summary="Given client")
    assert made.url == f"{live.url}/jira/browse/IT-1"


def test_create_once_files_one_ticket_whatever_is_retried_or_run_again(
    jira: tuple[JiraTickets, LiveSandbox],
) -> None:
    tickets, live = jira
    # Most answers are lost after Jira applied the request: a plain retry would file it again.
    set_faults(live, fault_rate=0.35, fault_after=1.0)
    first = tickets.create(
        project="IT", issue_type="Offboarding", summary="Offboard a@x.com", once="handover-case-7"
    )
    again = tickets.create(
        project="IT", issue_type="Offboarding", summary="Offboard a@x.com", once="handover-case-7"
    )
    set_faults(live)
    assert any(r["injected"] == "fault-after" for r in request_log(live, "jira"))
    assert first.key == again.key
    assert [t.key for t in tickets.search('labels = "handover-case-7"')] == [first.key]
    other = tickets.create(project="IT", issue_type="Offboarding", summary="Offboard b@x.com")
    assert other.key != first.key


def test_the_jira_rate_limit_is_a_setting(live: LiveSandbox) -> None:
    # HANDOVER_JIRA_RATE_PER_MINUTE: Jira Cloud publishes no fixed limit; 300/min by default.
    assert JiraTickets(settings_for(live)).limiter.per_minute == 300
    faster = settings_for(live).model_copy(update={"jira_rate_per_minute": 600})
    assert JiraTickets(faster).limiter.per_minute == 600


def test_a_transition_reads_the_status_and_its_moves_at_once(
    jira: tuple[JiraTickets, LiveSandbox],
) -> None:
    t, live = jira
    key = t.create(project="IT", issue_type="Task", summary="Offboard x@y.com").key
    since = live.world.requests[-1].seq
    assert t.transition_to(key, "Done").detail["to"] == "Done"
    calls = [(r.method, r.path, r.query) for r in live.world.requests if r.seq > since]
    # The issue read with expand=transitions, then the transition posted: no list between.
    assert [c for c in calls if c[1].endswith("/transitions")] == [
        ("POST", f"/jira/rest/api/2/issue/{key}/transitions", "")
    ], calls
    assert any("expand=transitions" in q for _, _, q in calls), calls


class Counting:
    """A limiter that grants every token and counts them."""

    per_minute = 600.0

    def __init__(self) -> None:
        self.taken = 0

    def acquire(self) -> float:
        self.taken += 1
        return 0.0

    def penalize(self, seconds: float) -> None:
        pass


def test_every_request_to_jira_takes_a_token(live: LiveSandbox) -> None:
    # A create with its label looked up first, a transition with its issue read first: each
    # of our calls makes two requests, and each request is metered (else a bulk run at Jira's
    # limit gets 429s).
    jira_projects(live)
    limiter = Counting()
    t = JiraTickets(settings_for(live), limiter=limiter)
    since = live.world.requests[-1].seq if live.world.requests else 0
    key = t.create(project="IT", issue_type="Task", summary="x", once="handover-case-1-x").key
    t.transition_to(key, "Done")
    t.comment(key, "done")
    sent = [r for r in live.world.requests if r.seq > since and r.api == "jira"]
    assert limiter.taken == len(sent) >= 6, [(r.method, r.path) for r in sent]
