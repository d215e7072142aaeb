"""Sandbox mode is explicit (``HANDOVER_SANDBOX=1``): the published development credentials are
refused outside it, whatever the URLs, and inside it still only towards loopback."""

from __future__ import annotations

import pytest

from connectors.settings import DEV_CREDENTIALS, Settings, SettingsError, load_settings

OWN = {name: f"not-the-{name}" for name in DEV_CREDENTIALS}


def test_development_credentials_need_sandbox_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"set HANDOVER_SANDBOX=1") as refused:
        Settings(sandbox=False).check_safe()
    # It names every setting to replace, and never a value.
    assert "HANDOVER_ORG_SCIM_TOKEN" in str(refused.value)
    assert "sandbox-scim-key" not in str(refused.value)
    one_left = {**OWN, "slack_bot_token": DEV_CREDENTIALS["slack_bot_token"]}
    with pytest.raises(SettingsError, match=r"HANDOVER_SLACK_BOT_TOKEN$"):
        Settings(sandbox=False, **one_left).check_safe()  # type: ignore[arg-type]
    Settings(sandbox=False, **OWN).check_safe()  # type: ignore[arg-type]
    Settings(sandbox=True).check_safe()  # the sandbox on loopback, in sandbox mode

    monkeypatch.delenv("HANDOVER_SANDBOX")
    assert Settings().sandbox is False  # never inferred from the loopback URLs
    with pytest.raises(SettingsError, match="HANDOVER_SANDBOX=1"):
        load_settings()
    monkeypatch.setenv("HANDOVER_SANDBOX", "1")
    assert load_settings().sandbox is True


def test_sandbox_mode_keeps_development_credentials_on_loopback() -> None:
    with pytest.raises(SettingsError, match="HANDOVER_ORG_SCIM_TOKEN, HANDOVER_ORG_ADMIN_TOKEN"):
        Settings(sandbox=True, org_url="https://acme.amplitude.example").check_safe()


def test_the_secrets_key_is_a_development_credential_and_key_material() -> None:
    """HANDOVER_SECRETS_KEY (rotated secrets in the ledger, the intake's sign-in cookies): its
    published development value only in sandbox mode with the intake on loopback; any value at
    least 32 characters."""
    dev = DEV_CREDENTIALS["secrets_key"]
    with pytest.raises(SettingsError, match=r"set HANDOVER_SECRETS_KEY$"):
        Settings(sandbox=False, **{**OWN, "secrets_key": dev}).check_safe()  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=r"set HANDOVER_SECRETS_KEY$"):
        outward = {k: v for k, v in OWN.items() if k != "secrets_key"}
        Settings(sandbox=True, intake_url="https://handover.acme.example", **outward).check_safe()  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="at least 32 characters") as short:
        load_settings(sandbox=True, secrets_key="too-short-to-be-a-key")
    assert "too-short" not in str(short.value)
    load_settings(sandbox=True, secrets_key="x" * 32)


def test_inbound_development_secrets_follow_the_intake_not_an_outbound_url() -> None:
    """The HR, Jira and Slack signing secrets guard our intake: in sandbox mode they are
    refused when the intake is published beyond loopback, whatever the org's URL says."""
    outward = {k: v for k, v in OWN.items() if k not in ("hr_webhook_secret", "secrets_key")}
    with pytest.raises(SettingsError, match="HANDOVER_HR_WEBHOOK_SECRET"):
        Settings(sandbox=True, intake_url="https://handover.acme.example", **outward).check_safe()  # type: ignore[arg-type]
    # A loopback org URL (an egress proxy, say) does not make the published secret acceptable
    # for a published intake; a loopback intake in sandbox mode is the sandbox.
    Settings(sandbox=True, org_url="http://127.0.0.1:9", **outward).check_safe()  # type: ignore[arg-type]
