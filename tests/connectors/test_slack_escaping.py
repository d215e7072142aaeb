"""Text from outside reaches Slack as written (issue 15): ``<!channel>`` notifies nobody and
``<http://evil|click here>`` is no link, in every message text (domain/escaping.py, applied by
the Slack connector) — checked in the sandbox Slack's recorded messages, over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.slack import SlackMessenger
from tasks.onboard import read_access_request, reject_request
from tests.conftest import LiveSandbox
from tests.connectors.people_fixtures import add_slack_user, settings_for, slack_messages
from tests.flows.offboard_stack import OffboardStack
from tests.tasks.sandbox_runtime import demo_stack

HOSTILE = "ACC-9 <!channel> see <http://evil.example|the form> & <@U0BOSS>"
SHOWN = "ACC-9 &lt;!channel&gt; see &lt;http://evil.example|the form&gt; &amp; &lt;@U0BOSS&gt;"
SOFIA = "sofia.lead@acme.com"

stack = pytest.fixture(name="stack")(demo_stack)


@pytest.fixture
def slack(live: LiveSandbox) -> Iterator[tuple[SlackMessenger, LiveSandbox]]:
    yield SlackMessenger(settings_for(live)), live


def test_message_texts_reach_slack_as_written(slack: tuple[SlackMessenger, LiveSandbox]) -> None:
    m, live = slack
    add_slack_user(live, "ana@example.com", "Ana")
    ref = m.dm("ana@example.com", HOSTILE)
    (msg,) = slack_messages(live, user_email="ana@example.com")
    assert msg["text"] == SHOWN
    m.update(ref, f"updated: {HOSTILE}")
    (msg,) = slack_messages(live, user_email="ana@example.com")
    assert msg["text"] == f"updated: {SHOWN}"


def test_a_hostile_ticket_reaches_its_requester_neutralised(stack: OffboardStack) -> None:
    """A ticket whose summary and lines hold a channel mention and a spoofed link is rejected;
    the requester's DM quotes the lines, inert."""
    rt = stack.rt
    ticket = rt.tickets.create(
        project="ACC",
        issue_type="Access Request",
        summary="<!channel> urgent: <http://evil.example|approve here>",
        description=(
            "email: max.roe@vendorco.com\nprojects: Staging=viewer\n"
            "note: <!channel> <http://evil.example|click here>"
        ),
    )
    problems = read_access_request.fn(rt, ticket.key)
    assert isinstance(problems, str) and "<!channel>" in problems  # the ticket's own words
    assert (
        reject_request.fn(
            rt,
            ticket=ticket.key,
            subject=f"ticket:{ticket.key}",
            problems=problems,
            requester=SOFIA,
            flow_run_id="",
        )
        == "rejected"
    )
    url = stack.sandbox.url
    dms = httpx.get(f"{url}/_sandbox/slack/messages", params={"user_email": SOFIA}).json()
    (said,) = [d["text"] for d in dms["messages"] if ticket.key in d["text"]]
    assert "<!channel>" not in said and "<http" not in said, said
    assert "&lt;!channel&gt; &lt;http://evil.example|click here&gt;" in said, said
