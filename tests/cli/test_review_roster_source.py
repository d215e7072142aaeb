"""``handover review`` without ``--roster``: the roster comes from ``HANDOVER_HR_API``; with
neither, exit 2 and a message saying both ways (nothing is run). ``--roster FILE`` keeps
working (tests/flows/test_review_e2e.py runs it).
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.parametrize(
    ("hr_api", "said"),
    [("", "HANDOVER_HR_API is unset"), ("personio", "HANDOVER_HR_API=personio gives no roster")],
)
def test_without_a_roster_or_an_hr_api_review_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, hr_api: str, said: str
) -> None:
    monkeypatch.setenv("HANDOVER_HOME", str(tmp_path))
    monkeypatch.setenv("HANDOVER_HR_API", hr_api)
    ran: list[Any] = []
    monkeypatch.setattr("cli.review_cmd.run_flow", lambda *a, **k: ran.append(a))
    out = CliRunner().invoke(app, ["review", "--dry-run"])
    assert out.exit_code == 2, out.output
    assert "give --roster FILE" in out.output and said in out.output
    assert "hibob, bamboohr, merge" in out.output
    assert ran == []


def test_an_unknown_hr_api_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HANDOVER_HOME", str(tmp_path))
    monkeypatch.setenv("HANDOVER_HR_API", "workday")
    out = CliRunner().invoke(app, ["review", "--dry-run"])
    assert out.exit_code == 2 and "HANDOVER_HR_API must be one of" in out.output


def test_with_an_hr_api_review_runs_without_a_roster_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HANDOVER_HOME", str(tmp_path))
    monkeypatch.setenv("HANDOVER_HR_API", "bamboohr")
    ran: list[dict[str, Any]] = []

    def fake_run(flow: Any, params: dict[str, Any], **kw: Any) -> dict[str, Any]:
        ran.append(params)
        return {"status": "planned", "findings": [], "reports": {"csv": "-", "html": "-"}}

    monkeypatch.setattr("cli.review_cmd.run_flow", fake_run)
    out = CliRunner().invoke(app, ["review", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert ran and ran[0]["roster"] is None
