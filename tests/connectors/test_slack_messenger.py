"""The Messenger contract of :class:`connectors.slack.SlackMessenger`, through the real
slack-sdk ``WebClient`` against the sandbox's Slack over loopback; and the one error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.error import URLError

import pytest
from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from connectors.capabilities import MessageRef, Messenger, has
from connectors.errors import (
    AuthError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    TransientError,
)
from connectors.rate import limiter_for
from connectors.slack import UNKNOWN_FOR, SlackMessenger, _translate
from domain.models import Effect
from tests.conftest import LiveSandbox, free_port
from tests.connectors.people_fixtures import (
    add_slack_channel,
    add_slack_user,
    request_log,
    set_faults,
    settings_for,
    slack_messages,
)

SECTION = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Hello*"}}]


@pytest.fixture
def slack(live: LiveSandbox) -> Iterator[tuple[SlackMessenger, LiveSandbox]]:
    yield SlackMessenger(settings_for(live)), live


@pytest.mark.slow
def test_dm_by_email_lands_in_that_persons_dm_and_update_changes_it(
    slack: tuple[SlackMessenger, LiveSandbox],
) -> None:
    m, live = slack
    assert has(m, Messenger)
    uid = add_slack_user(live, "alice@example.com", "Alice Admin")

    ref = m.dm("Alice@Example.com", "Approve offboarding?", SECTION)
    assert isinstance(ref, MessageRef) and ref.channel.startswith("D") and ref.ts
    [msg] = slack_messages(live, user_email="alice@example.com")
    assert (msg["text"], msg["blocks"], msg["ts"]) == ("Approve offboarding?", SECTION, ref.ts)

    result = m.update(ref, "Approved by bob@example.com", blocks=[])
    assert result.effect is Effect.UPDATED
    [msg] = slack_messages(live, user_email="alice@example.com")
    assert msg["text"] == "Approved by bob@example.com" and "blocks" not in msg
    assert msg["history"][0]["text"] == "Approve offboarding?"

    # a text-only update keeps the blocks, as Slack does
    m.update(ref, "again", SECTION)
    m.update(ref, "text only")
    [msg] = slack_messages(live, user_email="alice@example.com")
    assert (msg["text"], msg["blocks"]) == ("text only", SECTION)

    assert m.user_id("ALICE@example.com") == uid
    assert m.email_of(uid) == "alice@example.com"
    assert SlackMessenger(settings_for(live)).email_of(uid) == "alice@example.com"  # uncached

    # the person's id and DM channel are looked up once, whatever the number of messages
    m.dm("alice@example.com", "second")
    methods = [r["path"].rsplit("/", 1)[-1] for r in request_log(live, "slack")]
    assert methods.count("users.lookupByEmail") == 1
    assert methods.count("conversations.open") == 1
    assert methods.count("users.info") == 1  # the uncached connector's
    assert [x["text"] for x in slack_messages(live, user_email="alice@example.com")] == [
        "text only",
        "second",
    ]


@pytest.mark.slow
def test_post_to_a_channel_by_name(slack: tuple[SlackMessenger, LiveSandbox]) -> None:
    m, live = slack
    cid = add_slack_channel(live, "it-access")
    ref = m.post("#it-access", "Run finished", SECTION)
    assert ref.channel == cid
    assert m.post("it-access", "by bare name").channel == cid
    assert [x["text"] for x in slack_messages(live, channel=cid)] == [
        "Run finished",
        "by bare name",
    ]
    with pytest.raises(NotFoundError, match="channel_not_found") as err:
        m.post("#nowhere", "x")
    assert err.value.system == "slack" and err.value.operation == "post"


@pytest.mark.slow
def test_unknown_people_and_messages(slack: tuple[SlackMessenger, LiveSandbox]) -> None:
    m, live = slack
    assert m.user_id("nobody@example.com") is None
    assert m.email_of("U0NOPE") is None
    with pytest.raises(NotFoundError) as err:
        m.dm("nobody@example.com", "hi")
    assert "nobody@example.com" in str(err.value) and err.value.system == "slack"
    add_slack_user(live, "carol@example.com")
    ref = m.dm("carol@example.com", "hi")
    with pytest.raises(NotFoundError, match="message_not_found"):
        m.update(MessageRef(channel=ref.channel, ts="1.000001"), "x")
    with pytest.raises(InvalidRequestError, match="invalid_blocks"):
        m.dm("carol@example.com", "bad blocks", [{"text": "no type"}])


@pytest.mark.slow
def test_an_unknown_email_is_asked_again_only_after_a_while(live: LiveSandbox) -> None:
    now = [1000.0]
    m = SlackMessenger(settings_for(live), clock=lambda: now[0])
    assert m.user_id("newcomer@example.com") is None
    uid = add_slack_user(live, "newcomer@example.com")
    now[0] += UNKNOWN_FOR - 1
    assert m.user_id("newcomer@example.com") is None  # believed: no second lookup
    now[0] += 1
    assert m.user_id("Newcomer@example.com") == uid  # asked again: they have an account now
    methods = [r["path"].rsplit("/", 1)[-1] for r in request_log(live, "slack")]
    assert methods.count("users.lookupByEmail") == 2


def test_a_workspace_allowed_more_scales_every_bucket() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    m = SlackMessenger(settings_for(url, slack_rate_scale=4), attempts=1)
    with pytest.raises(TransientError):
        m.update(MessageRef(channel="D1", ts="1.0"), "x")
    assert limiter_for("slack chat.update", m.base_url).per_minute == 4 * 50
    with pytest.raises(ValidationError):
        settings_for(url, slack_rate_scale=0)


@pytest.mark.slow
def test_wrong_token_is_an_auth_error_not_a_missing_person(live: LiveSandbox) -> None:
    add_slack_user(live, "dan@example.com")
    m = SlackMessenger(settings_for(live, slack_bot_token="xoxb-wrong"))
    with pytest.raises(AuthError, match="invalid_auth"):
        m.user_id("dan@example.com")
    with pytest.raises(AuthError):
        m.dm("dan@example.com", "hi")
    assert slack_messages(live) == []
    assert "xoxb" not in repr(m)


@pytest.mark.slow
def test_429_is_waited_out_and_the_message_goes_through_once(
    slack: tuple[SlackMessenger, LiveSandbox],
) -> None:
    m, live = slack
    add_slack_user(live, "erin@example.com")
    set_faults(live, rate_limit=20, burst=2)  # a token every 3 s: the third call finds none
    # lookupByEmail, conversations.open, chat.postMessage: the third meets an empty bucket
    ref = m.dm("erin@example.com", "rate limited, still delivered")
    statuses = [r["status"] for r in request_log(live, "slack")]
    assert statuses.count(429) >= 1 and statuses[-1] == 200
    [msg] = slack_messages(live, user_email="erin@example.com")
    assert msg["ts"] == ref.ts


@pytest.mark.slow
def test_server_errors_are_retried(slack: tuple[SlackMessenger, LiveSandbox]) -> None:
    m, live = slack
    add_slack_user(live, "fay@example.com")
    set_faults(live, fault_rate=0.4)  # answered before the change: a retry cannot duplicate
    refs = [m.dm("fay@example.com", f"message {i}") for i in range(3)]
    statuses = [r["status"] for r in request_log(live, "slack")]
    assert any(s >= 500 for s in statuses)
    assert [x["ts"] for x in slack_messages(live, user_email="fay@example.com")] == [
        r.ts for r in refs
    ]


def test_no_server_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    m = SlackMessenger(settings_for(url), attempts=1)  # slack-sdk still retries once
    with pytest.raises(TransientError, match="connection failed") as err:
        m.user_id("a@example.com")
    assert err.value.subject == "a@example.com"


def _api_error(code: str, status: int = 200, headers: dict[str, object] | None = None) -> Exception:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://slack.invalid/api/x",
        req_args={},
        data={"ok": False, "error": code},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("exc", "kind", "retry_after"),
    [
        (_api_error("users_not_found"), NotFoundError, None),
        (_api_error("channel_not_found"), NotFoundError, None),
        (_api_error("invalid_auth"), AuthError, None),
        (_api_error("not_authed"), AuthError, None),
        (_api_error("ratelimited", 429, {"Retry-After": ["7"]}), TransientError, 7.0),
        (_api_error("ratelimited", 429, {"retry-after": "3"}), TransientError, 3.0),
        (_api_error("internal_error", 503), TransientError, None),
        (_api_error("msg_too_long"), InvalidRequestError, None),
        (URLError(ConnectionRefusedError(111, "refused")), TransientError, None),
        (TimeoutError(), TransientError, None),
    ],
)
def test_translate_maps_once(
    exc: Exception, kind: type[ConnectorError], retry_after: float | None
) -> None:
    err = _translate(exc, operation="dm", subject="a@example.com")
    assert type(err) is kind
    assert str(err).startswith("slack: dm failed for a@example.com: ")
    assert getattr(err, "retry_after", None) == retry_after


@pytest.mark.slow
def test_a_ready_client_can_be_given(live: LiveSandbox) -> None:
    add_slack_user(live, "gus@example.com")
    m = SlackMessenger(client=WebClient(base_url=f"{live.url}/slack/api/", token="xoxb-sandbox"))
    ref = m.dm("gus@example.com", "hello")
    assert [x["ts"] for x in slack_messages(live, user_email="gus@example.com")] == [ref.ts]
