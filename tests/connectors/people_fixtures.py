"""Helpers for the people-systems connector tests (Slack, Jira): settings pointing the real
clients at a loopback sandbox, and the sandbox's control endpoints, read and set."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from connectors.settings import Settings
from sandbox import jira as fake_jira
from sandbox.slack import ensure_channel
from tests.conftest import LiveSandbox


def settings_for(live: LiveSandbox | str, **overrides: Any) -> Settings:
    """Settings for the sandbox at ``live`` (or a base URL) with its published development
    credentials, given explicitly so that no environment variable of the machine counts."""
    url = live if isinstance(live, str) else live.url
    values: dict[str, Any] = {
        "slack_api_url": f"{url}/slack/api/",
        "slack_bot_token": SecretStr("xoxb-sandbox"),
        "jira_url": f"{url}/jira",
        "jira_user": "handover",
        "jira_token": SecretStr("sandbox-jira-token"),
    }
    values.update(overrides)
    return Settings(**values)


def add_slack_user(live: LiveSandbox, email: str, real_name: str = "") -> str:
    r = httpx.post(
        f"{live.url}/_sandbox/slack/users", json={"email": email, "real_name": real_name}
    )
    r.raise_for_status()
    return str(r.json()["user"]["id"])


def add_slack_channel(live: LiveSandbox, name: str) -> str:
    with live.world.db.session() as s:
        return ensure_channel(s, name)


def slack_messages(live: LiveSandbox, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{live.url}/_sandbox/slack/messages", params=params)
    r.raise_for_status()
    return list(r.json()["messages"])


def set_faults(live: LiveSandbox, **faults: Any) -> None:
    httpx.put(f"{live.url}/_sandbox/faults", json=faults).raise_for_status()


def request_log(live: LiveSandbox, api: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{live.url}/_sandbox/requests", params={"api": api})
    r.raise_for_status()
    return list(r.json()["requests"])


def jira_projects(live: LiveSandbox) -> None:
    """The projects the runbooks use, as the demo seed makes them."""
    with live.world.db.session() as s:
        fake_jira.ensure_project(s, "ACC", "Access Requests")
        fake_jira.ensure_project(s, "IT", "IT Operations")


def jira_view(live: LiveSandbox, key: str) -> dict[str, Any]:
    """An issue as the sandbox holds it: comments as bodies, transition history."""
    with live.world.db.session() as s:
        view = fake_jira.get_issue(s, key)
    assert view is not None, key
    return view
