"""Which tickets :class:`connectors.tickets.JiraTickets` reads as access requests (the
configured issue types, JSM request types, label), and who filed them on Jira Cloud (an
accountId-only reporter, read by ``GET /user?accountId=``): the real ``jira`` client against
the sandbox's Jira over loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.tickets import JiraTickets
from domain.request_kind import NotAnAccessRequest
from tests.conftest import LiveSandbox
from tests.connectors.people_fixtures import request_log, settings_for

AUTH = ("handover", "sandbox-jira-token")
BODY = "email: new.hire@example.com\nprojects: Production=viewer"


def control(live: LiveSandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{live.url}/_sandbox/jira/{path}", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def issue(live: LiveSandbox, **fields: Any) -> str:
    r = httpx.post(
        f"{live.url}/jira/rest/api/2/issue",
        auth=AUTH,
        json={"fields": {"summary": "Access", "description": BODY, **fields}},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_issue_types_request_types_and_a_label_make_a_request(live: LiveSandbox) -> None:
    control(live, "projects", {"key": "WEB", "name": "Web Platform"})
    desk = control(
        live,
        "projects",
        {
            "key": "HELP",
            "name": "IT Help",
            "issue_types": ["Service Request"],
            "request_types": [
                {"name": "Request access", "issue_type": "Service Request"},
                {"name": "Get IT help", "issue_type": "Service Request"},
            ],
        },
    )["request_types"]
    t = JiraTickets(
        settings_for(
            live, jira_request_types="Task, request ACCESS", jira_request_label="access-request"
        )
    )
    task = issue(live, project={"key": "WEB"}, issuetype={"name": "Task"})
    bug = issue(live, project={"key": "WEB"}, issuetype={"name": "Bug"})
    marked = issue(
        live, project={"key": "WEB"}, issuetype={"name": "Bug"}, labels=["access-request"]
    )
    jsm = issue(
        live,
        project={"key": "HELP"},
        issuetype={"name": "Service Request"},
        customfield_10010=desk["Request access"],
    )
    help_ = issue(
        live,
        project={"key": "HELP"},
        issuetype={"name": "Service Request"},
        customfield_10010=desk["Get IT help"],
    )
    assert t.get(jsm).request_type == "Request access"
    assert t.get(task).request_type == ""
    for key in (task, marked, jsm):
        assert t.read_access_request(key).email == "new.hire@example.com", key
    for key, said in ((bug, 'its type is "Bug"'), (help_, 'request type "Get IT help"')):
        with pytest.raises(NotAnAccessRequest) as err:
            t.read_access_request(key)
        assert said in str(err.value) and '"Task" or "request ACCESS"' in str(err.value)
        assert 'labelled "access-request"' in str(err.value)
    # The request type field is looked up once per connector, by its schema type.
    assert [r["path"] for r in request_log(live, "jira")].count("/jira/rest/api/2/field") == 1


def test_a_cloud_reporter_is_read_by_account_id(live: LiveSandbox) -> None:
    """An accountId-only reporter (Jira Cloud) whose email the issue hides: the account is
    asked for by accountId, and its email is the requester; one whose profile hides the email
    from apps too has none (never the display name)."""
    control(live, "projects", {"key": "WEB", "name": "Web Platform"})
    t = JiraTickets(settings_for(live, jira_request_types="Task"))
    users = {
        who: control(
            live,
            "users",
            {"name": who, "display_name": who.title(), "email": f"{who}@acme.com",
             "email_visible": False, "email_to_apps": who == "ana", "account_only": True},
        )["user"]["accountId"]
        for who in ("ana", "pia")
    }  # fmt: skip
    ana = issue(
        live,
        project={"key": "WEB"},
        issuetype={"name": "Task"},
        reporter={"accountId": users["ana"]},
    )
    pia = issue(
        live,
        project={"key": "WEB"},
        issuetype={"name": "Task"},
        reporter={"accountId": users["pia"]},
    )
    got = t.get(ana)
    assert (got.reporter, got.reporter_account, got.reporter_name) == (
        "ana@acme.com",
        users["ana"],
        "Ana",
    )
    asked = [r for r in request_log(live, "jira") if r["path"] == "/jira/rest/api/2/user"]
    assert asked and all(r["query"] == f"accountId={users['ana']}" for r in asked), asked
    assert t.read_access_request(ana).requester == "ana@acme.com"
    assert t.get(pia).reporter is None and t.read_access_request(pia).requester is None
