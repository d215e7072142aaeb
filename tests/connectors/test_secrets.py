"""No secret in any log line, repr or exception message: every connector is driven through its
success and failure paths with logging at DEBUG everywhere (slack-sdk logs request headers at
DEBUG, httpx logs every URL), and the captured text is searched for every configured secret —
and for the API-key secrets a rotation produced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from joserfc.jwk import RSAKey

from connectors.errors import ConnectorError
from connectors.idp import OktaIdp, ScimIdp
from connectors.org import SandboxOrg
from connectors.rate import TokenBucket
from connectors.settings import Settings, load_settings
from connectors.slack import SlackMessenger
from connectors.tickets import JiraTickets
from sandbox import jira as jira_fake
from sandbox.app import create_app
from sandbox.world import Credentials
from tests.conftest import LiveSandbox, serve

SECRETS = Credentials(
    org_scim_key="scim-7f3c9d2e41aa",
    org_admin_token="admin-b81e55c09d",
    idp_token="idp-4a7e2c9f13",
    # Built from parts so no secret scanner mistakes this test value for a real token.
    slack_bot_token="xoxb" + "-live-9d8c7b6a5f",
    slack_signing_secret="sign-6e5d4c3b2a",
    jira_user="handover",
    jira_token="jira-1a2b3c4d5e",
)

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    app = create_app(None, seed="demo", rng_seed=2)
    app.state.world.credentials = SECRETS  # a world with non-published credentials
    sb = serve(app)
    yield sb
    sb.stop()


def test_no_configured_or_rotated_secret_reaches_a_log_or_an_error(
    sandbox: LiveSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    url = sandbox.url
    key = RSAKey.generate_key(2048, parameters={"kid": "k"}, private=True)
    app = {"client_id": "0oaleaktest", "jwks": {"keys": [key.as_dict(private=False)]}}
    assert httpx.post(f"{url}/_sandbox/idp/okta/clients", json=app).status_code == 200
    settings = load_settings(  # installs the redaction of these values
        org_url=url,
        org_scim_token=SECRETS.org_scim_key,
        org_admin_token=SECRETS.org_admin_token,
        idp_url=f"{url}/idp/scim/v2",
        idp_token=SECRETS.idp_token,
        slack_api_url=f"{url}/slack/api/",
        slack_bot_token=SECRETS.slack_bot_token,
        slack_signing_secret=SECRETS.slack_signing_secret,
        jira_url=f"{url}/jira",
        jira_token=SECRETS.jira_token,
        hr_webhook_secret="hr-0f9e8d7c6b",
        jira_webhook_secret="jwh-5a4b3c2d1e",
        idp_private_key=json.dumps(key.as_dict(private=True)),
    )
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    seen: list[str] = []
    org = SandboxOrg.from_settings(
        settings, scim_limiter=TokenBucket(60_000), admin_limiter=TokenBucket(60_000)
    )
    idp = ScimIdp(settings, limiter=TokenBucket(60_000))
    okta = settings.model_copy(update={"idp_url": f"{url}/okta", "idp_token_url": ""})
    okta_ssws = OktaIdp(okta, limiter=TokenBucket(60_000))
    okta_app = OktaIdp(okta.model_copy(update={"idp_client_id": "0oaleaktest"}))
    slack = SlackMessenger(settings)
    tickets = JiraTickets(settings)
    with sandbox.world.db.session() as s:
        jira_fake.ensure_project(s, "IT", "IT Operations")

    # Success paths, including a key rotation whose new secret must never be logged.
    seen.append(repr(org) + repr(idp) + repr(slack) + repr(tickets) + repr(settings))
    seen.append(repr(okta_ssws) + repr(okta_app) + repr(okta_app.auth) + repr(okta_app.http))
    rotated = [org.rotate_key(k.id)[1] for k in org.list_keys(manager="dana.sole@acme.com")]
    assert rotated
    seen.append(repr(rotated))
    logging.getLogger("handover.test").info("rotated %s", rotated[0].get_secret_value())
    org.get_member("dana.sole@acme.com")
    idp.find_user("dana.sole@acme.com")
    okta_ssws.find_user("dana.sole@acme.com")
    okta_app.find_user("dana.sole@acme.com")
    slack.dm("dana.sole@acme.com", "hello")
    t = tickets.create(project="IT", issue_type="Task", summary="secret test")
    tickets.comment(t.key, "done")

    # Failure paths: wrong credentials everywhere, a conflict, a missing person.
    bad = Settings(
        org_url=url,
        org_scim_token="wrong-" + SECRETS.org_scim_key,
        org_admin_token="wrong-" + SECRETS.org_admin_token,
        idp_url=f"{url}/idp/scim/v2",
        idp_token="wrong-" + SECRETS.idp_token,
        slack_api_url=f"{url}/slack/api/",
        slack_bot_token="xoxb-wrong-" + SECRETS.slack_bot_token[5:],
        jira_url=f"{url}/jira",
        jira_token="wrong-" + SECRETS.jira_token,
    )
    for call in (
        lambda: SandboxOrg.from_settings(bad, attempts=1).get_member("x@acme.com"),
        lambda: ScimIdp(bad, limiter=TokenBucket(60_000)).find_user("x@acme.com"),
        lambda: OktaIdp(bad.model_copy(update={"idp_url": f"{url}/okta"})).find_user("x@acme.com"),
        lambda: OktaIdp(
            okta.model_copy(update={"idp_client_id": "0oaunknown"}), attempts=1
        ).find_user("x@acme.com"),
        lambda: SlackMessenger(bad, attempts=1).dm("dana.sole@acme.com", "x"),
        lambda: JiraTickets(bad, attempts=1).get("IT-1"),
        lambda: org.set_project_role("dana.sole@acme.com", "Development", None),
        lambda: slack.dm("nobody@nowhere.example", "x"),
    ):
        with pytest.raises(ConnectorError) as info:
            call()
        seen.append(str(info.value) + repr(info.value))

    text = caplog.text + "\n".join(seen)
    assert "Authorization" in caplog.text or "HTTP Request" in caplog.text  # logs were on
    secrets = [*settings.secret_values(), *(r.get_secret_value() for r in rotated)]
    assert len(secrets) >= 9
    leaked = [s for s in secrets if s in text]
    # The redaction really worked on the line that logged a rotated secret on purpose.
    assert "rotated ***" in caplog.text
    assert leaked == [], f"{len(leaked)} secrets leaked"
    for wrong in ("wrong-" + SECRETS.org_admin_token, "wrong-" + SECRETS.jira_token):
        assert wrong not in "\n".join(seen)  # nor a wrong credential, in our own errors
