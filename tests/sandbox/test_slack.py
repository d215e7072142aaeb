"""The Slack fake, driven by the real ``slack_sdk.WebClient`` over loopback and by raw HTTP
(form, multipart, JSON, query) in process."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from sandbox.slack import ensure_channel, ensure_user, list_messages
from tests.conftest import LiveSandbox

TOKEN = "xoxb-sandbox"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

APPROVAL_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Offboard* bob@example.com?"}},
    {
        "type": "actions",
        "block_id": "approval",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "APR-1",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "deny",
                "value": "APR-1",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Deny"},
            },
        ],
    },
]


def sdk(live: LiveSandbox, token: str | None = TOKEN, **kw: object) -> WebClient:
    return WebClient(base_url=f"{live.url}/slack/api/", token=token, **kw)  # type: ignore[arg-type]


def add_user(base: str, email: str, real_name: str) -> str:
    r = httpx.post(f"{base}/_sandbox/slack/users", json={"email": email, "real_name": real_name})
    r.raise_for_status()
    return str(r.json()["user"]["id"])


def api_error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


def test_approval_message_round_trip_with_slack_sdk(live: LiveSandbox) -> None:
    uid = add_user(live.url, "Alice@Example.com", "Alice Admin")
    client = sdk(live)
    me = client.auth_test()
    assert me["ok"] and me["user_id"].startswith("U0")

    user = client.users_lookupByEmail(email="alice@example.COM")["user"]
    assert user["id"] == uid and user["profile"]["email"] == "alice@example.com"
    assert user["real_name"] == "Alice Admin" and user["deleted"] is False
    assert client.users_info(user=uid)["user"]["name"] == "alice"

    dm = client.conversations_open(users=uid)["channel"]["id"]
    assert dm.startswith("D") and client.conversations_open(users=uid)["channel"]["id"] == dm

    posted = client.chat_postMessage(
        channel=dm, text="Approve offboarding?", blocks=APPROVAL_BLOCKS
    )
    assert posted["channel"] == dm and posted["message"]["blocks"] == APPROVAL_BLOCKS
    assert posted["message"]["user"] == me["user_id"]

    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by Alice"}}]
    upd = client.chat_update(channel=dm, ts=posted["ts"], text="Approved", blocks=done)
    assert (upd["channel"], upd["ts"], upd["text"]) == (dm, posted["ts"], "Approved")

    listed = httpx.get(
        f"{live.url}/_sandbox/slack/messages", params={"user_email": "alice@example.com"}
    ).json()
    assert listed["count"] == 1
    msg = listed["messages"][0]
    assert msg["text"] == "Approved" and msg["blocks"] == done and msg["to"] == "alice@example.com"
    assert msg["edited"]["ts"] > msg["ts"] and msg["history"][0]["blocks"] == APPROVAL_BLOCKS

    hist = client.conversations_history(channel=dm)["messages"]
    assert [m["ts"] for m in hist] == [posted["ts"]]


def test_post_to_user_id_lands_in_their_dm_and_text_only_update_keeps_blocks(
    live: LiveSandbox,
) -> None:
    uid = add_user(live.url, "carol@example.com", "Carol")
    client = sdk(live)
    posted = client.chat_postMessage(channel=uid, text="hi", blocks=APPROVAL_BLOCKS)
    assert posted["channel"] == client.conversations_open(users=uid)["channel"]["id"]
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="bye")
    msg = httpx.get(
        f"{live.url}/_sandbox/slack/messages", params={"channel": posted["channel"]}
    ).json()["messages"][0]
    assert msg["text"] == "bye" and msg["blocks"] == APPROVAL_BLOCKS
    # api_call(data=...) is sent multipart; a seeded "handover-bot@…" bot is the sender
    with live.world.db.session() as s:
        bot = ensure_user(s, "handover-bot@acme.com", "Handover", is_bot=True)
    sent = client.api_call("chat.postMessage", data={"channel": uid, "text": "multipart"})
    assert sent["message"]["user"] == bot == client.auth_test()["user_id"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_errors_answer_like_slack(live: LiveSandbox) -> None:
    uid = add_user(live.url, "dan@example.com", "Dan")
    client = sdk(live)
    dm = client.conversations_open(users=uid)["channel"]["id"]
    cases = [
        (lambda: sdk(live, "xoxb-wrong").auth_test(), "invalid_auth"),
        (lambda: sdk(live, None).auth_test(), "not_authed"),
        (lambda: client.users_lookupByEmail(email="nobody@example.com"), "users_not_found"),
        (lambda: client.users_info(user="U0NOPE"), "user_not_found"),
        (lambda: client.chat_postMessage(channel=uid), "no_text"),
        (lambda: client.chat_postMessage(channel="#nowhere", text="x"), "channel_not_found"),
        (
            lambda: client.chat_postMessage(channel=uid, blocks=[{"text": "no type"}]),
            "invalid_blocks",
        ),
        (lambda: client.chat_update(channel=dm, ts="1.000001", text="x"), "message_not_found"),
        (lambda: client.conversations_open(users="U0NOPE"), "user_not_found"),
    ]
    for call, code in cases:
        with pytest.raises(SlackApiError) as exc:
            call()
        assert api_error(exc) == code
        assert exc.value.response.status_code == 200  # Slack answers errors with HTTP 200


def test_rate_limit_429_then_retry_handler_gets_through(live: LiveSandbox) -> None:
    httpx.put(f"{live.url}/_sandbox/faults", json={"rate_limit": 20, "burst": 2}).raise_for_status()
    plain = sdk(live, retry_handlers=[])
    plain.auth_test()
    plain.auth_test()  # the bucket of two is now empty; one token every 3 s comes back
    with pytest.raises(SlackApiError) as exc:
        plain.auth_test()
    assert exc.value.response.status_code == 429 and api_error(exc) == "ratelimited"
    assert int(exc.value.response.headers["Retry-After"][0]) >= 1

    patient = sdk(live, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
    assert patient.auth_test()["ok"]
    log = httpx.get(f"{live.url}/_sandbox/requests", params={"api": "slack"}).json()["requests"]
    assert [r["status"] for r in log].count(429) >= 1 and log[-1]["status"] == 200


def test_form_multipart_json_and_query_bodies_in_process(client: TestClient) -> None:
    world = client.app.state.world  # type: ignore[attr-defined]
    with world.db.session() as s:
        uid = ensure_user(s, "Erin@Example.com", "Erin")
        assert ensure_user(s, "erin@example.com", "Erin again") == uid  # idempotent
        cid = ensure_channel(s, "#it-access")
        assert ensure_channel(s, "it-access") == cid and cid.startswith("C")

    api = "/slack/api"
    # form-urlencoded with the token as a parameter and blocks as JSON text
    r = client.post(
        f"{api}/chat.postMessage",
        data={
            "token": TOKEN,
            "channel": "#it-access",
            "text": "form",
            "blocks": json.dumps(APPROVAL_BLOCKS),
        },
    )
    assert r.status_code == 200 and r.json()["ok"] and r.json()["channel"] == cid
    # JSON body with a bearer token, channel by bare name
    r = client.post(
        f"{api}/chat.postMessage",
        headers=BEARER,
        json={"channel": "it-access", "text": "json", "thread_ts": r.json()["ts"]},
    )
    assert r.json()["message"]["thread_ts"]
    # multipart, as slack-sdk sends WebClient.api_call(data=...)
    r = client.post(
        f"{api}/chat.postMessage",
        headers=BEARER,
        files={"channel": (None, uid), "text": (None, "multipart")},
    )
    assert r.json()["ok"], r.json()
    # query parameters on a GET
    r = client.get(
        f"{api}/users.lookupByEmail", params={"token": TOKEN, "email": "ERIN@example.com"}
    )
    assert r.json()["user"]["id"] == uid
    assert (
        client.post(
            f"{api}/chat.postMessage",
            headers={"Authorization": "Bearer x"},
            data={"channel": cid, "text": "x"},
        ).json()["error"]
        == "invalid_auth"
    )
    assert (
        client.post(
            f"{api}/chat.postMessage",
            headers={**BEARER, "Content-Type": "application/json"},
            content=b"{nope",
        ).json()["error"]
        == "invalid_json"
    )
    assert (
        client.post(
            f"{api}/chat.postMessage", headers=BEARER, data={"channel": cid, "blocks": "[1]"}
        ).json()["error"]
        == "invalid_blocks"
    )
    assert client.post(f"{api}/no.suchMethod", headers=BEARER).status_code == 404

    with world.db.session() as s:
        assert [m["text"] for m in list_messages(s, channel="#it-access")] == ["form", "json"]
        assert [m["text"] for m in list_messages(s, user_email="erin@example.com")] == ["multipart"]
        assert list_messages(s, user_email="nobody@example.com") == []
        every = list_messages(s)
    assert len({m["ts"] for m in every}) == 3
    # the thread reply stays out of the channel's history, as in Slack
    hist = client.get(
        f"{api}/conversations.history", headers=BEARER, params={"channel": cid}
    ).json()["messages"]
    assert [m["text"] for m in hist] == ["form"]
    users = client.get(f"{api}/users.list", headers=BEARER, params={"limit": 1}).json()
    assert len(users["members"]) == 1 and users["response_metadata"]["next_cursor"]


def test_ts_increase_even_when_the_clock_goes_back(client: TestClient) -> None:
    uid = client.post("/_sandbox/slack/users", json={"email": "f@example.com"}).json()["user"]["id"]
    stamps = []
    for step in (0, -3600, 0):
        client.post("/_sandbox/clock", json={"advance_seconds": step})
        r = client.post(
            "/slack/api/chat.postMessage", headers=BEARER, json={"channel": uid, "text": "t"}
        )
        stamps.append(r.json()["ts"])
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert all(len(t.split(".")[1]) == 6 for t in stamps)


def test_reset_wipes_slack_state(client: TestClient) -> None:
    client.post("/_sandbox/slack/users", json={"email": "g@example.com", "real_name": "G"})
    assert client.get("/_sandbox/slack/users").json()["count"] == 1
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/slack/users").json()["count"] == 0
    assert client.get("/_sandbox/slack/messages").json()["messages"] == []
