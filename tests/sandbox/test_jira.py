"""The Jira fake through the real ``jira`` client over loopback, plus JQL edge cases in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jira import JIRA, JIRAError

from sandbox import jira as fake

if TYPE_CHECKING:
    from tests.conftest import LiveSandbox

AUTH = ("handover", "sandbox-jira-token")
DESCRIPTION = "email: new.hire@example.com\nprojects: Production=viewer, Staging=manager\n"


@pytest.fixture
def jira_live(live: LiveSandbox) -> Iterator[tuple[JIRA, LiveSandbox]]:
    with live.world.db.session() as s:
        fake.ensure_project(s, "ACC", "Access Requests")
        fake.ensure_project(s, "IT", "IT Operations")
        assert fake.ensure_project(s, "ACC", "Another name") == "ACC"  # idempotent, name kept
    client = JIRA(server=f"{live.url}/jira", basic_auth=AUTH, max_retries=0)
    yield client, live
    client.close()


@pytest.mark.slow
def test_access_request_lifecycle(jira_live: tuple[JIRA, LiveSandbox]) -> None:
    j, live = jira_live
    assert j.myself()["name"] == "handover"
    assert {p.key for p in j.projects()} == {"ACC", "IT"}
    assert j.project("ACC").name == "Access Requests"
    assert any(f["id"] == "labels" for f in j.fields())

    issue = j.create_issue(
        project="ACC",
        summary="Access for New Hire",
        description=DESCRIPTION,
        issuetype={"name": "Access Request"},
        labels=["temporary"],
    )
    assert issue.key == "ACC-1"
    got = j.issue("ACC-1")
    assert got.fields.summary == "Access for New Hire"
    assert got.fields.description == DESCRIPTION
    assert got.fields.issuetype.name == "Access Request"
    assert got.fields.status.name == "Open"
    assert got.fields.labels == ["temporary"]
    assert got.fields.reporter.name == "handover"
    assert got.fields.created.endswith("+0000") and got.fields.comment.comments == []

    j.add_comment("ACC-1", "Approved by manager")
    assert [c.body for c in j.comments("ACC-1")] == ["Approved by manager"]
    assert j.issue("ACC-1").fields.comment.comments[0].author.name == "handover"

    # The workflow's names differ from the statuses: choose by target status, as the runbook does.
    transitions = j.transitions("ACC-1")
    assert {t["to"]["name"] for t in transitions} == {"In Progress", "Done", "Rejected"}
    done = next(t for t in transitions if t["to"]["name"] == "Done")
    assert done["name"] != "Done"
    j.transition_issue("ACC-1", done["id"])
    assert j.issue("ACC-1").fields.status.name == "Done"
    assert j.issue("ACC-1").fields.resolution.name == "Done"

    with live.world.db.session() as s:
        view = fake.get_issue(s, "ACC-1")
    assert view is not None
    assert view["status"] == "Done" and view["comments"] == ["Approved by manager"]
    assert view["transitions"][0]["from"] == "Open" and view["transitions"][0]["to"] == "Done"


@pytest.mark.slow
def test_search(jira_live: tuple[JIRA, LiveSandbox]) -> None:
    j, live = jira_live
    j.create_issue(
        fields={
            "project": {"key": "ACC"},
            "summary": "Access A",
            "description": "email: a@example.com",
            "issuetype": {"name": "Access Request"},
        }
    )
    j.create_issue(
        project="ACC",
        summary="Access B",
        description="email: b@example.com",
        issuetype={"name": "Access Request"},
        labels=["temporary"],
    )
    j.create_issue(project="IT", summary="Laptop", issuetype={"name": "Task"})
    j.transition_issue(
        "ACC-2", next(t["id"] for t in j.transitions("ACC-2") if t["to"]["name"] == "In Progress")
    )

    def keys(jql: str) -> list[str]:
        return [i.key for i in j.search_issues(jql, maxResults=50)]

    assert keys("project = ACC ORDER BY created ASC") == ["ACC-1", "ACC-2"]
    assert keys("project = ACC ORDER BY created DESC") == ["ACC-2", "ACC-1"]
    assert keys('project = ACC AND status = "In Progress"') == ["ACC-2"]
    assert keys('status in ("Open", Done) ORDER BY key ASC') == ["ACC-1", "IT-1"]
    assert keys("labels = temporary") == ["ACC-2"]
    assert keys('text ~ "b@example.com"') == ["ACC-2"]
    j.add_comment("ACC-1", "Vendor contract attached")
    assert keys("text ~ vendor") == ["ACC-1"]  # text ~ searches comments too
    assert keys("key = IT-1") == ["IT-1"]
    assert keys("project = ACC AND issuetype = 'Access Request' AND labels != temporary") == [
        "ACC-1"
    ]
    page = j.search_issues("order by key asc", startAt=1, maxResults=1)
    assert [i.key for i in page] == ["ACC-2"] and page.total == 3
    assert len(j.search_issues("", maxResults=False)) == 3  # the client's fetch-all paging
    with live.world.db.session() as s:
        fake.create_issue(
            s,
            live.world.clock.now(),
            project="IT",
            issuetype="Offboarding",
            summary="Leaver",
            reporter="hr@example.com",
        )
    assert keys("issuetype = Offboarding AND reporter = hr@example.com") == ["IT-2"]


@pytest.mark.slow
def test_errors(jira_live: tuple[JIRA, LiveSandbox]) -> None:
    j, live = jira_live
    with pytest.raises(JIRAError) as err:
        JIRA(server=f"{live.url}/jira", basic_auth=("handover", "wrong"), max_retries=0)
    assert err.value.status_code == 401

    with pytest.raises(JIRAError) as err:
        j.issue("ACC-404")
    assert err.value.status_code == 404
    assert "Issue does not exist" in str(err.value.text)

    with pytest.raises(JIRAError) as err:
        j.create_issue(project="ACC", description="x", issuetype={"name": "Access Request"})
    assert err.value.status_code == 400
    assert err.value.response.json()["errors"] == {
        "summary": "You must specify a summary of the issue."
    }

    j.create_issue(project="ACC", summary="s", issuetype={"name": "Task"})
    with pytest.raises(JIRAError) as err:
        j.transition_issue("ACC-1", "61")  # "Reopen" exists, but not from Open
    assert err.value.status_code == 400
    with pytest.raises(JIRAError):
        j.transition_issue("ACC-1", "Done")  # a status name is not a transition name
    assert j.issue("ACC-1").fields.status.name == "Open"

    with pytest.raises(JIRAError) as err:
        j.search_issues("project = NOPE")
    assert err.value.status_code == 400


def test_bad_jql_in_process(client: TestClient) -> None:
    url = "/jira/rest/api/2/search"
    for jql in (
        "project = ",
        "project ACC",
        "foo = bar",
        "status in (Open",
        "summary ~ x AND",
        "project = ACC ORDER created",
        'text = "x"',
        "project = ACC OR key = ACC-1",
    ):
        r = client.get(url, params={"jql": jql}, auth=AUTH)
        assert r.status_code == 400, jql
        body = r.json()
        assert body["errors"] == {} and body["errorMessages"], jql
    assert client.get(url, params={"jql": "project = ACC"}).status_code == 401
    assert client.get(url, params={"jql": ""}, auth=AUTH).json()["total"] == 0
    r = client.post(url, json={"jql": "order by created desc", "maxResults": 5}, auth=AUTH)
    assert r.status_code == 200 and r.json()["maxResults"] == 5


def test_control_endpoints(client: TestClient, empty_app: FastAPI) -> None:
    world = empty_app.state.world
    with world.db.session() as s:
        fake.ensure_project(s, "ACC", "Access Requests")
        key = fake.create_issue(
            s,
            world.clock.now(),
            project="ACC",
            issuetype="Access Request",
            summary="x",
            labels=["temporary"],
        )
    assert client.get(f"/_sandbox/jira/issues/{key}").json()["labels"] == ["temporary"]
    assert [i["key"] for i in client.get("/_sandbox/jira/issues?project=ACC").json()["issues"]] == [
        "ACC-1"
    ]
    assert client.get("/_sandbox/jira/issues/ACC-9").status_code == 404
