"""Retries and errors of the org connectors, against the sandbox's fault injection: transient
5xx retried until success, writes that converge when the answer was lost after the change,
409 never retried, 401/404 mapped, 429 + Retry-After honoured; and only ``connectors.errors``
ever leaves the connector.
"""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from pydantic import SecretStr

from connectors.capabilities import InviteSpec
from connectors.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
)
from connectors.org import AmplitudeScim, SandboxOrg
from connectors.org.client import admin_api, scim_api
from connectors.rate import TokenBucket
from connectors.settings import Settings
from domain.models import Effect, Module, Role
from tests.connectors import org_fixtures
from tests.connectors.org_fixtures import OrgWorld

inproc_world = org_fixtures.inproc_world


def prod_team(w: OrgWorld) -> None:
    """The set-up of these tests: project Prod, the org admin boss@x.com, and a@x.com."""
    w.project("Prod")
    w.join("boss@x.com", org_role="admin")
    w.join("a@x.com")


def test_transient_faults_are_retried_until_every_call_succeeds(inproc_world: OrgWorld) -> None:
    w = inproc_world
    prod_team(w)
    gid = w.group("Readers", projects={"Prod": "viewer"})
    w.faults(fault_rate=0.5)  # half of all API calls answer 500/502/503 (seeded rng)
    org = w.sandbox_org(attempts=12)

    assert org.invite(InviteSpec(email="b@x.com")).effect is Effect.CREATED
    assert org.set_org_role("a@x.com", Role.MEMBER).effect is Effect.UPDATED
    assert org.add_group_members(gid, ["a@x.com"]).effect is Effect.UPDATED
    assert {m.email for m in org.list_members()} == {"boss@x.com", "a@x.com", "b@x.com"}
    assert org.remove_member("b@x.com").effect is Effect.DELETED

    injected = [r for r in w.requests() if r["injected"] == "fault-before"]
    retries = org.admin.stats.retries + org.scim.api.stats.retries
    assert len(injected) == retries >= 3
    assert org.admin.stats.server_errors + org.scim.api.stats.server_errors == retries


def test_writes_converge_when_the_answer_is_lost_after_the_change(
    inproc_world: OrgWorld, caplog: pytest.LogCaptureFixture
) -> None:
    w = inproc_world
    prod_team(w)
    key_id, old = w.key("Prod ingestion", "Prod", ["a@x.com"])
    # Every fault happens after the backend applied the request: the retry meets the new state.
    w.faults(fault_rate=0.5, fault_after=1.0)
    org = w.sandbox_org(attempts=12)
    caplog.set_level(logging.DEBUG)

    effects = [
        org.invite(InviteSpec(email="b@x.com", modules=(Module.GOVERN,))).effect,
        org.set_org_role("a@x.com", Role.MANAGER).effect,
        org.set_modules("a@x.com", grant=[Module.EXPERIMENT]).effect,
        org.revoke_invitation("b@x.com").effect,
        org.remove_member("a@x.com").effect,
    ]
    _result, secret = org.rotate_key(key_id)
    assert any(r["injected"] == "fault-after" for r in w.requests())
    w.faults()
    # Each effect is the change itself or, after a lost answer, the noop that confirms it.
    expected = [Effect.CREATED, Effect.UPDATED, Effect.UPDATED, Effect.DELETED, Effect.DELETED]
    assert all(e in (want, Effect.NOOP) for e, want in zip(effects, expected, strict=True))
    assert w.member("a@x.com") is None and w.member("b@x.com") is None
    # The returned secret is the one that works, whatever number of rotations happened.
    assert (w.ingest(old), w.ingest(secret.get_secret_value())) == (401, 200)
    assert secret.get_secret_value() not in caplog.text


def test_a_rotation_with_an_idempotency_key_happens_once_whatever_is_retried(
    inproc_world: OrgWorld,
) -> None:
    w = inproc_world
    prod_team(w)
    key_id, old = w.key("Prod ingestion", "Prod", ["a@x.com"])
    # Every answer is lost after the rotation was applied, until the client has retried 3 times.
    w.faults(fault_rate=0.75, fault_after=1.0)
    org = w.sandbox_org(attempts=30)
    _r, first = org.rotate_key(key_id, idempotency_key="case-1-rotate")
    # The run is killed and the step runs again: same key, same rotation, same secret.
    _r, again = org.rotate_key(key_id, idempotency_key="case-1-rotate")
    w.faults()
    assert any(r["injected"] == "fault-after" for r in w.requests())
    assert first.get_secret_value() == again.get_secret_value()
    (key,) = [k for k in org.list_keys() if k.id == key_id]
    assert key.rotation_count == 1
    assert (w.ingest(old), w.ingest(first.get_secret_value())) == (401, 200)
    # Another key (another case) is another rotation.
    _r, other = org.rotate_key(key_id, idempotency_key="case-2-rotate")
    assert other.get_secret_value() != first.get_secret_value()


def test_a_conflict_is_not_retried(inproc_world: OrgWorld) -> None:
    w = inproc_world
    w.project("Development", "development")
    w.join("boss@x.com", org_role="admin")
    w.join("dana@x.com", projects={"Development": "admin"})
    org = w.sandbox_org()
    seen = len(w.requests())
    with pytest.raises(ConflictError, match="sole Admin of project Development"):
        org.remove_member("dana@x.com")
    (call,) = w.requests(since=seen)
    assert (call["method"], call["path"], call["status"]) == (
        "PATCH",
        "/scim/1/Users/dana@x.com",
        409,
    )
    # A duplicate invite answers 409 too: read as noop, in one request.
    seen = len(w.requests())
    assert org.invite(InviteSpec(email="dana@x.com")).effect is Effect.NOOP
    assert [r["status"] for r in w.requests(since=seen)] == [409]
    assert org.admin.stats.retries == org.scim.api.stats.retries == 0


def test_wrong_credentials_are_an_auth_error_that_does_not_show_them(
    inproc_world: OrgWorld,
) -> None:
    w = inproc_world
    org = w.sandbox_org(
        org_scim_token=SecretStr("wrong-scim-key"), org_admin_token=SecretStr("wrong-admin-key")
    )
    with pytest.raises(AuthError) as err:
        org.get_member("a@x.com")
    assert str(err.value).startswith("org: get_member failed for a@x.com: 401 ")
    with pytest.raises(AuthError, match="SCIM key") as scim_err:
        org.remove_member("a@x.com")
    for e in (err.value, scim_err.value):
        assert "wrong-" not in str(e)
    assert "wrong-" not in repr(org.admin) + repr(org.scim.api)
    assert len(w.requests()) == 2  # never retried


def test_not_found_is_mapped_and_a_wrong_url_is_not_read_as_absent(
    inproc_world: OrgWorld,
) -> None:
    w = inproc_world
    scim = w.scim()
    with pytest.raises(NotFoundError, match="get_group failed for group 999: 404 no permission"):
        scim.get_group("999")
    # A 404 that the org API did not say itself (here: a wrong base URL) is an error, never
    # "not a member" — or an offboarding would report success without removing anyone.
    lost = w.sandbox_org(org_url=f"{w.url}/nowhere")
    with pytest.raises(NotFoundError, match="not an org API endpoint"):
        lost.get_member("a@x.com")
    with pytest.raises(NotFoundError, match="not an org API endpoint"):
        lost.remove_member("a@x.com")
    with pytest.raises(NotFoundError, match="not an org API endpoint"):
        lost.revoke_invitation("a@x.com")


def test_rate_limited_calls_wait_for_retry_after_and_succeed(inproc_world: OrgWorld) -> None:
    w = inproc_world
    w.join("a@x.com")
    w.faults(rate_limit=60, burst=1)  # one call, then one a second (Retry-After: 1)
    org = w.sandbox_org()  # its own client-side bucket is far above the server's limit
    start = time.monotonic()
    # Back to back until the server's bucket is found empty: a loaded machine may take long
    # enough between two calls for a token to come back, not between five.
    for _ in range(5):
        m = org.get_member("a@x.com")
        assert m is not None
        if org.admin.stats.rate_limited:
            break
    elapsed = time.monotonic() - start
    assert org.admin.stats.rate_limited >= 1
    assert elapsed >= 0.95  # the server asked for 1 s
    assert [r["injected"] for r in w.requests()].count(
        "rate-limited"
    ) == org.admin.stats.rate_limited


def test_a_scim_filter_value_cannot_break_out_of_its_quotes(inproc_world: OrgWorld) -> None:
    scim = inproc_world.scim()
    with pytest.raises(InvalidRequestError, match="get_member"):
        scim.get_member('a" or userName pr "@x.com')
    assert inproc_world.requests() == []


def test_a_malformed_answer_is_a_permanent_error_not_a_pydantic_one() -> None:
    # No fake answers out of shape, so a transport does, just this once.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/members/a@x.com"):
            return httpx.Response(200, json={"email": "a@x.com", "org_role": "overlord"})
        return httpx.Response(200, json={"Resources": "nope"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    settings = Settings(org_url="http://org.test")
    scim = AmplitudeScim(scim_api(settings, client=client, limiter=TokenBucket(60_000)))
    org = SandboxOrg(
        admin=admin_api(settings, client=client, limiter=TokenBucket(60_000)), scim=scim
    )
    with pytest.raises(PermanentError, match=r"get_member failed for a@x\.com: unexpected answer"):
        org.get_member("a@x.com")
    with pytest.raises(PermanentError, match="list_groups failed: unexpected answer"):
        scim.list_groups()
