"""Several orgs in the settings (``HANDOVER_EXTRA_ORGS``): names and backends checked at load,
their tokens redacted like every secret, the sandbox's development tokens refused outside it,
and ``for_org`` giving one org's settings."""

from __future__ import annotations

import json

import pytest

from connectors.settings import Settings, SettingsError, load_settings

QA = {"url": "https://qa.analytics.example", "backend": "amplitude", "scim_token": "qa-scim-1"}


def test_an_extra_org_is_read_from_json_and_given_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HANDOVER_EXTRA_ORGS", json.dumps({"qa": QA}))
    s = load_settings()
    assert list(s.extra_orgs) == ["qa"]
    assert "qa-scim-1" in s.secret_values()  # redacted from every log
    qa = s.for_org("qa")
    assert (qa.org_name, qa.org_url, qa.org_backend) == ("qa", QA["url"], "amplitude")
    assert qa.org_scim_token.get_secret_value() == "qa-scim-1" and qa.extra_orgs == {}
    assert s.for_org("") is s and s.for_org("production") is s
    with pytest.raises(SettingsError, match="unknown org 'staging': the orgs are production, qa"):
        s.for_org("staging")


@pytest.mark.parametrize(
    ("orgs", "says"),
    [
        ({"QA Org": QA}, "lower-case letters, digits and dashes"),
        ({"production": QA}, "names the main org 'production'"),
        ({"qa": QA | {"backend": "okta"}}, "backend must be one of amplitude, sandbox"),
    ],
)
def test_bad_orgs_are_refused_at_load(orgs: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings(extra_orgs=orgs).check_orgs()  # type: ignore[arg-type]


def test_the_sandbox_tokens_are_refused_for_a_real_org() -> None:
    dev = QA | {"scim_token": "sandbox-scim-key"}
    with pytest.raises(SettingsError, match=r"HANDOVER_EXTRA_ORGS\[QA\]"):
        Settings(extra_orgs={"qa": dev}).check_safe()  # type: ignore[dict-item]
    local = dev | {"url": "http://127.0.0.1:8800/orgs/qa"}
    Settings(extra_orgs={"qa": local}).check_safe()  # type: ignore[dict-item]
