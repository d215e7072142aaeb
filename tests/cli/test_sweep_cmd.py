"""``handover expire`` and ``handover hygiene`` (``cli.sweep_cmd``): bad input exits 2 before
anything runs (moved here from tests/flows/test_expire_e2e.py and test_hygiene_e2e.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import typer
from typer.testing import CliRunner

from cli.expire_cmd import expire
from cli.hygiene_cmd import hygiene


@pytest.mark.parametrize("command", [expire, hygiene], ids=["expire", "hygiene"])
def test_cli_refuses_a_bad_now(command: Callable[..., None]) -> None:
    app = typer.Typer()
    app.command()(command)
    out = CliRunner().invoke(app, ["--now", "yesterday-ish"])
    assert out.exit_code == 2
    assert "ISO 8601" in out.output
