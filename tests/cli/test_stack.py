"""The local stack's Prefect credential (``cli.stack``): made once and kept 0600, and given to
another shell's command only for a loopback ``PREFECT_API_URL`` that has no credential yet."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cli.stack import AUTH_FILE, api_auth_string, join_local_stack


def test_the_credential_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = api_auth_string(tmp_path)
    user, _, password = first.partition(":")
    assert user == "handover" and len(password) >= 40
    assert stat.S_IMODE((tmp_path / AUTH_FILE).stat().st_mode) == 0o600
    assert api_auth_string(tmp_path) == first  # a restarted stack keeps it
    other = tmp_path / "other"
    other.mkdir()
    assert api_auth_string(other) != first  # each stack its own


@pytest.mark.parametrize(
    ("url", "preset", "file", "joined"),
    [
        ("http://127.0.0.1:4200/api", None, True, True),
        ("http://localhost:4200/api", None, True, True),
        # A remote server's credential comes from the environment, never from a local file.
        ("https://prefect.acme.example/api", None, True, False),
        ("http://127.0.0.1:4200/api", "handover:from-the-environment", True, False),
        ("http://127.0.0.1:4200/api", None, False, False),
        ("", None, True, False),
    ],
)
def test_another_shell_joins_only_a_loopback_stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    preset: str | None,
    file: bool,
    joined: bool,
) -> None:
    home = tmp_path / ".handover"
    (home / "prefect").mkdir(parents=True)
    if file:
        made = api_auth_string(home / "prefect")
    monkeypatch.setenv("PREFECT_API_URL", url)
    if preset is None:
        monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", preset)
    assert join_local_stack(home) is joined
    if joined:
        assert os.environ["PREFECT_API_AUTH_STRING"] == made
    else:
        assert os.environ.get("PREFECT_API_AUTH_STRING") == preset
