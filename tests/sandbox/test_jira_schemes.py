"""The Jira fake as organisations configure Jira, through the real ``jira`` client over
loopback: per-project issue type schemes (Jira Software's default has no "Access Request"),
Jira Service Management's request types and their field, and Jira Cloud's accountId-only
people whose email their privacy settings show or hide."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jira import JIRA, JIRAError
from jira.resources import User

from tests.conftest import LiveSandbox

AUTH = ("handover", "sandbox-jira-token")
SOFTWARE = ["Epic", "Story", "Task", "Sub-task", "Bug", "Improvement", "New Feature"]


def control(live: LiveSandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{live.url}/_sandbox/jira/{path}", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def j(live: LiveSandbox) -> Iterator[JIRA]:
    client = JIRA(server=f"{live.url}/jira", basic_auth=AUTH, max_retries=0)
    yield client
    client.close()


def test_a_software_project_has_its_schemes_types_only(live: LiveSandbox, j: JIRA) -> None:
    made = control(live, "projects", {"key": "WEB", "name": "Web Platform"})
    assert made["project"]["projectTypeKey"] == "software"
    assert [t.name for t in j.project("WEB").issueTypes] == SOFTWARE
    subtask = {t.name: t.subtask for t in j.project("WEB").issueTypes}
    assert subtask["Sub-task"] and not subtask["Task"]
    task = j.create_issue(project="WEB", summary="Access", issuetype={"name": "Task"})
    assert task.fields.issuetype.name == "Task"
    with pytest.raises(JIRAError) as err:
        j.create_issue(project="WEB", summary="Access", issuetype={"name": "Access Request"})
    assert err.value.status_code == 400
    assert err.value.response.json()["errors"] == {
        "issuetype": "The issue type selected is invalid."
    }
    # No JSM here: no request type field, and issues do not carry one.
    assert not [f for f in j.fields() if f["id"] == "customfield_10010"]
    assert "customfield_10010" not in j.issue(task.key).raw["fields"]


def test_a_service_desk_has_request_types_in_jsm_s_field(live: LiveSandbox, j: JIRA) -> None:
    made = control(
        live,
        "projects",
        {
            "key": "HELP",
            "name": "IT Help",
            "issue_types": ["Service Request", "Incident"],
            "request_types": [
                {"name": "Request access", "issue_type": "Service Request"},
                {"name": "Report a broken laptop", "issue_type": "Incident"},
            ],
        },
    )
    assert made["project"]["projectTypeKey"] == "service_desk"
    ids = made["request_types"]
    [field] = [f for f in j.fields() if f["id"] == "customfield_10010"]
    assert field["schema"]["custom"] == "com.atlassian.servicedesk:vp-origin"
    assert field["name"] == "Request Type" and field["custom"] is True
    issue = j.create_issue(
        fields={
            "project": {"key": "HELP"},
            "issuetype": {"name": "Service Request"},
            "summary": "Access please",
            "customfield_10010": ids["Request access"],  # Jira takes a plain string
        }
    )
    value = j.issue(issue.key, fields="summary,customfield_10010").raw["fields"]
    assert value["customfield_10010"]["requestType"]["name"] == "Request access"
    assert value["customfield_10010"]["requestType"]["issueTypeId"] == "10200"
    assert value["customfield_10010"]["currentStatus"]["statusCategory"] == "NEW"
    # An issue filed without a request type (through the Jira API, not the portal) has null.
    bare = j.create_issue(project="HELP", summary="x", issuetype={"name": "Incident"})
    assert j.issue(bare.key).raw["fields"]["customfield_10010"] is None
    with pytest.raises(JIRAError) as err:  # an object is refused, as Jira refuses it
        j.create_issue(
            fields={
                "project": {"key": "HELP"},
                "issuetype": {"name": "Incident"},
                "summary": "x",
                "customfield_10010": {"id": ids["Request access"]},
            }
        )
    assert err.value.response.json()["errors"] == {
        "customfield_10010": "Operation value must be a string"
    }


def test_a_cloud_account_is_known_by_account_id_only(live: LiveSandbox, j: JIRA) -> None:
    control(live, "projects", {"key": "WEB", "name": "Web Platform"})
    hidden = control(
        live,
        "users",
        {"name": "ana", "display_name": "Ana", "email": "ana@acme.com", "email_visible": False,
         "account_only": True},
    )["user"]  # fmt: skip
    private = control(
        live,
        "users",
        {"name": "pia", "display_name": "Pia", "email": "pia@acme.com", "email_to_apps": False,
         "account_only": True},
    )["user"]  # fmt: skip
    assert "name" not in hidden and "key" not in hidden and hidden["accountType"] == "atlassian"
    assert hidden["emailAddress"] == "ana@acme.com"  # GET /user shows it to Handover
    assert "emailAddress" not in private  # the profile hides it from apps too
    issue = j.create_issue(
        fields={
            "project": {"key": "WEB"},
            "issuetype": {"name": "Task"},
            "summary": "x",
            "reporter": {"accountId": hidden["accountId"]},
        }
    )
    reporter = j.issue(issue.key).raw["fields"]["reporter"]
    assert reporter["accountId"] == hidden["accountId"] and reporter["displayName"] == "Ana"
    assert not {"name", "key", "emailAddress"} & set(reporter)
    by_id = User(j._options, j._session, _query_param="accountId")
    by_id.find(hidden["accountId"])
    assert by_id.emailAddress == "ana@acme.com"
    with pytest.raises(JIRAError) as err:  # Cloud knows no usernames
        j.user("ana")
    assert err.value.status_code == 404
    shown = httpx.get(
        f"{live.url}/jira/rest/api/2/user", params={"accountId": private["accountId"]}, auth=AUTH
    ).json()
    assert "emailAddress" not in shown
