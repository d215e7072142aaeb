"""The capability gap between the org connectors is explicit: real Amplitude (SCIM only) lacks
what only the sandbox's admin API offers, ``has`` says so, and ``make_org`` picks the connector
the settings name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from connectors import rate
from connectors.capabilities import (
    AssetOwnership,
    Invitations,
    KeyManagement,
    MemberDirectory,
    ModuleAccess,
    OrgActivityLog,
    PermissionGroups,
    ProjectAccess,
    capabilities_of,
    has,
)
from connectors.org import AmplitudeScim, Inviter, SandboxOrg, make_org
from connectors.settings import Settings, SettingsError, load_settings
from tests.connectors import org_fixtures
from tests.connectors.org_fixtures import OrgWorld

inproc_world = org_fixtures.inproc_world

ORG_CAPABILITIES = [
    "MemberDirectory",
    "Inviter",
    "Invitations",
    "ProjectAccess",
    "ModuleAccess",
    "PermissionGroups",
    "AssetOwnership",
    "KeyManagement",
    "OrgActivityLog",
]
SCIM_LACKS = [
    AssetOwnership,
    KeyManagement,
    ProjectAccess,
    ModuleAccess,
    OrgActivityLog,
    Invitations,
]


@pytest.fixture(autouse=True)
def fresh_limiters() -> Iterator[None]:
    """make_org uses the limiters in use (the process-wide ones): give this test its own."""
    with rate.use_limits(rate.Limits()):
        yield


def test_amplitude_scim_offers_only_what_scim_can_do() -> None:
    scim = make_org(Settings(org_backend="amplitude"))
    assert capabilities_of(scim) == ["MemberDirectory", "Inviter", "PermissionGroups"]
    assert capabilities_of(AmplitudeScim) == ["MemberDirectory", "Inviter", "PermissionGroups"]
    for capability in SCIM_LACKS:
        assert not has(scim, capability), capability.__name__
    # SCIM can invite, but neither list nor resend invitations: Inviter, not Invitations.
    assert has(scim, Inviter) and has(scim, MemberDirectory) and has(scim, PermissionGroups)
    for method in ("list_invitations", "resend_invitation", "transfer_assets", "rotate_key"):
        assert not hasattr(scim, method)


def test_sandbox_org_offers_every_org_capability() -> None:
    org = make_org(Settings(org_backend="sandbox"))
    assert capabilities_of(org) == ORG_CAPABILITIES
    assert capabilities_of(SandboxOrg) == ORG_CAPABILITIES
    assert has(org, Inviter) and all(has(org, c) for c in SCIM_LACKS)


def test_make_org_picks_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANDOVER_ORG_BACKEND", raising=False)
    assert isinstance(make_org(Settings()), SandboxOrg)  # the default: the sandbox
    assert isinstance(make_org(Settings(org_backend=" Amplitude ")), AmplitudeScim)
    monkeypatch.setenv("HANDOVER_ORG_BACKEND", "amplitude")
    assert isinstance(make_org(Settings()), AmplitudeScim)
    with pytest.raises(
        SettingsError, match="HANDOVER_ORG_BACKEND must be one of amplitude, sandbox"
    ):
        make_org(Settings(org_backend="okta"))


def test_a_misspelt_backend_is_refused_when_the_settings_are_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HANDOVER_ORG_BACKEND", "amplitud")
    with pytest.raises(SettingsError, match="must be one of amplitude, sandbox, not 'amplitud'"):
        load_settings()


def test_make_org_builds_both_apis_from_settings() -> None:
    settings = Settings(
        org_url="https://acme.example.com/",
        org_scim_token=SecretStr("scim-secret-1"),
        org_admin_token=SecretStr("admin-secret-1"),
        org_scim_rate_per_minute=50,
        org_admin_rate_per_minute=300,
    )
    org = make_org(settings)
    assert isinstance(org, SandboxOrg)
    scim, admin = org.scim.api, org.admin
    assert (scim.base_url, admin.base_url) == (
        "https://acme.example.com/scim/1",
        "https://acme.example.com/admin/v1",
    )
    assert (scim.limiter.per_minute, admin.limiter.per_minute) == (50, 300)
    assert scim._headers["Authorization"] == "Bearer scim-secret-1"
    assert admin._headers["Authorization"] == "Bearer admin-secret-1"
    assert "secret" not in repr(org) + repr(scim) + repr(admin)
    org.close()


def test_make_org_sends_through_a_given_client(inproc_world: OrgWorld) -> None:
    w = inproc_world
    w.join("a@x.com", org_role="member")
    for backend, role in (("sandbox", "member"), ("amplitude", None)):
        org = make_org(w.settings(org_backend=backend), client=w.transport)
        m = org.get_member("a@x.com")
        assert m is not None and (m.org_role.value if m.org_role else None) == role
